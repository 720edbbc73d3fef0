#!/usr/bin/env bash
# deps.sh - make sure the build and test dependencies are installed.
# As root it installs what is missing with apt-get; otherwise it prints the
# exact command to run and fails.
set -euo pipefail

packages=(cmake gcc make pkg-config liburing-dev libck-dev libcriterion-dev libjansson-dev clang libclang-rt-dev
	libboost-context-dev)
missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
# MPI (libexecutor-mpi and its tests) is optional: where it cannot be
# installed, the build leaves the MPI pool out and test.sh says so.
mpi_packages=(libopenmpi-dev openmpi-bin)
mpi_missing=()
for p in "${mpi_packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		mpi_missing+=("$p")
	fi
done
if [ ${#mpi_missing[@]} -ne 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "deps: installing ${mpi_missing[*]} (optional: the MPI pool)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${mpi_missing[@]}" \
			>/dev/null 2>&1 || echo "deps: could not install ${mpi_missing[*]}: the MPI pool is not built" >&2
	else
		echo "deps: optional, for the MPI pool:  sudo apt-get install ${mpi_missing[*]}" >&2
	fi
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	exit 0
fi
echo "deps: missing packages: ${missing[*]}" >&2
echo "deps: install them with:  sudo apt-get install ${missing[*]}" >&2
exit 1
