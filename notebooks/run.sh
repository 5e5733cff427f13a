#!/usr/bin/env bash
# Executes every notebook (or those named) headlessly with Deno's Jupyter kernel and writes the outputs back into
# the .ipynb files, so they read well on a code host without running. Fails on the first cell error.
#   npm run notebooks                       all of them
#   bash notebooks/run.sh notebooks/03-*.ipynb   some
#   npm run notebooks -- --install-kernel   register the Deno kernel with Jupyter, to open them yourself (needs
#                                           no Python: Deno writes the kernelspec itself)
# Executing needs Debian's jupyter-nbconvert, python3-nbclient and python3-ipykernel (apt; `npm run notebooks:setup`
# installs them with jupyter-notebook) and `npm install`; Deno itself (the `deno` npm package) is installed on first
# use. The kernelspec goes into a temporary JUPYTER_PATH each run, because it holds the absolute path of this
# checkout's deno. TINYSEEK_PYTHON and TINYSEEK_DENO name another python3 or deno (test/notebooks.test.ts uses them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Deno comes from the npm package `deno`, installed on first use into its own folder: it is no devDependency,
# because its lockfile entry would name the other platforms' binaries, which `npm ci` then insists on finding.
DENO_VERSION=2.9.6
tools="$root/node_modules/.tinyseek-tools"
deno="${TINYSEEK_DENO:-$tools/node_modules/deno/deno}"
ensure_deno() {
  if [ ! -x "$deno" ] && [ -z "${TINYSEEK_DENO:-}" ]; then
    echo "notebooks: installing deno $DENO_VERSION (npm package) into $tools" >&2
    npm install --prefix "$tools" --no-save --no-audit --no-fund --loglevel=error "deno@$DENO_VERSION" >&2
  fi
  [ -x "$deno" ] || { echo "notebooks: deno not found at $deno" >&2; exit 1; }
}

if [ "${1:-}" = "--install-kernel" ]; then # for opening the notebooks in Jupyter or VS Code yourself: no Python needed
  ensure_deno
  "$deno" jupyter --install --force
  echo "notebooks: open them with: jupyter notebook notebooks/ (or in VS Code), kernel \"Deno\"" >&2
  exit 0
fi

# Executing them needs nbclient: Debian's /usr/bin/python3 has it once the packages are installed, where a pyenv or
# conda python3 on PATH often lacks it.
python=${TINYSEEK_PYTHON:-/usr/bin/python3}
[ -n "${TINYSEEK_PYTHON:-}" ] || "$python" -c "import nbclient, nbformat" 2>/dev/null || python=$(command -v python3 || true)
if ! "${python:-false}" -c "import nbclient, nbformat" 2>/dev/null; then
  echo "notebooks: no python3 with nbclient; install what the notebooks need with: npm run notebooks:setup" >&2
  exit 1
fi
ensure_deno

kernels=$(mktemp -d)
trap 'rm -rf "$kernels"' EXIT
mkdir -p "$kernels/kernels/deno"
cat >"$kernels/kernels/deno/kernel.json" <<JSON
{
  "argv": ["$deno", "jupyter", "--kernel", "--conn", "{connection_file}"],
  "display_name": "Deno",
  "language": "typescript"
}
JSON
export JUPYTER_PATH="$kernels${JUPYTER_PATH:+:$JUPYTER_PATH}"
export NO_COLOR=1 # no ANSI colours in error tracebacks written into the files
export DENO_NO_UPDATE_CHECK=1

if [ $# -gt 0 ]; then books=("$@"); else books=(notebooks/[0-9]*.ipynb); fi
for book in "${books[@]}"; do
  start=$(date +%s)
  # Deno's kernel announces on every start that `deno jupyter` is unstable: nothing for a reader to act on.
  "$python" - "$book" 2> >(grep -v '^Warning "deno jupyter" is unstable' >&2) <<'PY'
# nbclient, as `jupyter nbconvert --execute` uses it, with one change: Deno's kernel sometimes publishes a cell's
# result just after it reports itself idle, and plain nbclient then drops that output. Here a message that arrives
# for an earlier cell is still added to that cell, and a last, silent cell waits a moment for stragglers.
import sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete
from nbclient.util import ensure_async

class Client(NotebookClient):
    cells_by_msg = {}

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        self.cells_by_msg[parent_msg_id] = (cell, cell_index)
        while True:
            msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
            owner = msg["parent_header"].get("msg_id")
            if owner not in self.cells_by_msg:
                continue
            target, index = self.cells_by_msg[owner]
            try:
                self.process_message(msg, target, index)
            except CellExecutionComplete:
                if owner == parent_msg_id:
                    return

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("await new Promise((resolve) => setTimeout(resolve, 1500));", id="stragglers"))
client = Client(nb, timeout=180, kernel_name="deno", record_timing=False, resources={"metadata": {"path": path.rsplit("/", 1)[0] if "/" in path else "."}})
client.execute()
nb.cells.pop()
nbformat.write(nb, path)
PY
  echo "notebooks: $book ran in $(($(date +%s) - start)) s"
done
