#!/usr/bin/env bash
# The main job end to end on a throwaway volume: init, mount, back up a tree into the mount
# with rsync, verify it, look at the ciphertext, rotate the KEK online, re-encrypt a file
# under a new DEK, status, unmount, remount, verify again, crypto-shred a file and seal the
# volume against old copies.
set -euo pipefail
KEKFS=$(realpath "${1:-build/kekfs}")
work=$(mktemp -d /tmp/kekfs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" || umount -l "$mnt"; fi
	rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_mounted() {
	for _ in $(seq 1 100); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
	echo "mount did not appear" >&2; return 1
}

step "a key file and a volume"
openssl rand -out "$work/key" 32
"$KEKFS" init --key-file "$work/key" "$work/backing"
mkdir "$mnt"

step "mount"
"$KEKFS" mount --key-file "$work/key" "$work/backing" "$mnt"
wait_mounted
grep " $mnt " /proc/mounts

step "a tree to back up"
src="$work/src"
mkdir -p "$src/docs" "$src/data"
cp -r /usr/share/common-licenses "$src/docs/" 2>/dev/null || true
head -c 5M /dev/urandom > "$src/data/random.bin"
seq 1 200000 > "$src/data/numbers.txt"
ln -s numbers.txt "$src/data/latest"
ln "$src/data/numbers.txt" "$src/data/numbers-hardlink.txt"
truncate -s 1G "$src/data/sparse.img"
setfattr -n user.project -v demo "$src/data/numbers.txt"
du -sh --apparent-size "$src"

step "rsync -aHAX into the mount"
rsync -aHAX --sparse "$src/" "$mnt/"
diff -r "$src" "$mnt" && echo "plaintext view matches the source"

step "what is on disk: ciphertext"
benc() { "$KEKFS" path encrypt --key-file "$work/key" "$work/backing" "$1"; }
ls -la "$(benc data)"
if grep -rq "Apache License" "$work/backing" 2>/dev/null; then
	echo "plaintext found on disk!" >&2
	exit 1
fi
echo "no plaintext in the backing directory; the 1 GiB sparse file takes $(du -h "$(benc data/sparse.img)" | cut -f1)"

step "rotate the KEK online, while the volume stays mounted"
"$KEKFS" rotate "$mnt"
for _ in $(seq 1 200); do
	"$KEKFS" status "$mnt" | grep -q "re-wrap: finished" && break
	sleep 0.05
done

step "re-encrypt one high-risk file under a new data key (rotate --data), online"
"$KEKFS" rotate --data "$mnt/data/random.bin"
cmp "$src/data/random.bin" "$mnt/data/random.bin" && echo "same plaintext, new DEK and ciphertext"

step "status"
"$KEKFS" status "$mnt"
diff -r "$src" "$mnt" && echo "every file still reads the same after the rotation"

step "unmount, mount again, verify again"
"$KEKFS" umount "$mnt"
for _ in $(seq 1 100); do mountpoint -q "$mnt" || break; sleep 0.05; done
"$KEKFS" mount --key-file "$work/key" "$work/backing" "$mnt"
wait_mounted
diff -r "$src" "$mnt" && echo "still identical after remount"

step "the wrong key is refused, with one clear line"
openssl rand -out "$work/wrong" 32
mkdir "$work/mnt2"
"$KEKFS" mount --key-file "$work/wrong" "$work/backing" "$work/mnt2" || echo "(exit status $?)"

step "crypto-shred a file (it has a hard link), then seal the volume against old copies"
cp "$(benc data/numbers.txt)" "$work/numbers.backup-copy" # a backup made before the shred
"$KEKFS" shred "$mnt/data/numbers.txt"
ls "$mnt/data"
"$KEKFS" shred --verify "$work/numbers.backup-copy" "$mnt" || true
"$KEKFS" shred --seal "$mnt"
"$KEKFS" shred --verify "$work/numbers.backup-copy" "$mnt"
"$KEKFS" audit verify "$mnt"

step "unmount"
"$KEKFS" umount "$mnt"
echo "done"
