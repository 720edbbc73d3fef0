#!/bin/sh
# check_abi.sh LIB SOVERSION - the shared library's soname carries SOVERSION
# (0.MINOR while the version is 0.x) and every symbol it exports is a
# public exe_ name (or one of the exe__ calls the map exports for
# libexecutor-mpi) bound to the EXECUTOR_<SOVERSION> node of the symbol map.
set -eu
lib=$1
ver=$2
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
if [ "$soname" != "libexecutor.so.$ver" ]; then
	echo "soname is '$soname', expected libexecutor.so.$ver"
	exit 1
fi
# The exe__ names the map lists for libexecutor-mpi are the one exception.
sibling=$(grep -o 'exe__[a-z_]*' "$(dirname "$0")/../cmake/executor.map.in" | tr '\n' ' ')
bad=$(nm -D --defined-only "$lib" | awk -v node="EXECUTOR_$ver" -v sib=" $sibling" '
	$2 == "A" { next }
	{ split($3, s, "@@"); if (s[2] != node || (s[1] !~ /^exe_[a-z]/ && index(sib, " " s[1] " ") == 0)) print $3 }')
if [ -n "$bad" ]; then
	echo "exported outside the map or not a public name:"
	echo "$bad"
	exit 1
fi
echo "soname $soname; every export versioned $ver"
