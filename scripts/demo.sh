#!/usr/bin/env bash
# demo.sh - build everything (Release) and run the main job: the example
# programs, then the pools-vs-raw-threads benchmark in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
"$root/scripts/deps.sh"

out=${EXE_BUILD_ROOT:-$root/build}/release
echo "==> building (Release) in $out"
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DEXE_BUILD_TESTS=OFF >/dev/null
cmake --build "$out" -j "${EXE_JOBS:-2}" >/dev/null

echo "==> example: hello_pool"
"$out/examples/hello_pool"

echo "==> benchmark: pools vs raw threads (quick mode; full run: $out/bench/bench_pool)"
"$out/bench/bench_pool" --quick "$@"
