#!/bin/sh
# check_abi.sh LIB SOVERSION - the shared library's soname carries SOVERSION
# (0.MINOR while the version is 0.x) and every symbol it exports is a
# public exe_ name bound to the EXECUTOR_<SOVERSION> node of the symbol map.
set -eu
lib=$1
ver=$2
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
if [ "$soname" != "libexecutor.so.$ver" ]; then
	echo "soname is '$soname', expected libexecutor.so.$ver"
	exit 1
fi
bad=$(nm -D --defined-only "$lib" | awk -v node="EXECUTOR_$ver" '
	$2 == "A" { next }
	{ split($3, s, "@@"); if (s[2] != node || s[1] !~ /^exe_[a-z]/) print $3 }')
if [ -n "$bad" ]; then
	echo "exported outside the map or not a public name:"
	echo "$bad"
	exit 1
fi
echo "soname $soname; every export versioned $ver"
