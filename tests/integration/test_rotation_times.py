"""Key operations change no plaintext attribute: after an online or offline rotation, a BYOK
import, a seal, a policy rotation and a rotate --data, every file keeps its atime and mtime to the nanosecond,
its size, mode, owner and xattrs, before and after a remount, and rsync -a sends nothing.
A file whose times change during the re-wrap keeps the new ones."""

import os
import random
import stat
import subprocess
import threading
import time

from kekfs_harness import Volume, write_file, pattern, assert_eq, wait_for, require_tools
from test_rotation import kekfs_ok, wait_rewrap_finished

OLD_NS = 1000000000 * 1000000000  # 2001-09-09, far from any time a write could set


def _make_tree(v, n):
    """n files over a few directories with distinct times (ns), modes, owners and xattrs."""
    top = v.path("t")
    for i in range(n):
        d = os.path.join(top, "d%d" % (i % 4))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "f%04d" % i)
        write_file(p, pattern(100 + i * 97 % 20000, i), mode=(0o600, 0o644, 0o755, 0o2750)[i % 4])
        os.setxattr(p, "user.tag", b"v%d" % i)
        os.chown(p, 4000 + i % 3, 5000 + i % 2)
        os.utime(p, ns=(OLD_NS + i * 7919 + 11, OLD_NS + i * 104729 + 3))
    os.symlink("d0/f0000", os.path.join(top, "link"))
    for d in sorted(os.listdir(top)):
        if not os.path.islink(os.path.join(top, d)):
            os.utime(os.path.join(top, d), ns=(OLD_NS + 5, OLD_NS + 7))
    return top


def _attrs(top):
    """{relative path: (mode, uid, gid, size, atime ns, mtime ns, user.* xattrs)}."""
    out = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(p, k) for k in os.listxattr(p) if k.startswith("user.")}
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                            st.st_atime_ns, st.st_mtime_ns, xattrs)
    return out


def _assert_same(before, after, what):
    diffs = ["%s: %r -> %r" % (p, before[p], after.get(p)) for p in sorted(before)
             if before[p] != after.get(p)]
    assert not diffs, "%s changed %d of %d entries' attributes, e.g. %s" % (
        what, len(diffs), len(before), diffs[:3])


def _rsync_sends(src, dst):
    r = subprocess.run(["rsync", "-aX", "--dry-run", "--itemize-changes", src + "/", dst + "/"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert_eq(r.returncode, 0, "rsync: %r" % r.stderr[-300:])
    return [line for line in r.stdout.decode(errors="replace").splitlines() if line.strip()]


def _check_key_operation(operation, n=60):
    """Builds a tree, copies it with rsync, runs operation(v) and checks nothing moved."""
    require_tools("rsync")
    with Volume() as v:
        top = _make_tree(v, n)
        copy = os.path.join(v.base, "copy")
        subprocess.run(["rsync", "-aX", top + "/", copy + "/"], check=True, timeout=300)
        before = _attrs(top)
        operation(v)
        _assert_same(before, _attrs(top), "the key operation (still mounted)")
        v.remount()
        _assert_same(before, _attrs(top), "the key operation (after a remount)")
        sends = _rsync_sends(top, copy)
        assert not sends, "rsync -a re-sends %d entries after the key operation: %r" % (
            len(sends), sends[:5])


def test_online_rotation_keeps_times():
    def rotate(v):
        assert "KEK v2 is active" in kekfs_ok("rotate", v.mnt)
        wait_rewrap_finished(v)
    _check_key_operation(rotate)


def test_offline_rotation_keeps_times():
    def rotate(v):
        v.umount()
        assert "0 failed" in kekfs_ok("rotate", *v.key_args(), v.backing)
        v.mount()
    _check_key_operation(rotate)


def test_byok_import_keeps_times():
    def import_key(v):
        material = os.path.join(v.base, "kek.bin")
        with open(material, "wb") as f:
            f.write(os.urandom(32))
        assert "KEK v2 is active" in kekfs_ok("keys", "import", "--file", material, v.mnt)
        wait_rewrap_finished(v)
    _check_key_operation(import_key)


def test_seal_keeps_times():
    def seal(v):
        assert "seal: finished" in kekfs_ok("shred", "--seal", v.mnt)
    _check_key_operation(seal)


def test_policy_rotation_keeps_times():
    def policy(v):
        kekfs_ok("keys", "policy", "--rotate-every", "1s", v.mnt)
        assert wait_for(lambda: "KEK v2: active" in kekfs_ok("keys", "list", v.mnt), 30,
                        interval=0.1), "the daemon did not rotate by itself"
        kekfs_ok("keys", "policy", "--rotate-every", "never", v.mnt)
        wait_rewrap_finished(v)
    _check_key_operation(policy)


def test_data_rotation_keeps_times():
    """rotate --data re-encrypts the contents; the plaintext and so its times stay."""
    def redata(v):
        kekfs_ok("rotate", "--data", "-r", v.path("t"))
    _check_key_operation(redata, n=20)


def test_times_set_during_the_rewrap_are_kept():
    """Files written, or given times with utime, while the re-wrap walks past them keep what
    the user set: the re-wrap restores times only under the inode lock."""
    with Volume() as v:
        top = v.path("t")
        os.mkdir(top)
        paths = [os.path.join(top, "f%05d" % i) for i in range(1500)]
        for p in paths:
            write_file(p, b"x" * 50)
            os.utime(p, ns=(OLD_NS, OLD_NS))
        order = list(paths)
        random.Random(7).shuffle(order)
        stop, done = threading.Event(), []

        def user():
            for i, p in enumerate(order):
                if stop.is_set():
                    return
                if i % 2:
                    start = time.time_ns()
                    with open(p, "ab") as f:
                        f.write(b"y")
                    done.append((p, "write", start))
                else:
                    want = OLD_NS + 10 ** 9 * (i + 1) + i
                    os.utime(p, ns=(want, want))
                    done.append((p, "utime", want))

        t = threading.Thread(target=user)
        t.start()
        try:
            kekfs_ok("rotate", v.mnt)
            wait_rewrap_finished(v)
        finally:
            stop.set()
            t.join(60)
        assert len(done) > 10, "too few changes during the re-wrap: %d" % len(done)
        v.remount()
        for p, kind, t0 in done:
            st = os.stat(p)
            if kind == "utime":
                assert_eq((st.st_atime_ns, st.st_mtime_ns), (t0, t0),
                          "%s: times set by utime during the re-wrap" % p)
            else:
                assert st.st_mtime_ns >= t0 - 10 ** 9, \
                    "%s: written during the re-wrap, but mtime went back to %d" % (
                        p, st.st_mtime_ns)
                assert_eq(st.st_size, 51, "%s: size after a write during the re-wrap" % p)


test_times_set_during_the_rewrap_are_kept.timeout = 600
