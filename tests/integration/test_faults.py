"""Faults of the backing file system: a full disk (a small loop-mounted ext4, or a tmpfs
where loop devices are missing) and a read-only backing directory. Writes fail with a clear
errno, nothing already written is damaged, key and audit writes fail cleanly, and the volume
works again once space is freed."""

import errno
import os
import shutil

from kekfs_harness import (Volume, small_fs, run_kekfs, write_file, read_file, pattern,
                           assert_bytes_eq, assert_eq, assert_raises_errno, make_tempdir,
                           make_key_file, wait_for, is_mounted, find_daemon_pids, mount_entries)

MIB = 1 << 20


def _one_line(r, label, *words):
    """r failed with exactly one stderr line that names one of words."""
    lines = r.err_lines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("kekfs: "), \
        "%s: want one 'kekfs: ' line and a failure, got %r" % (label, r)
    assert any(w in lines[0].lower() for w in words), "%s: %r names none of %r" % (
        label, lines[0], words)
    return lines[0]


class full_volume(object):
    """A Volume whose backing directory is on a small file system of its own."""

    def __init__(self, size_mb=48, names=None):
        self.size_mb, self.names = size_mb, names

    def __enter__(self):
        self.v = Volume(do_init=False, do_mount=False, names=self.names).__enter__()
        try:
            self.fs = small_fs(os.path.join(self.v.base, "small"), self.size_mb).__enter__()
            self.v.backing = os.path.join(self.fs.path, "backing")
            self.v.keyring = os.path.join(self.v.backing, ".kekfs", "keyring")
            self.v.init()
            self.v.mount()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *a):
        try:
            self.v.umount(check=False)
        finally:
            if getattr(self, "fs", None):
                self.fs.__exit__()
            self.v.cleanup()
        return False


