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
