#!/usr/bin/env bash
# Installs csm from BUILD_DIR into a scratch prefix, builds tests/package (producer and
# consumer) against it with find_package(csm), and once more with pkg-config, then runs
# them against the installed csmd. Usage: run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d /tmp/csm-package-XXXXXX)
csmd_pid=""
cleanup() {
  [ -z "$csmd_pid" ] || { kill "$csmd_pid" 2>/dev/null; wait "$csmd_pid" 2>/dev/null || true; }
  rm -rf "$prefix"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
test ! -e "$prefix/include/csm/client_impl.h" && test ! -d "$prefix/include/csm/node"  # private stays private
cmake -S "$src/tests/package" -B "$prefix/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
g++ -O1 -o "$prefix/consumer/consumer-pc" "$src/tests/package/consumer.cc" $(pkg-config --cflags --libs csm)

export CSM_SOCKET="$prefix/node.sock"
"$prefix/bin/csmd" --socket "$CSM_SOCKET" --capacity 256M --arena-size 8M > "$prefix/csmd.log" 2>&1 &
csmd_pid=$!
for _ in $(seq 200); do  # until it answers (observed), 20 s at most
  "$prefix/bin/csm" info >/dev/null 2>&1 && break
  kill -0 "$csmd_pid" || { cat "$prefix/csmd.log"; exit 1; }
  sleep 0.1
done
"$prefix/consumer/producer"
"$prefix/consumer/consumer"
"$prefix/consumer/consumer-pc"
