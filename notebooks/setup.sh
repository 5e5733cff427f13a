#!/usr/bin/env bash
# Installs what the notebooks need, once, after `npm install`:
#   - Jupyter from Debian's packages: jupyter-notebook (the `jupyter notebook` command), and jupyter-nbconvert,
#     python3-nbclient and python3-ipykernel, which `npm run notebooks` executes them with;
#   - Deno (the npm package, into node_modules/.tinyseek-tools) and its Jupyter kernel (notebooks/run.sh).
#   npm run notebooks:setup              install (apt-get as root, else through sudo) and register the kernel
#   npm run notebooks:setup -- --print   only print the apt-get line
# Where there is no apt-get it says what to install instead and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(jupyter-notebook jupyter-nbconvert python3-nbclient python3-ipykernel)
line="apt-get install -y --no-install-recommends ${packages[*]}"
if [ "${1:-}" = "--print" ]; then
  echo "$line"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "notebooks:setup: no apt-get here (the packages are Debian's: ${packages[*]})." >&2
  echo "  Install Jupyter Notebook, nbclient and ipykernel for python3 another way (e.g. python3 -m pip install notebook nbclient ipykernel)," >&2
  echo "  then run: npm run notebooks -- --install-kernel" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "notebooks:setup: run this as root, then npm run notebooks:setup again: $line" >&2
    exit 1
  fi
  echo "notebooks:setup: ${as_root[*]:+${as_root[*]} }apt-get install -y --no-install-recommends ${missing[*]}" >&2
  # A fresh machine may have no package lists yet: update once if the install cannot find a package.
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || { "${as_root[@]}" apt-get update -q && "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; }
else
  echo "notebooks:setup: ${packages[*]} already installed" >&2
fi

bash notebooks/run.sh --install-kernel
echo "notebooks:setup: done; npm run notebooks executes them all" >&2
