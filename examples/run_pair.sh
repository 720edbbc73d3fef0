#!/usr/bin/env bash
# run_pair.sh - run a server example and its client against each other on
# 127.0.0.1:
#   run_pair.sh SERVER CLIENT [server args...] -- [client args...]
# Starts SERVER --port 0 (the kernel picks a free port), reads the port from
# the first line it prints ("... listening on 127.0.0.1:PORT ..."), runs
# CLIENT --port PORT, then stops the server with SIGTERM and shows what it
# printed. Exits with the client's status, or the server's if only it failed.
# With RUN_PAIR_SERVER_EXITS=1 the server must exit on its own (say after
# --max-conns) within 10 s of the client's end; it fails if it had to be
# killed.
set -uo pipefail
server=$1 client=$2
shift 2
sargs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sargs+=("$1"); shift; done
[ $# -gt 0 ] && shift
log=$(mktemp)
trap 'rm -f "$log"; [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null' EXIT

"$server" --port 0 "${sargs[@]}" >"$log" 2>&1 &
spid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
	[ -n "$port" ] && break
	kill -0 "$spid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "run_pair: $(basename "$server") did not start:" >&2
	cat "$log" >&2
	exit 1
fi
"$client" --port "$port" "$@"
crc=$?
if [ "${RUN_PAIR_SERVER_EXITS:-0}" = 1 ]; then
	for _ in $(seq 100); do
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$spid" 2>/dev/null; then
		echo "run_pair: $(basename "$server") did not exit on its own" >&2
		kill -KILL "$spid" 2>/dev/null
		wait "$spid"
		spid=
		sed 's/^/    [server] /' "$log"
		exit 1
	fi
else
	kill -TERM "$spid" 2>/dev/null
fi
wait "$spid"
src=$?
spid=
sed 's/^/    [server] /' "$log"
[ "$crc" -ne 0 ] && exit "$crc"
exit "$src"
