#!/usr/bin/env bash
# WebGPU without a GPU: Dawn (the `webgpu` npm package) over Vulkan over Mesa's lavapipe, a CPU rasteriser.
# Debian 12's own Mesa (22.x) is too old for Dawn; bookworm-backports carries Mesa 25.x. Run as root; idempotent.
# The backports entry is derived from the machine's own Debian apt source (its mirror, its keyring), so this
# script names no host: it works wherever the base image points apt.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
target=/etc/apt/sources.list.d/tinyseek-backports.sources
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }

# Prints "URI<TAB>SIGNED-BY" of the first source serving the "bookworm" suite (deb822 files, then one-line lists).
debian_source() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$target" ] || continue
    awk '
      function flush() { if (uri != "" && suites ~ /(^| )bookworm( |$)/ && !done) { print uri "\t" key; done = 1 } uri = ""; suites = ""; key = "" }
      /^[ \t]*$/ { flush(); next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { $1 = ""; suites = $0 " " }
      /^Signed-By:/ { key = $2 }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [signed-by=KEY] URI bookworm main ...
    awk '$1 == "deb" {
      key = ""; i = 2
      if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { if ($i ~ /signed-by=/) { key = $i } i++ } if ($i ~ /signed-by=/) key = $i; i++ }
      sub(/.*signed-by=/, "", key); sub(/\]$/, "", key)
      if ($(i + 1) == "bookworm") { print $i "\t" key; exit }
    }' "$f"
  done
}

if [ ! -f "$target" ]; then
  line=$(debian_source | head -1)
  uri=${line%%$'\t'*}
  key=${line#*$'\t'}
  if [ -z "$uri" ]; then
    echo "lavapipe.sh: no apt source for Debian bookworm found in /etc/apt; cannot derive bookworm-backports" >&2
    exit 1
  fi
  {
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: bookworm-backports"
    echo "Components: main"
    [ -n "$key" ] && echo "Signed-By: $key"
  } >"$target"
  echo "lavapipe.sh: added bookworm-backports from $uri"
fi

apt_get update -q >/dev/null
apt_get install -y -q --no-install-recommends -t bookworm-backports libvulkan1 mesa-vulkan-drivers >/dev/null
echo "lavapipe.sh: $(dpkg-query -W -f '${Package} ${Version}\n' mesa-vulkan-drivers libvulkan1 | tr '\n' ' ')"
ls /usr/share/vulkan/icd.d/ | grep -q lvp || { echo "lavapipe.sh: no lavapipe ICD after install" >&2; exit 1; }
