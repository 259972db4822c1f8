#!/usr/bin/env bash
# `pip install` of the repository into a fresh virtualenv, then the README's Python
# example against a node started with `python -m csm node` (docs/python.md, "Installing
# with pip"): first without pyarrow (optional), then with it (tables, the csm tool). Run by ctest from the debug build (test python_pip_install): a Release
# build of the package, a few minutes on two cores.
#
#   tests/pip_install_test.sh REPO
set -euo pipefail
repo=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/csm-pip-XXXXXX)
node=""
cleanup() {
  status=$?
  if [ "$status" != 0 ] && [ -f "$work/node.log" ]; then echo "== the node's log"; cat "$work/node.log"; fi
  [ -z "$node" ] || kill "$node" 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
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
echo "== without pyarrow: tables say what to install, the csm tool too"
if "$py" -c "import pyarrow" 2>/dev/null; then echo "pyarrow came with csm[numpy]: it should be optional"; exit 1; fi
"$py" - <<'PY'
import csm
try:
    csm.get_table("weights")
except ImportError as e:
    assert "pip install 'pyarrow==26.0.1'" in str(e), e
else:
    raise AssertionError("get_table without pyarrow did not raise ImportError")
PY
if out=$("$work/venv/bin/csm" ls 2>&1); then echo "the csm tool ran without pyarrow: $out"; exit 1; fi
echo "$out" | grep -q "pip install 'pyarrow==26.0.1'"

echo "== with pyarrow: tables from two processes and the csm tool"
"$py" -m pip install -q --disable-pip-version-check "pyarrow==26.0.1"
"$py" - <<'PY'
import csm, pyarrow as pa
csm.put_table("trades", pa.table({"px": [1.5, 2.5]}))
PY
"$py" - <<'PY'
import csm
t = csm.get_table("trades", timeout=5)
assert t.column("px").to_pylist() == [1.5, 2.5], t
assert csm.get("weights").sum() == 45.0  # values put before pyarrow came still read
print("tables ok")
PY
"$work/venv/bin/csm" ls | grep -q trades
echo "== pip install: passed"
