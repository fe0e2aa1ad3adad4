#!/usr/bin/env bash
# First sequential figures: 1 GiB written with 1 MiB requests (+ fsync), then read back
# after dropping caches, on kekfs and gocryptfs side by side, both backed by tmpfs.
# Interleaved, 3 rounds; prints MiB/s per round. The full benchmark is `make bench`'s job.
set -euo pipefail
KEKFS=$(realpath "${1:-build/kekfs}")
root=$(mktemp -d /tmp/kekfs-seq.XXXXXX)
mount -t tmpfs -o size=6G tmpfs "$root"
cleanup() {
	for m in "$root"/*/mnt; do mountpoint -q "$m" && fusermount3 -u "$m"; done
	umount "$root"; rmdir "$root"
}
trap cleanup EXIT
mkdir -p "$root"/{kekfs,gocryptfs}/{backing,mnt}
openssl rand -out "$root/key" 32
echo benchpass > "$root/pass"
"$KEKFS" init --key-file "$root/key" "$root/kekfs/backing" >/dev/null
"$KEKFS" mount --key-file "$root/key" "$root/kekfs/backing" "$root/kekfs/mnt"
gocryptfs -q -init -passfile "$root/pass" "$root/gocryptfs/backing" >/dev/null
gocryptfs -q -passfile "$root/pass" "$root/gocryptfs/backing" "$root/gocryptfs/mnt"

rate() { # bytes seconds
	awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'
}
for round in 1 2 3; do
	for fs in kekfs gocryptfs; do
		f="$root/$fs/mnt/big"
		t0=$(date +%s.%N)
		dd if=/dev/zero of="$f" bs=1M count=1024 conv=fsync status=none
		t1=$(date +%s.%N)
		sync; echo 3 > /proc/sys/vm/drop_caches
		t2=$(date +%s.%N)
		dd if="$f" of=/dev/null bs=1M status=none
		t3=$(date +%s.%N)
		printf 'round %d %-10s write %5s MiB/s   read (cold) %5s MiB/s\n' "$round" "$fs" \
			"$(rate 1073741824 "$(echo "$t1 - $t0" | bc)")" \
			"$(rate 1073741824 "$(echo "$t3 - $t2" | bc)")"
		rm -f "$f"
	done
done
