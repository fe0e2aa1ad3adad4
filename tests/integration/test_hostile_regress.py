"""Hostile backing directory: regression tests for attacks that kekfs already stops.

Someone who can write the backing directory (but holds no key) edits the volume config
with a valid checksum to downgrade the cipher, the chunk size or the name mode; or tries,
as the same local user as a non-root daemon, to read the daemon's memory through /proc.
Each test states what must hold and checks that the attack was really attempted."""

import os
import subprocess
import tempfile

from kekfs_harness import (Volume, run_kekfs, write_file, read_file, assert_eq,
                           is_mounted, find_daemon_pids, rmtree, kekfs_bin_copy)
from test_fsck import xxh64

CONFIG_FIELDS = (  # offset in .kekfs/volume (docs/FORMAT.md), what the attacker writes
    (10, "cipher", lambda b: 2 if b == 1 else 1),
    (11, "chunk size", lambda b: b + 1),
    (12, "name mode", lambda b: 0 if b == 1 else 1),
)
CONFIG_SUM_AT = 248


CONFIG_COPY2_AT = 4096  # the second copy of the config (docs/FORMAT.md)


def forge_config(path, offset, change):
    """Rewrites one byte of both copies of the volume config and fixes their checksums, as
    an attacker who knows the format can; returns the original bytes."""
    orig = read_file(path)
    assert_eq(len(orig), CONFIG_COPY2_AT + 256, "size of the two-copy config")
    cfg = bytearray(orig)
    for at in (0, CONFIG_COPY2_AT):
        assert_eq(xxh64(bytes(orig[at:at + CONFIG_SUM_AT])),
                  int.from_bytes(orig[at + CONFIG_SUM_AT:at + 256], "little"),
                  "xxh64 self-test")
        cfg[at + offset] = change(cfg[at + offset])
        cfg[at + CONFIG_SUM_AT:at + 256] = xxh64(bytes(cfg[at:at + CONFIG_SUM_AT])).to_bytes(
            8, "little")
    with open(path, "r+b") as f:
        f.write(bytes(cfg))
    return orig


def test_config_downgrades_are_refused():
    """A config whose cipher, chunk size or name mode was changed (checksum fixed up)
    does not mount: the name key's wrap authenticates every field."""
    for names in ("plaintext", "encrypted"):
        with Volume(names=names) as v:
            write_file(v.path("f"), b"data that must stay readable")
            v.umount()
            cfg = v.bpath(".kekfs", "volume")
            for offset, field, change in CONFIG_FIELDS:
                orig = forge_config(cfg, offset, change)
                r = run_kekfs(*v.mount_argv())
                try:
                    assert r.returncode != 0, "%s: mount with a forged %s succeeded" % (
                        names, field)
                    assert not is_mounted(v.mnt), "%s: forged %s left a mount" % (names, field)
                    err = r.stderr.decode("utf-8", "replace")
                    assert "tamper" in err, "%s, forged %s: %r" % (names, field, err)
                finally:
                    if is_mounted(v.mnt):
                        v.daemon_pids = find_daemon_pids(v.mnt)
                        v.umount(check=False)
                    with open(cfg, "r+b") as f:
                        f.write(orig)
            v.mount()
            assert_eq(read_file(v.path("f")), b"data that must stay readable",
                      "%s: file after the forged configs were put back" % names)


def _as_user(uid, argv, **kw):
    return subprocess.run(argv, preexec_fn=lambda: (os.setgroups([]), os.setgid(uid),
                                                    os.setuid(uid)),
                          capture_output=True, timeout=60, **kw)


def test_daemon_proc_entries_unreadable_by_its_own_user():
    """A non-root daemon is not dumpable: the user who mounted it (or a process of theirs
    an attacker controls) cannot read its memory, environment or fds through /proc."""
    uid = 65534
    if not os.path.exists("/usr/bin/fusermount3"):
        raise AssertionError("fusermount3 missing (install fuse3)")
    # Not under the run's 0700 temp root: the user must reach its own files.
    base = tempfile.mkdtemp(prefix="kekfs-nonroot-", dir="/tmp")
    mnt = os.path.join(base, "mnt")
    backing = os.path.join(base, "backing")
    key = os.path.join(base, "key")
    fuse_mode = os.stat("/dev/fuse").st_mode & 0o7777
    try:
        os.chmod("/dev/fuse", 0o666)  # as Debian's udev rules make it; put back below
        os.chmod(base, 0o755)
        os.mkdir(mnt)
        os.chown(mnt, uid, uid)
        write_file(key, os.urandom(32), 0o600)
        os.chown(key, uid, uid)
        os.mkdir(backing)
        os.chown(backing, uid, uid)
        kekfs = kekfs_bin_copy(base)
        env = dict(os.environ, HOME=base, XDG_RUNTIME_DIR="")
        env.pop("XDG_RUNTIME_DIR")
        r = _as_user(uid, [kekfs, "init", "--key-file", key, backing], env=env)
        assert r.returncode == 0, "init as uid %d: %r" % (uid, r.stderr)
        r = _as_user(uid, [kekfs, "mount", "--key-file", key, backing, mnt], env=env)
        assert r.returncode == 0, "mount as uid %d: %r" % (uid, r.stderr)
        pids = find_daemon_pids(mnt)
        assert len(pids) == 1, "one daemon expected, found %r" % pids
        st = os.stat("/proc/%d" % pids[0])
        assert_eq(st.st_uid, uid, "the daemon runs as uid %d" % uid)
        probe = ("import sys\n"
                 "bad = []\n"
                 "for e in ('mem', 'environ', 'maps', 'fd/0'):\n"
                 "    p = '/proc/%d/' + e\n"
                 "    try:\n"
                 "        open(p, 'rb').read(1)\n"
                 "        bad.append(e)\n"
                 "    except OSError:\n"
                 "        pass\n"
                 "print(' '.join(bad))\n") % pids[0]
        r = _as_user(uid, ["python3", "-c", probe])
        assert_eq(r.returncode, 0, "probe ran as uid %d: %r" % (uid, r.stderr))
        assert_eq(r.stdout.decode().strip(), "", "entries of the daemon its own user can read")
        # The probe can fail: a process of the same user that is dumpable is readable.
        me = _as_user(uid, ["python3", "-c", "open('/proc/self/environ','rb').read(1)"])
        assert_eq(me.returncode, 0, "uid %d reads its own dumpable /proc entries" % uid)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        os.chmod("/dev/fuse", fuse_mode)
        rmtree(base)

