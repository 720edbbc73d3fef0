#!/bin/sh
# mpi_rank_death.sh MPIEXEC TEST_MPI - a worker rank dies (SIGKILL) while it
# serves. Passes when the job ends within 60 s with a failure status and a
# message naming the dead rank (Open MPI 4.1, MPICH: the launcher aborts the
# job), or ends cleanly after the client saw the task fail (an MPI that
# reports process failures). Fails on a hang.
mpiexec=$1
prog=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
timeout -k 5 60 "$mpiexec" -n 3 --oversubscribe "$prog" --kill-rank >"$out" 2>&1
rc=$?
took=$(($(date +%s) - start))
cat "$out"
# timeout says 124 (137 after -k); mpirun itself may end with 128+9 too, so
# the elapsed time decides.
if [ $rc -eq 124 ] || [ $took -ge 60 ]; then
	echo "FAIL: the job hung after a rank died (status $rc)"
	exit 1
fi
if [ $rc -ne 0 ] && grep -qiE "signal 9|killed|exited on signal|terminated" "$out"; then
	echo "ok: the job ended with status $rc and said why"
	exit 0
fi
if [ $rc -eq 0 ] && grep -q "die_rank: wait 0, code -10" "$out"; then
	echo "ok: the MPI reported the failure; the client's future failed with -ECHILD"
	exit 0
fi
echo "FAIL: status $rc without a message naming the failure"
exit 1
