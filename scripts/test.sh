#!/usr/bin/env bash
# test.sh - build and run the whole test suite:
#   1. a warnings-as-errors build: unit tests, stress tests, examples;
#      then the MPI pool's tests under mpirun (skipped where MPI is missing);
#   2. the installed package: headers, pkg-config file and CMake package
#      used by a program built outside the tree;
#   3. AddressSanitizer + UBSan (LeakSanitizer included): unit and stress tests;
#   4. ThreadSanitizer: the stress tests and the contract suites (future,
#      wait, compose, thread pool, queue, lazy map) built as plain programs
#      against a stand-in for Criterion, which cannot start under TSan;
#   5. bounded libFuzzer runs of the remote_cmd frame parser, the process
#      pool's channel frames and the ipc queue's shared segment on attach
#      (need clang).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
"$root/scripts/deps.sh"

jobs=${EXE_JOBS:-2}
out=${EXE_BUILD_ROOT:-$root/build}
passed=0
failed=0

step() { printf '\n==> %s\n' "$*"; }

run_ctest() {
	local dir=$1
	shift
	if ctest --test-dir "$dir" --output-on-failure --timeout 600 "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
}

configure_build() {
	local dir=$1
	shift
	cmake -S "$root" -B "$dir" -DEXE_WERROR=ON "$@" >/dev/null
	cmake --build "$dir" -j "$jobs" >/dev/null
}

step "build (RelWithDebInfo, -Werror) and run unit, stress and example tests"
configure_build "$out/test" -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_ctest "$out/test" -LE mpi

step "the MPI pool under mpirun (3 and 2 ranks, spawn, a killed rank, the example)"
if [ -x "$out/test/tests/test_mpi" ]; then
	run_ctest "$out/test" -L mpi
else
	echo "skipped: MPI not found (install libopenmpi-dev openmpi-bin); libexecutor-mpi was not built"
fi

step "install into a temporary prefix and build against it"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$out/test" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/$(gcc -print-multiarch 2>/dev/null)/pkgconfig:${PKG_CONFIG_PATH:-}"
pc_flags=$(pkg-config --cflags --libs executor)
pc_libdir=$(pkg-config --variable=libdir executor)
# shellcheck disable=SC2086
cc -std=c17 -Wall -Werror -o "$prefix/hello_pkgconfig" "$root/examples/hello_pool.c" $pc_flags -Wl,-rpath,"$pc_libdir"
mkdir -p "$prefix/consumer"
cat >"$prefix/consumer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(executor REQUIRED)
add_executable(hello_cmake "$root/examples/hello_pool.c")
target_link_libraries(hello_cmake PRIVATE executor::executor)
CMAKE
mkdir -p "$prefix/consumer_static"
cat >"$prefix/consumer_static/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer_static C)
find_package(executor REQUIRED COMPONENTS static)
add_executable(hello_static "$root/examples/hello_pool.c")
target_link_libraries(hello_static PRIVATE executor::static)
CMAKE
cmake -S "$prefix/consumer" -B "$prefix/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer/build" >/dev/null
cmake -S "$prefix/consumer_static" -B "$prefix/consumer_static/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer_static/build" >/dev/null
# The man pages are installed: one per function and libexecutor(7).
man_ok=true
for page in man3/exe_pool_submit.3 man3/exe_map_next.3 man7/libexecutor.7; do
	[ -f "$prefix/share/man/$page" ] || { echo "missing man page $page"; man_ok=false; }
done
if $man_ok && "$prefix/hello_pkgconfig" && LD_LIBRARY_PATH="$pc_libdir" "$prefix/consumer/build/hello_cmake" &&
	"$prefix/consumer_static/build/hello_static"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

if pkg-config --exists executor-mpi; then
	# The MPI pool's package entries: pkg-config and the CMake component.
	# shellcheck disable=SC2046
	cc -std=c17 -Wall -Werror -o "$prefix/primes_pkgconfig" "$root/examples/mpi_primes.c" \
		$(pkg-config --cflags --libs executor-mpi) -Wl,-rpath,"$pc_libdir"
	mkdir -p "$prefix/consumer_mpi"
	cat >"$prefix/consumer_mpi/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer_mpi C)
find_package(executor REQUIRED COMPONENTS mpi)
add_executable(primes_cmake "$root/examples/mpi_primes.c")
target_link_libraries(primes_cmake PRIVATE executor::mpi)
CMAKE
	cmake -S "$prefix/consumer_mpi" -B "$prefix/consumer_mpi/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
	cmake --build "$prefix/consumer_mpi/build" >/dev/null
	if "$prefix/primes_pkgconfig" --pool thread --blocks 20 &&
		LD_LIBRARY_PATH="$pc_libdir" "$prefix/consumer_mpi/build/primes_cmake" --pool thread --blocks 20; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
