#!/usr/bin/env bash
# remote_attack.sh - what a hostile or careless client does to
# remote_cmd_server, one scenario per run, on 127.0.0.1:
#   remote_attack.sh SERVER CLIENT SCENARIO [server args...]
# Scenarios:
#   slow-drip      connections that drip a byte now and then, more than there
#                  are slots: each is dropped within the auth deadline and a
#                  real client is served meanwhile
#   escapes        background jobs, setsid, a double fork, a timed-out
#                  command's children: none outlives its command
#   server-killed  the server is SIGKILLed while a command and its background
#                  job run: both end
#   emfile         a low descriptor limit exhausted by held connections: the
#                  server does not spin, then serves again
#   closed-output  a command that closes stdout and stderr keeps its own
#                  timeout and is reported as timed out; one that exits is not
#   token          the token is not in the server's argv, --token is refused,
#                  commands do not see REMOTE_CMD_TOKEN
# Exits 0 when the scenario held, 1 with a message otherwise.
set -uo pipefail
server=$1 client=$2 scenario=$3
shift 3
token=t0ken-$$-$RANDOM
dir=$(mktemp -d)
spid=
holders=()
cleanup() {
	if [ -n "$spid" ]; then
		kill -9 "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	jobs -p | xargs -r kill 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
printf '%s\n' "$token" >"$dir/token"
unset REMOTE_CMD_TOKEN
fail() {
	echo "remote_attack $scenario: FAIL: $*" >&2
	[ -f "$dir/log" ] && sed 's/^/    [server] /' "$dir/log" >&2
	exit 1
}

# start_server [ulimit -n] [args...]: sets spid and port.
start_server() {
	local nofile=$1
	shift
	(
		[ "$nofile" != - ] && ulimit -n "$nofile"
		exec "$server" --port 0 --token-file "$dir/token" "$@"
	) >"$dir/log" 2>&1 &
	spid=$!
	port=
	for _ in $(seq 100); do
		port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/log" | head -n1)
		[ -n "$port" ] && return 0
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	fail "the server did not start"
}

stop_server() {
	kill -TERM "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	spid=
}

run_client() {
	"$client" --port "$port" --token-file "$dir/token" "$@"
}

# How many processes run `sleep` with one of our marker durations.
marked() { pgrep -f "sleep 7[0-9][0-9][0-9]\.$$" | wc -l; }

wait_unmarked() {
	for _ in $(seq 50); do
		[ "$(marked)" -eq 0 ] && return 0
		sleep 0.1
	done
	pgrep -af "sleep 7[0-9][0-9][0-9]\.$$" >&2
	pkill -9 -f "sleep 7[0-9][0-9][0-9]\.$$"
	return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

case $scenario in
slow-drip)
	start_server - --max-clients 2 --max-pending 2 --auth-ms 1000 --idle-s 10 "$@"
	# Six drippers against two pending slots, each trying for 10 s.
	for i in $(seq 6); do
		(
			trap '' PIPE
			exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
			start=$(date +%s%N)
			for _ in $(seq 40); do
				printf '\000' >&3 2>/dev/null || break
				sleep 0.25
			done
			echo $((($(date +%s%N) - start) / 1000000)) >"$dir/drip.$i"
		) &
		holders+=($!)
	done
	sleep 0.5
	out=$(run_client --quiet "echo alive" 2>&1) || fail "a real client was not served: $out"
	case $out in *"exit status 0"*) ;; *) fail "unexpected answer: $out" ;; esac
	wait "${holders[@]}"
	for i in $(seq 6); do
		ms=$(cat "$dir/drip.$i")
		[ "$ms" -lt 4000 ] || fail "dripper $i held its connection for $ms ms (auth deadline 1000 ms)"
	done
	;;
escapes)
	start_server - --timeout-ms 1500 "$@"
	m=$$
	run_client --quiet "sleep 7001.$m & echo bg" \
		"setsid sleep 7002.$m >/dev/null 2>&1 & echo setsid" \
		"(setsid sh -c 'sleep 7003.$m' >/dev/null 2>&1 &); echo double-fork" \
		"nohup sleep 7004.$m >/dev/null 2>&1 & sleep 7005.$m" \
		>"$dir/out" 2>&1 || fail "a command failed: $(cat "$dir/out")"
	grep -q "sleep 7005.$m: exit status -9 (timed out)" "$dir/out" || fail "no timeout: $(cat "$dir/out")"
	wait_unmarked || fail "processes outlived their commands"
	;;
