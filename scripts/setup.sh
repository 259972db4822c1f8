#!/usr/bin/env bash
# Installs everything csm needs on a fresh Debian 12 machine. Idempotent: re-running it
# only checks that the packages are there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libxxhash-dev libssl-dev libcpp-httplib-dev
  etcd-server iproute2
  # the serializers bench/wire_bench compares csm with
  libcereal-dev libboost-dev libboost-serialization-dev libboost-iostreams-dev libprotobuf-dev protobuf-compiler
  libflatbuffers-dev flatbuffers-compiler capnproto libcapnp-dev
  libucx-dev ucx-utils
  # Apache Arrow C++ comes from the pinned pyarrow wheel, in the project's virtualenv
  python3-venv python3-pip
  # the Python module (python/): Arrow tables to and from pyarrow
  pybind11-dev python3-dev
  # the libFuzzer targets (fuzz/, the `fuzz` preset)
  clang-14 libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Arrow C++ (libraries and headers) from a pinned pyarrow wheel, unless CMake finds an
# installed Arrow. The wheel's libarrow.so.NNNN is linked with an rpath (CMakeLists.txt).
# numpy and pandas: the Python module's put/get of arrays and DataFrames (tests).
pyarrow_version=26.0.1
numpy_version=2.4.6
pandas_version=3.1.1
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if ! "$venv/bin/python" -c "import pyarrow, numpy, pandas, sys; sys.exit(pyarrow.__version__ != '$pyarrow_version' or numpy.__version__ != '$numpy_version' or pandas.__version__ != '$pandas_version')" 2>/dev/null; then
  echo "setup: installing pyarrow $pyarrow_version, numpy $numpy_version and pandas $pandas_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "pyarrow==$pyarrow_version" "numpy==$numpy_version" \
    "pandas==$pandas_version"
fi

# Shared memory in 2 MiB pages where a mapping asks for them (builders' arenas do): they
# are faulted in and mapped by readers many times faster (docs/operations.md, "Page
# size"). "advise" changes nothing for programs that do not ask. CSM_KEEP_HOST_SETTINGS=1
# skips it; csmd then warns and works with 4 KiB pages.
shmem_thp=/sys/kernel/mm/transparent_hugepage/shmem_enabled
if [ -z "${CSM_KEEP_HOST_SETTINGS:-}" ] && [ -w "$shmem_thp" ] && grep -q '\[never\]' "$shmem_thp"; then
  echo "setup: letting shared memory use 2 MiB pages where asked (echo advise > $shmem_thp)"
  echo advise > "$shmem_thp"
fi
echo "setup: all dependencies present"