def _fill(path):
    """Writes path in 1 MiB pieces, fsync'ing each, until the disk is full: returns (bytes
    fsync'ed, bytes attempted). The failure must be ENOSPC, at write, fsync or close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    synced = tried = 0
    err = None
    try:
        for i in range(4096):
            tried += MIB
            os.write(fd, pattern(MIB, i))
            os.fsync(fd)
            synced = tried
    except OSError as e:
        err = e
    finally:
        try:
            os.close(fd)
        except OSError as e:
            err = err or e
    assert err is not None and err.errno == errno.ENOSPC, "filling the disk: %r" % err
    return synced, tried


def _crumbs(fs_path):
    """Takes the last free blocks of the file system directly (not through kekfs)."""
    with open(os.path.join(fs_path, "crumbs"), "ab", buffering=0) as f:
        try:
            for _ in range(1 << 16):
                f.write(b"\xff" * 512)
            raise AssertionError("the small file system never filled up")
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def _check_filler(path, synced, tried):
    """After ENOSPC the file holds a prefix of what was written: nothing else, no EIO."""
    data = read_file(path)
    assert synced <= len(data) <= tried, "filler size %d, synced %d, tried %d" % (
        len(data), synced, tried)
    for i in range(0, len(data), MIB):
        assert_bytes_eq(data[i:i + MIB], pattern(MIB, i // MIB)[:len(data) - i],
                        "filler MiB %d" % (i // MIB))


def _listing_is_sane(d):
    """Every name readdir shows opens and reads (no garbage left by failed creates)."""
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            read_file(p)


def _try(fn, *args):
    """fn(*args); ENOSPC (or EDQUOT) is an acceptable answer on a full disk."""
    try:
        fn(*args)
        return True
    except OSError as e:
        assert e.errno in (errno.ENOSPC, errno.EDQUOT), "%s%r: %s" % (fn.__name__, args, e)
        return False


def test_disk_full():
    """ENOSPC from writes; earlier files intact; creates, xattrs, rotation and the audit log
    fail cleanly; after freeing space everything works and survives a remount."""
    with full_volume() as fv:
        v = fv.v
        keep = {"small": pattern(100, 1), "multi": pattern(5 * 4096 + 7, 2),
                "big": pattern(3 * MIB + 5, 3)}
        os.mkdir(v.path("d"))
        for name, data in keep.items():
            write_file(v.path("d", name), data)
        os.setxattr(v.path("d", "small"), "user.k", b"v1")
        os.sync()
        synced, tried = _fill(v.path("filler"))
        _crumbs(fv.fs.path)
        for name, data in keep.items():
            assert_bytes_eq(read_file(v.path("d", name)), data, "%s on a full disk" % name)
        made = [i for i in range(20) if _try(write_file, v.path("d", "new%d" % i),
                                             pattern(9000, i))]
        _try(os.mkdir, v.path("d", "sub"))
        _try(os.setxattr, v.path("d", "multi"), "user.big", b"x" * 4000)
        _listing_is_sane(v.path("d"))
        _one_line(run_kekfs("rotate", v.mnt), "rotate on a full disk", "space")
        _one_line(run_kekfs("keys", "policy", "--rotate-every", "90d", v.mnt),
                  "a key policy change on a full disk", "space")
        assert_eq(run_kekfs("status", v.mnt).returncode, 0, "status on a full disk")
        assert_eq(run_kekfs("audit", "verify", v.mnt).returncode, 0, "audit log after ENOSPC")

        v.remount()  # still mounts (and unlocks) on a full disk
        _check_filler(v.path("filler"), synced, tried)
        _listing_is_sane(v.path("d"))
        for i in made:
            assert_bytes_eq(read_file(v.path("d", "new%d" % i)), pattern(9000, i), "new%d" % i)

        os.unlink(v.path("filler"))
        write_file(v.path("d", "after"), pattern(2 * MIB, 9))
        r = run_kekfs("rotate", v.mnt)
        assert r.returncode == 0, "rotate after freeing space: %r" % (r,)
        v.remount()
        for name, data in keep.items():
            assert_bytes_eq(read_file(v.path("d", name)), data, "%s after freeing space" % name)
        assert_eq(os.getxattr(v.path("d", "small"), "user.k"), b"v1", "xattr after ENOSPC")
        assert_bytes_eq(read_file(v.path("d", "after")), pattern(2 * MIB, 9), "written after")
        r = run_kekfs("audit", "verify", v.mnt)
        assert r.returncode == 0, "audit log after freeing space: %r" % (r,)


test_disk_full.timeout = 300


def test_overwrite_on_full_disk_keeps_old_or_new():
    """A file grown and overwritten in place when the disk fills reads back, after a remount,
    with its old bytes or the new ones in every chunk and no EIO."""
    with full_volume(size_mb=24) as fv:
        v = fv.v
        old = pattern(2 * MIB + 3000, 5)
        write_file(v.path("f"), old)
        os.sync()
        synced, tried = _fill(v.path("filler"))
        os.truncate(v.path("filler"), max(0, synced - MIB))  # some space free again
        vfs = os.statvfs(fv.fs.path)
        new = pattern(len(old) + vfs.f_bavail * vfs.f_frsize + 2 * MIB, 6)  # more than that
        fd = os.open(v.path("f"), os.O_WRONLY)
        try:
            # while the disk is low the open is direct I/O: a write that fills it is short
            grew = os.pwrite(fd, new, 0) == len(new)
            os.fsync(fd)
        except OSError as e:
            assert e.errno == errno.ENOSPC, "overwrite on a full disk: %s" % e
            grew = False
        finally:
            try:
                os.close(fd)
            except OSError as e:
                assert e.errno == errno.ENOSPC, "close on a full disk: %s" % e
        assert not grew, "%d bytes fitted in less free space" % len(new)
        v.remount()
        got = read_file(v.path("f"))
        assert len(old) <= len(got) <= len(new), "size %d after a failed grow" % len(got)
        old += bytes(len(new) - len(old))  # a region the failed write did not reach is a hole
        for off in range(0, len(got), 4096):
            piece = got[off:off + 4096]
            assert piece in (old[off:off + len(piece)], new[off:off + len(piece)]), \
                "chunk %d is neither old nor new after ENOSPC" % (off // 4096)


def test_init_on_full_disk():
    """kekfs init on a full disk: one clear line, and once space is freed it works."""
    base = make_tempdir("initfull")
    key = make_key_file(base)
    with small_fs(os.path.join(base, "small"), 8) as fs:
        _crumbs(fs.path)
        vol = os.path.join(fs.path, "vol")
        _one_line(run_kekfs("init", "--key-file", key, vol), "init on a full disk", "space")
        os.unlink(os.path.join(fs.path, "crumbs"))
        r = run_kekfs("init", "--key-file", key, vol)
        assert r.returncode == 0, "init after freeing space: %r" % (r,)
    shutil.rmtree(base)


def test_read_only_backing_mounts_read_only():
    """A backing directory on a read-only file system (a snapshot, read-only media) mounts
    read-only with a one-line note: reads work, writes fail with EROFS, key changes are
    refused in one line, and init there fails in one line."""
    with full_volume(size_mb=16) as fv:
        v = fv.v
        data = pattern(3 * 4096 + 5, 7)
        os.mkdir(v.path("d"))
        write_file(v.path("d", "f"), data)
        os.setxattr(v.path("d", "f"), "user.k", b"v")
        os.symlink("d/f", v.path("l"))
        v.umount()
        fv.fs.remount("ro")
        r = run_kekfs(*v.mount_argv())
        assert r.returncode == 0, "mount of a read-only backing directory: %r" % (r,)
        assert wait_for(lambda: is_mounted(v.mnt), 15), "not mounted"
        v.daemon_pids = find_daemon_pids(v.mnt)
        lines = r.err_lines()
        assert len(lines) == 1 and "read-only" in lines[0], "want one note: %r" % (r,)
        assert "ro" in mount_entries(v.mnt)[0][3].split(","), mount_entries(v.mnt)
        assert_bytes_eq(read_file(v.path("d", "f")), data, "read from a read-only backing")
        assert_eq(os.getxattr(v.path("d", "f"), "user.k"), b"v", "xattr")
        assert_eq(os.readlink(v.path("l")), "d/f", "symlink")
        for fn, args in ((write_file, (v.path("d", "new"), b"x")),
                         (write_file, (v.path("d", "f"), b"x")), (os.mkdir, (v.path("e"),)),
                         (os.unlink, (v.path("d", "f"),)),
                         (os.setxattr, (v.path("d", "f"), "user.k", b"w"))):
            assert_raises_errno(errno.EROFS, fn, *args)
        _one_line(run_kekfs("rotate", v.mnt), "rotate on a read-only mount", "read-only")
        assert_eq(run_kekfs("status", v.mnt).returncode, 0, "status on a read-only mount")
        v.umount()
        _one_line(run_kekfs("init", "--key-file", v.key_file, os.path.join(fv.fs.path, "new")),
                  "init on a read-only file system", "read-only")
        fv.fs.remount("rw")
        r = v.mount()
        assert not r.err_lines(), "a writable backing directory mounted with %r" % (r,)
        write_file(v.path("d", "new"), b"x")