server-killed)
	start_server - --timeout-ms 60000 "$@"
	m=$$
	run_client --quiet "setsid sleep 7011.$m >/dev/null 2>&1 & sleep 7012.$m & sleep 7013.$m" \
		>/dev/null 2>&1 &
	for _ in $(seq 50); do
		[ "$(marked)" -ge 3 ] && break
		sleep 0.1
	done
	[ "$(marked)" -ge 3 ] || fail "the command did not start"
	kill -9 "$spid"
	wait "$spid" 2>/dev/null
	spid=
	wait_unmarked || fail "processes outlived the killed server"
	;;
emfile)
	# The server's descriptors when idle, then a limit two above that.
	start_server -
	base=$(ls "/proc/$spid/fd" | wc -l)
	stop_server
	# Six more: one connection running a command needs six (itself, two
	# pipes, a pidfd).
	start_server $((base + 6)) --auth-ms 20000 --max-pending 16 "$@"
	# Silent connections: six are accepted, then accept() fails with EMFILE.
	for i in $(seq 10); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port" && sleep 3) &
		holders+=($!)
	done
	sleep 0.5
	hz=$(getconf CLK_TCK)
	t0=$(cpu_ticks "$spid")
	sleep 2
	used=$(($(cpu_ticks "$spid") - t0))
	grep -q "Too many open files" "$dir/log" || fail "accept never hit the descriptor limit"
	# A spinning accept loop burns ~2 s of CPU here; backing off, almost none.
	[ "$used" -lt $((hz / 2)) ] || fail "the server used $used ticks of CPU in 2 s (HZ $hz) while out of descriptors"
	wait "${holders[@]}"
	out=$(run_client --quiet "echo back" 2>&1) || fail "not serving after the holders left: $out"
	;;
closed-output)
	start_server - --timeout-ms 10000 "$@"
	start=$(date +%s%N)
	run_client --quiet --timeout-ms 700 "exec >&- 2>&-; sleep 5" "exec >&- 2>&-; exit 4" >"$dir/out" 2>&1 ||
		fail "$(cat "$dir/out")"
	ms=$((($(date +%s%N) - start) / 1000000))
	grep -q "sleep 5: exit status -9 (timed out)" "$dir/out" || fail "not reported as timed out: $(cat "$dir/out")"
	grep -q "exit 4: exit status 4," "$dir/out" || fail "wrong status: $(cat "$dir/out")"
	[ "$ms" -lt 4000 ] || fail "the 700 ms timeout took $ms ms"
	;;
token)
	REMOTE_CMD_TOKEN=$token start_server - "$@"
	# With --token-file (and a token in the environment it must ignore).
	tr '\0' ' ' <"/proc/$spid/cmdline" | grep -q -- "$token" && fail "the token is in the server's argv"
	out=$(run_client 'echo "[${REMOTE_CMD_TOKEN:-unset}]"' 2>&1) || fail "$out"
	case $out in *"[unset]"*) ;; *) fail "a command saw the token: $out" ;; esac
	stop_server
	# From the environment only: the argv holds no token either.
	(REMOTE_CMD_TOKEN=$token exec "$server" --port 0 >"$dir/log" 2>&1) &
	spid=$!
	sleep 0.5
	kill -0 "$spid" 2>/dev/null || fail "the server did not start with the token in its environment"
	tr '\0' ' ' <"/proc/$spid/cmdline" | grep -q -- "$token" && fail "the token is in the server's argv"
	stop_server
	"$server" --port 0 --token "$token" >"$dir/usage" 2>&1 && fail "--token on the command line was accepted"
	grep -q -- "--token-file" "$dir/usage" || fail "the usage text does not name --token-file: $(cat "$dir/usage")"
	"$client" --port 1 --token "$token" true >"$dir/usage" 2>&1 && fail "the client accepted --token"
	;;
*)
	fail "unknown scenario"
	;;
esac
echo "remote_attack $scenario: OK"