fi

step "AddressSanitizer + UBSan: unit and stress tests"
configure_build "$out/asan" -DCMAKE_BUILD_TYPE=Debug -DEXE_SANITIZE=address,undefined -DEXE_BUILD_BENCH=OFF
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_ctest "$out/asan"

step "ThreadSanitizer: stress tests and the contract suites as plain programs"
configure_build "$out/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXE_SANITIZE=thread \
	-DEXE_CRITERION_TESTS=OFF -DEXE_BUILD_BENCH=OFF -DEXE_BUILD_EXAMPLES=OFF
run_ctest "$out/tsan" -L "stress|tsan"

# fuzz NAME MAX_LEN ARGS...: build tests/NAME.c with ARGS (sources, flags)
# under libFuzzer + ASan + UBSan and run it for EXE_FUZZ_SECONDS on
# $out/NAME/corpus (the caller seeds it); -timeout makes an input that hangs
# a finding, not a stall.
fuzz() {
	local name=$1 max_len=$2 dir="$out/$1"
	shift 2
	if clang -std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-o "$dir/$name" "$root/tests/$name.c" "$@" &&
		(cd "$dir" && "./$name" -max_total_time="${EXE_FUZZ_SECONDS:-20}" -timeout=5 \
			-max_len="$max_len" -print_final_stats=0 corpus >log 2>&1); then
		tail -n 1 "$dir/log"
		passed=$((passed + 1))
	else
		tail -n 40 "$dir/log" 2>/dev/null || true
		failed=$((failed + 1))
	fi
}

if ! command -v clang >/dev/null; then
	step "fuzz: skipped, clang (with libFuzzer) not found"
else
	step "fuzz: the remote_cmd frame parser (libFuzzer, ${EXE_FUZZ_SECONDS:-20} s)"
	if pkg-config --exists jansson; then
		seeds="$out/fuzz_remote_proto/corpus"
		mkdir -p "$seeds"
		# Seeds: one well-formed header of each type, so mutations start
		# from inputs that get past the first checks.
		h='"id":1,"total_size":0,"hash":"cbf29ce484222325"'
		printf '{"type":"exec",%s,"token":"t","timeout_ms":5}' "$h" >"$seeds/seed-exec"
		printf '{"type":"out",%s,"stream":"stderr"}' "$h" >"$seeds/seed-out"
		printf '{"type":"exit",%s,"exit_status":-9,"timed_out":true,"stdout_size":1,"stderr_size":2}' \
			"$h" >"$seeds/seed-exit"
		printf '{"type":"error",%s,"error":"no"}' "$h" >"$seeds/seed-error"
		printf '\000\000\000\120{"type":"out","id":1,"total_size":2,"hash":"08ba5f07b55ec3da","stream":"stdout"}hi' \
			>"$seeds/seed-frame"
		# shellcheck disable=SC2046
		fuzz fuzz_remote_proto 8192 -I"$root/examples" "$root/examples/remote_proto.c" \
			$(pkg-config --cflags --libs jansson)
	else
		echo "skipped: jansson not found"
	fi

	step "fuzz: the process pool's channel frames (libFuzzer, ${EXE_FUZZ_SECONDS:-20} s)"
	mkdir -p "$out/fuzz_proc_frame/corpus"
	# Seed: the top bit of the first byte asks for sealed headers.
	printf '\200' >"$out/fuzz_proc_frame/corpus/seed-sealed"
	fuzz fuzz_proc_frame 70000 -Wno-gnu-variable-sized-type-not-at-end -I"$root/include" -I"$root/executor" \
		"$root/executor/proc_frame.c" "$root/executor/alloc.c"

	# Any bytes a foreign or dying process left in the segment: attach, then
	# put/get/count/close must return a documented code.
	step "fuzz: the ipc queue's shared segment on attach (libFuzzer, ${EXE_FUZZ_SECONDS:-20} s)"
	mkdir -p "$out/fuzz_ipc_queue/corpus"
	fuzz fuzz_ipc_queue 4096 -I"$root/include" -I"$root/executor" "$root/executor/ipc_queue.c" \
		"$root/executor/ipc_mutex.c" "$root/executor/errors.c" "$root/executor/alloc.c" -lpthread
fi

echo
echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
