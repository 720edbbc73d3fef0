#!/usr/bin/env bash
# demo.sh - build everything (Release) and run the main job: the example
# programs in order (short settings), then the pools-vs-raw-threads
# benchmark in quick mode, which ends with its summary table.
#   scripts/demo.sh            everything
#   scripts/demo.sh --list     the steps
#   scripts/demo.sh NAME...    only those steps (the build always runs)
# Extra arguments after the step names go to bench_pool.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

steps=(hello_pool pool_sync_async cpu_vs_io tickets producer_consumer timers echo
	remote_cmd file_copy io_models fiber_spawn_join fiber_echo bench)
declare -A about=(
	[hello_pool]="the smallest program: squares on a thread pool"
	[pool_sync_async]="sync vs result() vs done callbacks, thread and process pools"
	[cpu_vs_io]="CPU-bound and IO-bound tasks: sequential vs threads vs processes"
	[tickets]="ten buyer processes, a JSON file, a robust cross-process mutex (and without it)"
	[producer_consumer]="producers and consumers over a queue, threads then processes, ended by close"
	[timers]="call_later, call_every, cancel, with measured lateness"
	[echo]="echo server and client, 1000 connections each on ONE io thread"
	[remote_cmd]="remote command execution over a length-prefixed JSON protocol"
	[file_copy]="file copy with overlapping io futures, checksum verified"
	[io_models]="blocking, busy polling, select, epoll, io context: same echo load"
	[fiber_spawn_join]="gevent spawn/join: two sleeping fibers take the longer sleep, not the sum"
	[fiber_echo]="the gevent echo server: a fiber per connection, 1000 at once, 1 then 2 threads"
	[bench]="benchmark: pools vs raw threads (quick mode)"
)

if [ "${1:-}" = "--list" ]; then
	for s in "${steps[@]}"; do printf '  %-18s %s\n' "$s" "${about[$s]}"; done
	exit 0
fi
selected=()
while [ $# -gt 0 ] && [ -n "${about[$1]+x}" ]; do selected+=("$1"); shift; done
[ ${#selected[@]} -eq 0 ] && selected=("${steps[@]}")
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
	echo "demo.sh: unknown step '$1' (see --list)" >&2
	exit 2
fi

"$root/scripts/deps.sh"
out=${EXE_BUILD_ROOT:-$root/build}/release
ex=$out/examples
echo "==> building (Release) in $out"
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DEXE_BUILD_TESTS=OFF >/dev/null
cmake --build "$out" -j "${EXE_JOBS:-2}" >/dev/null

# A token for this run only: the remote command server refuses to start
# without one.
token=demo-$RANDOM$RANDOM
run_step() {
	local s=$1
	shift
	case $s in
	hello_pool) "$ex/hello_pool" ;;
	pool_sync_async) "$ex/pool_sync_async" --sleep-ms 300 ;;
	cpu_vs_io) "$ex/cpu_vs_io" --cpu-iters 50000000 --io-ms 200 ;;
	tickets)
		"$ex/tickets" --tickets 3 --buyers 10 --delay-ms 100
		echo
		echo "--- the same without the lock:"
		"$ex/tickets" --tickets 3 --buyers 10 --delay-ms 100 --no-lock | tail -n 3
		;;
	producer_consumer)
		"$ex/producer_consumer" --producers 3 --consumers 2 --items 5 --max-delay-ms 50
		echo
		echo "--- a bigger run, quietly:"
		"$ex/producer_consumer" --producers 4 --consumers 4 --items 10000 --max-delay-ms 0 --quiet | tail -n 4
		;;
	timers) "$ex/timers" --unit-ms 100 --ticks 5 ;;
	echo)
		"$root/examples/run_pair.sh" "$ex/echo_server" "$ex/echo_client" --expect-peak 1000 -- \
			--conns 1000 --rounds 50
		;;
	remote_cmd)
		# The token travels in the environment, never on a command line.
		REMOTE_CMD_TOKEN=$token "$root/examples/run_pair.sh" "$ex/remote_cmd_server" "$ex/remote_cmd_client" \
			--timeout-ms 1000 -- --verify --malformed \
			'uname -sr' 'echo to stderr >&2; exit 3' 'seq 1 100000 | tail -n 1' 'sleep 5'
		;;
	file_copy) "$ex/file_copy" --size-mb 64 ;;
	io_models) "$ex/io_models" --conns 50 --rounds 400 ;;
	fiber_spawn_join) "$ex/fiber_spawn_join" --unit-ms 500 ;;
	fiber_echo)
		"$root/examples/run_pair.sh" "$ex/fiber_echo_server" "$ex/echo_client" --expect-peak 1000 -- \
			--conns 1000 --rounds 50
		echo
		echo "--- two io contexts, two threads, one port (SO_REUSEPORT):"
		"$root/examples/run_pair.sh" "$ex/fiber_echo_server" "$ex/echo_client" --threads 2 \
			--expect-peak 1000 -- --conns 1000 --rounds 50
		;;
	bench)
		echo "(full run: $out/bench/bench_pool)"
		"$out/bench/bench_pool" --quick "$@"
		;;
	esac
}

demo_start=$(date +%s)
failed=()
n=0
for s in "${selected[@]}"; do
	n=$((n + 1))
	printf '\n==> [%d/%d] %s: %s\n' "$n" "${#selected[@]}" "$s" "${about[$s]}"
	t0=$(date +%s)
	# Each example checks what it shows and exits non-zero if it did not hold.
	run_step "$s" "$@" || failed+=("$s")
	echo "    ($s took $(($(date +%s) - t0)) s)"
done
echo
echo "==> demo done in $(($(date +%s) - demo_start)) s"
if [ ${#failed[@]} -gt 0 ]; then
	echo "==> FAILED: ${failed[*]}" >&2
	exit 1
fi
