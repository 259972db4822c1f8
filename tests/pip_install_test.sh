#!/usr/bin/env bash
# `pip install` of the repository into a fresh virtualenv, then the README's Python
# example against a node started with `python -m csm node` (docs/python.md, "Installing
# with pip"). Run by ctest from the debug build (test python_pip_install): a Release
# build of the package, a few minutes on two cores.
#
#   tests/pip_install_test.sh REPO
set -euo pipefail
repo=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/csm-pip-XXXXXX)
node=""
cleanup() {
  [ -z "$node" ] || kill "$node" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
py="$work/venv/bin/python"
echo "== pip install $repo[numpy] into a fresh virtualenv"
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$py" -m pip install -q --disable-pip-version-check "$repo[numpy]"

cd "$work"  # away from the source tree: the installed package is imported
echo "== python -m csm node"
"$py" -m csm node --socket "$work/node.sock" > "$work/node.log" 2>&1 &
node=$!
for _ in $(seq 1 300); do  # up to 30 s for the socket to appear
  [ -S "$work/node.sock" ] && break
  kill -0 "$node" 2>/dev/null || break
  sleep 0.1
done
if [ ! -S "$work/node.sock" ]; then
  echo "the node did not start:"; cat "$work/node.log"; exit 1
fi
export CSM_SOCKET="$work/node.sock"

echo "== the README's Python example, from two processes"
"$py" - <<'PY'
import csm, numpy as np
csm.put("weights", np.arange(10.0))
csm.put("config", {"lr": 0.1, "mask": np.ones(100000, bool)})
PY
"$py" - <<'PY'
import csm, numpy as np
w = csm.get("weights")
assert w.sum() == 45.0 and not w.flags.writeable, w
base = int(csm.info()["window"]["base"], 16)
assert w.ctypes.data >= base, "a view of the heap, not a copy"
cfg = csm.get("config")
assert cfg["lr"] == 0.1 and cfg["mask"].all()
print("ok", w.sum(), sorted(o["key"] for o in csm.ls()))
PY
echo "== the commands installed with the package"
"$work/venv/bin/csm" ls | grep -q weights
echo "== pip install: passed"
