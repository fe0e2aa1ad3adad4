#!/bin/sh
# Installs the Debian packages kekfs needs to build, test and demo, if any is missing.
set -eu
pkgs="gcc make pkg-config libfuse3-dev fuse3 libsodium-dev libssl-dev libxxhash-dev
      libcmocka-dev clang libclang-rt-14-dev rsync tar attr acl python3 openssl valgrind strace
      util-linux systemd man-db libp11-kit-dev softhsm2 opensc clevis tang curl jq
      glusterfs-server glusterfs-client iproute2"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "kekfs: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
