"""Basic POSIX behaviour of a kekfs mount."""

import errno
import mmap
import multiprocessing
import os
import random
import signal
import socket
import stat
import subprocess
import threading
import time

from kekfs_harness import (Volume, run_kekfs, require_kekfs, write_file, read_file,
                           pattern, assert_eq, assert_bytes_eq, assert_raises_errno,
                           renameat2, fallocate, RENAME_NOREPLACE, RENAME_EXCHANGE,
                           FALLOC_FL_KEEP_SIZE, getdents_types, saved_cwd, is_mounted,
                           wait_for, pid_alive, mount_entries, make_tempdir, rmtree,
                           find_daemon_pids, tmp_root, utimensat, require_tools,
                           wait_mounted)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

C = 4096
SIZES = [0, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 7]


def _pread_all(path):
    return read_file(path)


# ---------------------------------------------------------------- CLI


def test_help_and_version():
    require_kekfs()
    for args in (["--help"], ["--version"], ["init", "--help"], ["mount", "--help"]):
        r = run_kekfs(*args)
        assert r.returncode == 0, "kekfs %s exited %d: %r" % (" ".join(args), r.returncode, r)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert text.strip(), "kekfs %s printed nothing" % " ".join(args)
        if args != ["--version"]:
            assert "usage" in text.lower() or "kekfs" in text.lower(), \
                "kekfs %s: no usage text: %r" % (" ".join(args), text[:200])
    r = run_kekfs("--version")
    assert any(ch.isdigit() for ch in r.stdout.decode("utf-8", "replace")), \
        "--version has no version number on stdout: %r" % r.stdout
    r = run_kekfs("no-such-command")
    assert r.returncode != 0, "unknown command exited 0"


def test_mount_ready_when_command_returns():
    with Volume(do_mount=False) as v:
        r = run_kekfs(*v.mount_argv())
        assert r.returncode == 0, r
        v.daemon_pids = find_daemon_pids(v.mnt)
        # spec: mount returns only once the mount is ready -> no polling here
        assert is_mounted(v.mnt), "mount returned 0 but not in /proc/mounts yet"
        assert os.path.ismount(v.mnt), "mount returned 0 but os.path.ismount is false"
        assert_eq(os.listdir(v.mnt), [], "fresh volume root listing")
        ent = mount_entries(v.mnt)
        assert len(ent) == 1 and ent[0][2].startswith("fuse"), ent
        assert v.daemon_pids, "no kekfs daemon process found for %s" % v.mnt
        v.umount()
        assert not is_mounted(v.mnt)


def _refused(fns, what):
    for fn in fns:
        try:
            fn()
        except OSError:
            pass
        else:
            raise AssertionError("%s through the mount succeeded" % what)


def test_kekfs_dir_hidden():
    """The backing .kekfs never shows and never changes through the mount. With plaintext
    names its name is refused at the root; with encrypted names ".kekfs" is an ordinary name
    (stored encrypted, so it cannot reach the real one), and kekfs's own name files --
    directory ids, long-name side files -- never show in any directory."""
    with Volume() as v:
        write_file(v.path("a"), b"hello")
        assert ".kekfs" not in os.listdir(v.mnt), os.listdir(v.mnt)
        assert b".kekfs" not in getdents_types(v.mnt)
        assert_raises_errno(errno.ENOENT, os.lstat, v.path(".kekfs"))
        assert_raises_errno(errno.ENOENT, os.lstat, v.path(".kekfs", "volume"))
        vol_before = read_file(v.bpath(".kekfs", "volume"))
        _refused([lambda: os.rmdir(v.path(".kekfs")),
                  lambda: os.unlink(v.path(".kekfs", "keyring"))], "an operation on .kekfs")
        if v.names == "plaintext":
            _refused([lambda: os.mkdir(v.path(".kekfs")),
                      lambda: write_file(v.path(".kekfs"), b"x")], "creating .kekfs")
            assert_raises_errno((errno.ENOENT, errno.EPERM, errno.EACCES, errno.EINVAL,
                                 errno.EEXIST), os.rename, v.path("a"), v.path(".kekfs"))
            _refused([lambda: os.symlink("a", v.path(".kekfs")),
                      lambda: os.link(v.path("a"), v.path(".kekfs")),
                      lambda: os.mknod(v.path(".kekfs"), stat.S_IFIFO | 0o600)],
                     "an operation on .kekfs")
        else:
            os.mkdir(v.path(".kekfs"))
            write_file(v.path(".kekfs", "volume"), b"user data")
            assert_eq(os.listdir(v.path(".kekfs")), ["volume"], "the user's .kekfs")
            assert v.backing_path(".kekfs") != v.bpath(".kekfs"), "stored under its own name"
            os.rename(v.path(".kekfs", "volume"), v.path("moved"))
            os.rmdir(v.path(".kekfs"))
            os.rename(v.path("moved"), v.path(".kekfs"))
            assert_eq(read_file(v.path(".kekfs")), b"user data", "file renamed to .kekfs")
            os.unlink(v.path(".kekfs"))
        assert_eq(read_file(v.bpath(".kekfs", "volume")), vol_before, ".kekfs/volume")
        assert os.path.isfile(v.bpath(".kekfs", "keyring")), "keyring gone"
        assert_eq(read_file(v.path("a")), b"hello")
        # only the top-level .kekfs is special: in a subdirectory it is a plain name
        os.mkdir(v.path("sub"))
        write_file(v.path("sub", ".kekfs"), b"ordinary")
        assert_eq(os.listdir(v.path("sub")), [".kekfs"])
        # names long enough for side files (on encrypted names), in the root and below
        write_file(v.path("L" * 200), b"l")
        write_file(v.path("sub", "M" * 255), b"m")
        os.mkdir(v.path("sub", "d" * 180))
        v.remount()
        assert_eq(read_file(v.path("sub", ".kekfs")), b"ordinary")
        want_root, want_sub = ["L" * 200, "a", "sub"], [".kekfs", "d" * 180, "M" * 255]
        assert_eq(sorted(os.listdir(v.mnt)), sorted(want_root), "root listing")
        assert_eq(sorted(os.listdir(v.path("sub"))), sorted(want_sub), "listing of sub")
        assert_eq(sorted(set(getdents_types(v.path("sub"))) - {b".", b".."}),
                  sorted(os.fsencode(n) for n in want_sub), "getdents of sub")
        assert_eq(os.listdir(v.path("sub", "d" * 180)), [], "a new directory is empty")
        for d in (v.mnt, v.path("sub"), v.path("sub", "d" * 180)):
            assert_raises_errno(errno.ENOENT, os.lstat, os.path.join(d, ".kekfs.dirid"))


# ---------------------------------------------------------------- data


def _roundtrip_sizes(v, tag):
    for i, n in enumerate(SIZES):
        write_file(v.path("f%d" % n), pattern(n, 100 + i))
    for i, n in enumerate(SIZES):
        assert_eq(os.stat(v.path("f%d" % n)).st_size, n, "%s size of f%d" % (tag, n))
        assert_bytes_eq(read_file(v.path("f%d" % n)), pattern(n, 100 + i), "%s f%d" % (tag, n))
    v.remount()
    for i, n in enumerate(SIZES):
        assert_eq(os.stat(v.path("f%d" % n)).st_size, n, "%s size of f%d after remount" % (tag, n))
        assert_bytes_eq(read_file(v.path("f%d" % n)), pattern(n, 100 + i),
                        "%s f%d after remount" % (tag, n))
    for i, n in enumerate(SIZES):
        rel = "f%d" % n
        bs = os.stat(v.backing_path(rel)).st_size
        assert_eq(bs, v.expected_backing_size(n), "%s backing size of %s (plaintext %d)" % (tag, rel, n))


def test_file_sizes_roundtrip():
    with Volume() as v:
        _roundtrip_sizes(v, "xchacha")


def test_file_sizes_aes_gcm_chunk16k():
    with Volume(cipher="aes-256-gcm", chunk_size=16384) as v:
        _roundtrip_sizes(v, "aes-gcm/16k")


def test_passphrase_volume():
    with Volume(passphrase="correct horse battery staple") as v:
        write_file(v.path("p"), pattern(5000, 3))
        v.remount()
        assert_bytes_eq(read_file(v.path("p")), pattern(5000, 3))


def test_keyring_outside_backing():
    with Volume(keyring_outside=True) as v:
        assert not os.path.exists(v.bpath(".kekfs", "keyring")), \
            "--keyring given but keyring also created inside backing"
        write_file(v.path("k"), b"outside")
        v.remount()
        assert_eq(read_file(v.path("k")), b"outside")


def test_overwrite_within_and_across_chunks():
    with Volume() as v:
        p = v.path("f")
        model = bytearray(pattern(5 * C + 100, 7))
        write_file(p, bytes(model))
        fd = os.open(p, os.O_RDWR)
        try:
            for off, n in [(0, 1), (C - 1, 2), (C, C), (2 * C - 3, 3 * C + 7), (5 * C + 99, 1),
                           (5 * C + 100, 10), (123, 77)]:
                data = pattern(n, off)
                os.pwrite(fd, data, off)
                if off > len(model):
                    model.extend(b"\0" * (off - len(model)))
                model[off:off + n] = data
                assert_bytes_eq(os.pread(fd, len(model) + 10, 0), bytes(model),
                                "after pwrite(%d,%d)" % (off, n))
        finally:
            os.close(fd)
        v.remount()
        assert_bytes_eq(read_file(p), bytes(model), "after remount")


def test_o_append():
    with Volume() as v:
        p = v.path("log")
        write_file(p, pattern(C - 10, 1))
        model = bytearray(pattern(C - 10, 1))
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        fd2 = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            for i, n in enumerate([5, 20, C, 1, 3 * C + 5]):
                os.lseek(fd, 0, os.SEEK_SET)  # must not matter with O_APPEND
                d = pattern(n, 50 + i)
                use = fd if i % 2 == 0 else fd2
                assert_eq(os.write(use, d), n)
                model += d
                assert_eq(os.fstat(fd).st_size, len(model), "size after append %d" % i)
        finally:
            os.close(fd)
            os.close(fd2)
        assert_bytes_eq(read_file(p), bytes(model), "appended content")
        v.remount()
        assert_bytes_eq(read_file(p), bytes(model), "appended content after remount")


def test_o_trunc_and_o_excl():
    with Volume() as v:
        p = v.path("f")
        write_file(p, pattern(3 * C + 1, 2))
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        try:
            assert_eq(os.fstat(fd).st_size, 0, "size after O_TRUNC")
            os.write(fd, b"abc")
        finally:
            os.close(fd)
        assert_eq(read_file(p), b"abc")
        assert_raises_errno(errno.EEXIST, os.open, p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        fd = os.open(v.path("new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.close(fd)
        assert_eq(stat.S_IMODE(os.stat(v.path("new")).st_mode), 0o640, "O_EXCL create mode")
        # O_TRUNC on a file that is open elsewhere
        fd_r = os.open(p, os.O_RDONLY)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
            os.close(fd)
            assert_eq(os.pread(fd_r, 100, 0), b"", "other fd after O_TRUNC")
        finally:
            os.close(fd_r)
        v.remount()
        assert_eq(os.stat(p).st_size, 0)
        assert_eq(read_file(v.path("new")), b"")


def test_truncate_grow_shrink():
    with Volume() as v:
        p = v.path("t")
        model = bytearray(pattern(3 * C + 500, 9))
        write_file(p, bytes(model))
        steps = [2 * C + 1, C, C - 1, 2 * C + 100, 0, 3 * C, 5000, 5 * C + 1, C + 1, 4 * C]
        fd = os.open(p, os.O_RDWR)
        try:
            for i, n in enumerate(steps):
                if i % 2:
                    os.ftruncate(fd, n)
                else:
                    os.truncate(p, n)
                if n < len(model):
                    del model[n:]
                else:
                    model.extend(b"\0" * (n - len(model)))
                assert_eq(os.fstat(fd).st_size, n, "size after truncate to %d" % n)
                assert_bytes_eq(os.pread(fd, len(model) + 100, 0), bytes(model),
                                "content after truncate to %d" % n)
                # dirty the tail so that a later grow must re-zero it
                if n > 10:
                    d = pattern(7, 1000 + i)
                    os.pwrite(fd, d, n - 7)
                    model[n - 7:n] = d
        finally:
            os.close(fd)
        v.remount()
        assert_bytes_eq(read_file(p), bytes(model), "after remount")
        assert_eq(os.stat(v.backing_path("t")).st_size, v.expected_backing_size(len(model)),
                  "backing size after truncates")


def test_truncate_shrink_then_grow_zeroes_tail():
    with Volume() as v:
        p = v.path("z")
        write_file(p, b"\xaa" * (2 * C + 100))
        os.truncate(p, C + 10)
        os.truncate(p, 2 * C + 100)
        want = b"\xaa" * (C + 10) + b"\0" * (C + 90)
        assert_bytes_eq(read_file(p), want, "grow after shrink (cached)")
        v.remount()
        assert_bytes_eq(read_file(p), want, "grow after shrink (after remount)")


def test_fallocate():
    with Volume() as v:
        p = v.path("fa")
        data = pattern(C + 10, 4)
        write_file(p, data)
        fd = os.open(p, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, 3 * C + 5)
            assert_eq(os.fstat(fd).st_size, 3 * C + 5, "size after posix_fallocate")
            assert_bytes_eq(os.pread(fd, 4 * C, 0), data + b"\0" * (2 * C - 5),
                            "content after posix_fallocate")
            fallocate(fd, 0, 3 * C + 5, 100)
            assert_eq(os.fstat(fd).st_size, 3 * C + 105, "size after fallocate(mode 0)")
            try:
                fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 10 * C)
            except OSError as e:
                raise AssertionError("fallocate(FALLOC_FL_KEEP_SIZE) failed: %s" % e)
            assert_eq(os.fstat(fd).st_size, 3 * C + 105, "size after FALLOC_FL_KEEP_SIZE")
            # a posix_fallocate inside the file must not change data
            os.posix_fallocate(fd, 10, 100)
            assert_eq(os.fstat(fd).st_size, 3 * C + 105)
        finally:
            os.close(fd)
        want = data + b"\0" * (2 * C + 95)
        assert_bytes_eq(read_file(p), want, "content after fallocates")
        v.remount()
        assert_eq(os.stat(p).st_size, 3 * C + 105, "size after remount")
        assert_bytes_eq(read_file(p), want, "content after remount")


def test_sparse_file_holes():
    with Volume() as v:
        p = v.path("sparse")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"head", 0)
            big = 64 * 1024 * 1024 + 123
            os.pwrite(fd, b"tail", big)
            assert_eq(os.fstat(fd).st_size, big + 4)
            assert_eq(os.pread(fd, 8, big - 4), b"\0\0\0\0tail")
            assert_eq(os.pread(fd, C, 10 * C), b"\0" * C, "hole read")
            os.pwrite(fd, b"mid", 20 * C + 5)
        finally:
            os.close(fd)
        v.remount()
        fd = os.open(p, os.O_RDONLY)
        try:
            assert_eq(os.fstat(fd).st_size, big + 4)
            assert_eq(os.pread(fd, 4, 0), b"head")
            assert_eq(os.pread(fd, 3 * C, 19 * C), b"\0" * (C + 5) + b"mid" + b"\0" * (2 * C - 8))
            assert_eq(os.pread(fd, 4, big), b"tail")
            assert_eq(os.pread(fd, 1 << 20, 30 * 1024 * 1024), b"\0" * (1 << 20))
        finally:
            os.close(fd)
        bst = os.stat(v.backing_path("sparse"))
        assert_eq(bst.st_size, v.expected_backing_size(big + 4), "backing size of sparse file")


# ---------------------------------------------------------------- namespace


def test_rename_variants():
    with Volume() as v:
        os.mkdir(v.path("d1"))
        os.mkdir(v.path("d2"))
        write_file(v.path("a"), b"AAAA")
        write_file(v.path("b"), b"BBBBBBBB")
        os.rename(v.path("a"), v.path("b"))  # over existing
        assert not os.path.lexists(v.path("a"))
        assert_eq(read_file(v.path("b")), b"AAAA", "rename over existing")
        os.rename(v.path("b"), v.path("d1", "b2"))  # across dirs
        assert_eq(read_file(v.path("d1", "b2")), b"AAAA", "rename across dirs")
        write_file(v.path("d2", "x"), b"XX")
        assert_raises_errno(errno.EEXIST, renameat2, v.path("d1", "b2"), v.path("d2", "x"),
                            RENAME_NOREPLACE)
        assert_eq(read_file(v.path("d2", "x")), b"XX", "NOREPLACE target untouched")
        renameat2(v.path("d2", "x"), v.path("d2", "y"), RENAME_NOREPLACE)
        assert not os.path.lexists(v.path("d2", "x"))
        renameat2(v.path("d1", "b2"), v.path("d2", "y"), RENAME_EXCHANGE)
        assert_eq(read_file(v.path("d1", "b2")), b"XX", "EXCHANGE side 1")
        assert_eq(read_file(v.path("d2", "y")), b"AAAA", "EXCHANGE side 2")
        assert_raises_errno(errno.ENOENT, renameat2, v.path("d1", "b2"), v.path("d2", "nope"),
                            RENAME_EXCHANGE)
        # exchange a file and a directory
        renameat2(v.path("d1", "b2"), v.path("d2"), RENAME_EXCHANGE)
        assert stat.S_ISREG(os.lstat(v.path("d2")).st_mode)
        assert os.path.isdir(v.path("d1", "b2"))
        assert_eq(read_file(v.path("d1", "b2", "y")), b"AAAA")
        # directory renames
        os.mkdir(v.path("e"))
        os.mkdir(v.path("full"))
        write_file(v.path("full", "f"), b"1")
        os.rename(v.path("d1"), v.path("e"))  # over empty dir
        assert_eq(read_file(v.path("e", "b2", "y")), b"AAAA")
        assert_raises_errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, v.path("e"), v.path("full"))
        assert_raises_errno(errno.EINVAL, os.rename, v.path("e"), v.path("e", "b2", "inside"))
        # rename an open file, keep using the fd
        fd = os.open(v.path("full", "f"), os.O_RDWR)
        try:
            os.rename(v.path("full", "f"), v.path("e", "moved"))
            os.pwrite(fd, pattern(2 * C, 5), 1)
            assert_eq(os.pread(fd, 1, 0), b"1")
        finally:
            os.close(fd)
        want = b"1" + pattern(2 * C, 5)
        assert_bytes_eq(read_file(v.path("e", "moved")), want, "write via fd after rename")
        v.remount()
        assert_eq(sorted(os.listdir(v.mnt)), ["d2", "e", "full"])
        assert_eq(sorted(os.listdir(v.path("e"))), ["b2", "moved"])
        assert_eq(read_file(v.path("d2")), b"XX")
        assert_eq(read_file(v.path("e", "b2", "y")), b"AAAA")
        assert_bytes_eq(read_file(v.path("e", "moved")), want, "after remount")
        assert_eq(os.listdir(v.path("full")), [])


def test_mkdir_rmdir():
    with Volume() as v:
        os.makedirs(v.path("a", "b", "c"))
        os.mkdir(v.path("m"), 0o700)
        assert_eq(stat.S_IMODE(os.stat(v.path("m")).st_mode), 0o700)
        assert_raises_errno(errno.EEXIST, os.mkdir, v.path("a"))
        assert_raises_errno(errno.ENOTEMPTY, os.rmdir, v.path("a"))
        write_file(v.path("a", "b", "file"), b"x")
        assert_raises_errno(errno.ENOTDIR, os.rmdir, v.path("a", "b", "file"))
        assert_raises_errno((errno.EISDIR, errno.EPERM), os.unlink, v.path("a", "b"))
        os.rmdir(v.path("a", "b", "c"))
        assert_raises_errno(errno.ENOENT, os.rmdir, v.path("a", "b", "c"))
        v.remount()
        assert_eq(sorted(os.listdir(v.path("a", "b"))), ["file"])
        os.unlink(v.path("a", "b", "file"))
        os.rmdir(v.path("a", "b"))
        os.rmdir(v.path("a"))
        assert_eq(os.listdir(v.mnt), ["m"])
        v.remount()
        assert_eq(os.listdir(v.mnt), ["m"])


def test_new_objects_show_their_final_mode_at_once():
    """mkdir, create and mknod reply with the object's final attributes: a mode the
    kernel would not guess (0151) reads back at once, before any attribute timeout."""
    with Volume() as v:
        old = os.umask(0)
        try:
            os.mkdir(v.path("d"), 0o151)
            os.close(os.open(v.path("f"), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o151))
            os.mkfifo(v.path("p"), 0o151)
            for name in ("d", "f", "p"):
                assert_eq(stat.S_IMODE(os.stat(v.path(name)).st_mode), 0o151,
                          "mode of new %s, read back at once" % name)
                assert_eq(stat.S_IMODE(os.lstat(v.backing_path(name)).st_mode), 0o151,
                          "mode of the backing %s" % name)
        finally:
            os.umask(old)


def test_readdir_dtype_and_many_entries():
    with Volume() as v:
        write_file(v.path("reg"), b"r")
        os.mkdir(v.path("dir"))
        os.symlink("reg", v.path("lnk"))
        os.mkfifo(v.path("fifo"))
        os.mknod(v.path("sock"), stat.S_IFSOCK | 0o600)
        os.mknod(v.path("chr"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
        want = {b"reg": 8, b"dir": 4, b"lnk": 10, b"fifo": 1, b"sock": 12, b"chr": 2}
        for attempt in ("fresh", "remount"):
            got = getdents_types(v.mnt)
            got.pop(b".", None)
            got.pop(b"..", None)
            assert_eq(sorted(got), sorted(want), "%s: readdir names" % attempt)
            for n, t in want.items():
                assert got[n] == t, "%s: d_type of %r is %s, expected %s" % (
                    attempt, n, got[n], t)
            ents = {e.name: e for e in os.scandir(v.mnt)}
            assert ents["dir"].is_dir(follow_symlinks=False)
            assert ents["reg"].is_file(follow_symlinks=False)
            assert ents["lnk"].is_symlink()
            assert ents["lnk"].is_file(follow_symlinks=True)
            assert not ents["fifo"].is_file(follow_symlinks=False)
            v.remount()
        # many entries: readdir continuation must not skip or repeat names
        os.mkdir(v.path("many"))
        names = ["n%04d_%s" % (i, "x" * (i % 200)) for i in range(600)]
        for n in names:
            os.close(os.open(v.path("many", n), os.O_CREAT | os.O_WRONLY, 0o644))
        got = os.listdir(v.path("many"))
        assert_eq(len(got), len(set(got)), "duplicate names in readdir")
        assert_eq(sorted(got), sorted(names), "readdir of 600 entries")
        for n in names[::3]:
            os.unlink(v.path("many", n))
        v.remount()
        assert_eq(sorted(os.listdir(v.path("many"))),
                  sorted(set(names) - set(names[::3])), "after deleting a third + remount")


def test_hard_links():
    with Volume() as v:
        os.mkdir(v.path("d"))
        write_file(v.path("a"), pattern(C + 3, 1))
        os.link(v.path("a"), v.path("d", "b"))
        sa, sb = os.stat(v.path("a")), os.stat(v.path("d", "b"))
        assert_eq(sa.st_ino, sb.st_ino, "st_ino of hard links")
        assert_eq((sa.st_nlink, sb.st_nlink), (2, 2), "nlink after link")
        # write via one name, read via the other (after the other was cached)
        assert_bytes_eq(read_file(v.path("d", "b")), pattern(C + 3, 1))
        fd = os.open(v.path("a"), os.O_WRONLY)
        os.pwrite(fd, b"NEWDATA", C - 2)
        os.close(fd)
        want = bytearray(pattern(C + 3, 1))
        want[C - 2:C + 5] = b"NEWDATA"
        assert_bytes_eq(read_file(v.path("d", "b")), bytes(want), "write seen via other link")
        os.truncate(v.path("d", "b"), 10)
        assert_eq(os.stat(v.path("a")).st_size, 10, "truncate seen via other link")
        os.link(v.path("a"), v.path("c"))
        assert_eq(os.stat(v.path("d", "b")).st_nlink, 3, "nlink via other name after 2nd link")
        os.unlink(v.path("a"))
        assert_eq(os.stat(v.path("d", "b")).st_nlink, 2, "nlink via other name after unlink")
        assert_raises_errno(errno.EEXIST, os.link, v.path("c"), v.path("d", "b"))
        os.mkdir(v.path("dd"))
        assert_raises_errno(errno.EPERM, os.link, v.path("dd"), v.path("dd2"))
        v.remount()
        sb, sc = os.stat(v.path("d", "b")), os.stat(v.path("c"))
        assert_eq(sb.st_ino, sc.st_ino, "st_ino after remount")
        assert_eq((sb.st_nlink, sc.st_nlink), (2, 2), "nlink after remount")
        assert_bytes_eq(read_file(v.path("c")), bytes(want[:10]))
        # still linked after remount: write via one, read via other
        write_file(v.path("c"), b"after-remount")
        assert_eq(read_file(v.path("d", "b")), b"after-remount")
        os.unlink(v.path("c"))
        assert_eq(os.stat(v.path("d", "b")).st_nlink, 1)


def test_chmod_via_hard_link_seen_immediately():
    with Volume() as v:
        write_file(v.path("x"), b"data", 0o644)
        os.link(v.path("x"), v.path("y"))
        os.stat(v.path("y"))  # populate attribute cache of the second name
        for mode in (0o600, 0o755, 0o4711, 0o640):
            os.chmod(v.path("x"), mode)
            assert_eq(stat.S_IMODE(os.stat(v.path("y")).st_mode), mode,
                      "mode via other hard link immediately after chmod")
        os.chown(v.path("y"), 4321, 8765)
        st = os.stat(v.path("x"))
        assert_eq((st.st_uid, st.st_gid), (4321, 8765), "owner via other hard link")
        os.utime(v.path("y"), ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
        assert_eq(os.stat(v.path("x")).st_mtime_ns, 1_100_000_000_987_654_321,
                  "mtime via other hard link")


def test_symlinks():
    with Volume() as v:
        write_file(v.path("target"), b"T")
        os.symlink("target", v.path("rel"))
        os.symlink("/nonexistent/dangling", v.path("dang"))
        long_target = "/".join(["seg%03d" % i for i in range(400)])[:3000]
        os.symlink(long_target, v.path("long"))
        os.mkdir(v.path("d"))
        os.symlink("../target", v.path("d", "up"))
        for when in ("fresh", "remount"):
            assert_eq(os.readlink(v.path("rel")), "target", when)
            assert_eq(os.readlink(v.path("dang")), "/nonexistent/dangling", when)
            assert_eq(os.readlink(v.path("long")), long_target, when + " long target")
            st = os.lstat(v.path("rel"))
            assert stat.S_ISLNK(st.st_mode), when
            assert_eq(st.st_size, len("target"), "symlink st_size")
            assert_eq(read_file(v.path("d", "up")), b"T", when)
            assert_raises_errno(errno.ENOENT, os.stat, v.path("dang"))
            v.remount()
        os.lchown(v.path("rel"), 1111, 2222)
        os.utime(v.path("rel"), ns=(5 * 10**17 + 1, 6 * 10**17 + 2), follow_symlinks=False)
        v.remount()
        st = os.lstat(v.path("rel"))
        assert_eq((st.st_uid, st.st_gid), (1111, 2222), "lchown on symlink")
        assert_eq(st.st_mtime_ns, 6 * 10**17 + 2, "lutimes on symlink")
        assert_eq(os.stat(v.path("target")).st_uid, 0, "lchown followed the link")


def test_mknod_fifo_socket_chardev():
    with Volume() as v:
        os.mkfifo(v.path("fifo"), 0o640)
        os.mknod(v.path("sock"), stat.S_IFSOCK | 0o600)
        os.mknod(v.path("null"), stat.S_IFCHR | 0o644, os.makedev(1, 3))
        s = socket.socket(socket.AF_UNIX)
        bound = False
        try:
            spath = v.path("bound.sock")
            if len(os.fsencode(spath)) < 100:
                s.bind(spath)
                bound = True
        finally:
            s.close()
        # data through the FIFO
        fd = os.open(v.path("fifo"), os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(fd, b"through-fifo")
            assert_eq(os.read(fd, 100), b"through-fifo")
        finally:
            os.close(fd)
        for when in ("fresh", "remount"):
            st = os.lstat(v.path("fifo"))
            assert stat.S_ISFIFO(st.st_mode), when
            assert_eq(stat.S_IMODE(st.st_mode), 0o640, when + " fifo mode")
            assert stat.S_ISSOCK(os.lstat(v.path("sock")).st_mode), when
            st = os.lstat(v.path("null"))
            assert stat.S_ISCHR(st.st_mode), when
            assert_eq(st.st_rdev, os.makedev(1, 3), when + " rdev")
            if bound:
                assert stat.S_ISSOCK(os.lstat(v.path("bound.sock")).st_mode), when
            v.remount()


def test_chmod_chown_utime_ns():
    with Volume() as v:
        write_file(v.path("f"), b"x")
        os.mkdir(v.path("d"))
        os.chown(v.path("f"), 1234, 5678)
        os.chmod(v.path("f"), 0o4751)
        os.chown(v.path("d"), 42, 43)
        os.chmod(v.path("d"), 0o1777)
        times = {"f": (1_234_567_891_123_456_789, 1_300_000_000_000_000_001),
                 "d": (1, 999_999_999),
                 }
        for n, t in times.items():
            os.utime(v.path(n), ns=t)
        write_file(v.path("future"), b"y")
        os.utime(v.path("future"), ns=(2_208_988_800_000_000_007, 2_208_988_800_500_000_003))
        for when in ("fresh", "remount"):
            st = os.stat(v.path("f"))
            assert_eq(stat.S_IMODE(st.st_mode), 0o4751, when + " mode f")
            assert_eq((st.st_uid, st.st_gid), (1234, 5678), when + " owner f")
            assert_eq(st.st_mtime_ns, times["f"][1], when + " mtime_ns f")
            assert_eq(st.st_atime_ns, times["f"][0], when + " atime_ns f")
            st = os.stat(v.path("d"))
            assert_eq(stat.S_IMODE(st.st_mode), 0o1777, when + " mode d")
            assert_eq((st.st_uid, st.st_gid), (42, 43), when + " owner d")
            assert_eq(st.st_mtime_ns, times["d"][1], when + " mtime_ns d")
            assert_eq(os.stat(v.path("future")).st_mtime_ns, 2_208_988_800_500_000_003,
                      when + " mtime after 2038")
            v.remount()
        # writing updates mtime and ctime
        before = os.stat(v.path("f"))
        fd = os.open(v.path("f"), os.O_WRONLY)
        os.write(fd, b"z")
        os.close(fd)
        after = os.stat(v.path("f"))
        assert after.st_mtime_ns > before.st_mtime_ns, "mtime not updated by write"
        # chmod updates ctime
        c0 = os.stat(v.path("d")).st_ctime_ns
        time.sleep(0.01)
        os.chmod(v.path("d"), 0o755)
        assert os.stat(v.path("d")).st_ctime_ns > c0, "ctime not updated by chmod"


def test_statfs():
    with Volume() as v:
        st = os.statvfs(v.mnt)
        assert st.f_bsize > 0, st
        assert st.f_blocks > 0, st
        assert st.f_bfree <= st.f_blocks and st.f_bavail <= st.f_blocks, st
        assert st.f_namemax >= 255, "f_namemax %d < 255" % st.f_namemax
        name = "n" * 255
        write_file(v.path(name), b"x")
        assert_eq(read_file(v.path(name)), b"x")
        assert_raises_errno(errno.ENAMETOOLONG, write_file, v.path("n" * 256), b"x")


def test_fsync():
    with Volume() as v:
        p = v.path("f")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, pattern(3 * C + 3, 8))
            os.fsync(fd)
            os.fdatasync(fd)
            assert_eq(os.stat(v.backing_path("f")).st_size, v.expected_backing_size(3 * C + 3),
                      "backing size after fsync (file still open)")
        finally:
            os.close(fd)
        dfd = os.open(v.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        os.sync()
        v.remount()
        assert_bytes_eq(read_file(p), pattern(3 * C + 3, 8))


def test_user_xattrs():
    with Volume() as v:
        write_file(v.path("f"), b"x")
        os.mkdir(v.path("d"))
        os.symlink("f", v.path("l"))
        os.mkfifo(v.path("p"))
        # no internal attributes may show through
        for n in ("f", "d", "p"):
            assert_eq(os.listxattr(v.path(n)), [], "listxattr of a fresh %s" % n)
        assert_eq(os.listxattr(v.path("l"), follow_symlinks=False), [], "listxattr of a symlink")
        assert_eq([x for x in os.listxattr(v.mnt) if x.startswith("user.")], [],
                  "listxattr of the volume root")
        os.setxattr(v.mnt, "user.rootattr", b"on the root")
        vals = {"user.a": b"1", "user.empty": b"", "user.bin": bytes(range(256)),
                "user.big": pattern(3000, 5), "user.name with space": b"v"}
        for n, val in vals.items():
            os.setxattr(v.path("f"), n, val)
        os.setxattr(v.path("d"), "user.dirattr", b"dv")
        assert_raises_errno(errno.EEXIST, os.setxattr, v.path("f"), "user.a", b"2",
                            os.XATTR_CREATE)
        assert_raises_errno(errno.ENODATA, os.setxattr, v.path("f"), "user.missing", b"2",
                            os.XATTR_REPLACE)
        os.setxattr(v.path("f"), "user.a", b"replaced", os.XATTR_REPLACE)
        vals["user.a"] = b"replaced"
        os.removexattr(v.path("f"), "user.name with space")
        del vals["user.name with space"]
        assert_raises_errno(errno.ENODATA, os.getxattr, v.path("f"), "user.name with space")
        for when in ("fresh", "remount"):
            got = {n: os.getxattr(v.path("f"), n) for n in os.listxattr(v.path("f"))
                   if n.startswith("user.")}
            assert_eq(got, vals, when + " xattrs")
            assert_eq(os.getxattr(v.path("d"), "user.dirattr"), b"dv", when)
            assert_eq(os.getxattr(v.mnt, "user.rootattr"), b"on the root", when)
            v.remount()
        # xattrs follow renames and hard links
        os.rename(v.path("f"), v.path("g"))
        os.link(v.path("g"), v.path("h"))
        assert_eq(os.getxattr(v.path("h"), "user.bin"), bytes(range(256)))
        assert_raises_errno(errno.ENODATA, os.getxattr, v.path("g"), "user.nonexistent")


def test_mmap_read_and_shared_write():
    with Volume() as v:
        p = v.path("m")
        size = 3 * C + 100
        data = bytearray(pattern(size, 6))
        write_file(p, bytes(data))
        fd = os.open(p, os.O_RDWR)
        try:
            with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
                assert_bytes_eq(m[:], bytes(data), "mmap read")
                patch = b"MMAPWRITE" * 100
                off = C - 450
                m[off:off + len(patch)] = patch
                data[off:off + len(patch)] = patch
                m[size - 1:size] = b"!"
                data[size - 1:size] = b"!"
                m.flush()
            assert_bytes_eq(os.pread(fd, size + 10, 0), bytes(data), "pread after msync")
        finally:
            os.close(fd)
        v.remount()
        assert_bytes_eq(read_file(p), bytes(data), "mmap-written data after remount")
        with open(p, "rb") as f:
            with mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                assert_bytes_eq(m[:], bytes(data), "mmap read after remount")


REGION = 10007  # not chunk aligned: writers share chunks


def _writer(path, idx, nproc):
    import random
    r = random.Random(idx)
    fd = os.open(path, os.O_WRONLY)
    try:
        base = idx * REGION
        pos = 0
        # small pieces interleave with the other writers
        while pos < REGION:
            n = min(REGION - pos, r.randint(1, 1500))
            os.pwrite(fd, bytes([65 + idx]) * n, base + pos)
            pos += n
    finally:
        os.close(fd)
    os._exit(0)


def test_concurrent_writers_distinct_regions():
    nproc = 4
    rounds = 3
    with Volume() as v:
        p = v.path("shared")
        for rnd in range(rounds):
            write_file(p, b"\0" * (nproc * REGION))
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=_writer, args=(p, i, nproc)) for i in range(nproc)]
            for pr in procs:
                pr.start()
            for pr in procs:
                pr.join(60)
                assert pr.exitcode == 0, "writer exit code %r" % pr.exitcode
            want = b"".join(bytes([65 + i]) * REGION for i in range(nproc))
            assert_bytes_eq(read_file(p), want, "round %d: concurrent writes" % rnd)
        v.remount()
        assert_bytes_eq(read_file(p), want, "concurrent writes after remount")


def test_concurrent_writers_via_hard_links():
    nproc = 4
    with Volume() as v:
        p = v.path("shared")
        write_file(p, b"\0" * (nproc * REGION))
        names = [p]
        for i in range(1, nproc):
            names.append(v.path("link%d" % i))
            os.link(p, names[-1])
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_writer, args=(names[i], i, nproc)) for i in range(nproc)]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join(60)
            assert pr.exitcode == 0, "writer exit code %r" % pr.exitcode
        want = b"".join(bytes([65 + i]) * REGION for i in range(nproc))
        for n in names:
            assert_bytes_eq(read_file(n), want, "concurrent writes via hard links, read via %s"
                            % os.path.basename(n))
        v.remount()
        assert_bytes_eq(read_file(names[-1]), want, "after remount")


def test_direct_io_writers_share_chunks_with_readers():
    """In-place writes run side by side on one file (kekfs locks only the chunks a request
    touches): O_DIRECT writers whose 512-byte stripes interleave inside every chunk must lose
    no update (each one re-seals the whole chunk), and O_DIRECT readers running meanwhile must
    never see EIO or a half-written stripe."""
    nwriters, stripe, chunks, rounds = 4, 512, 32, 24
    size = chunks * C
    with Volume() as v:
        p = v.path("shared")
        write_file(p, b"\0" * size)
        stop, errors = threading.Event(), []

        def writer(i):
            fd = os.open(p, os.O_WRONLY | os.O_DIRECT)
            try:
                offs = [o for o in range(0, size, stripe) if (o // stripe) % nwriters == i]
                rng = random.Random(i)
                for rnd in range(rounds):
                    rng.shuffle(offs)
                    for o in offs:
                        os.pwrite(fd, bytes([1 + i + nwriters * rnd]) * stripe, o)
            except OSError as e:
                errors.append("writer %d: %s" % (i, e))
            finally:
                os.close(fd)

        def reader():
            fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
            buf = mmap.mmap(-1, C)
            rng = random.Random(99)
            try:
                while not stop.is_set():
                    blk = rng.randrange(chunks)
                    n = os.preadv(fd, [buf], blk * C)
                    data = bytes(buf[:n])
                    for s in range(0, n, stripe):
                        part, owner = data[s:s + stripe], (blk * C + s) // stripe % nwriters
                        ok = part == bytes([part[0]]) * stripe and (
                            part[0] == 0 or (part[0] - 1) % nwriters == owner)
                        if not ok:
                            errors.append("reader: torn or foreign stripe at %d" % (blk * C + s))
                            return
            except OSError as e:
                errors.append("reader: %s" % e)
            finally:
                buf.close()
                os.close(fd)

        readers = [threading.Thread(target=reader) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(i,)) for i in range(nwriters)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(120)
        stop.set()
        for t in readers:
            t.join(60)
        assert not errors, errors[:5]
        want = b"".join(bytes([1 + (o // stripe) % nwriters + nwriters * (rounds - 1)]) * stripe
                        for o in range(0, size, stripe))
        assert_bytes_eq(read_file(p), want, "interleaved O_DIRECT writes")
        v.remount()
        assert_bytes_eq(read_file(p), want, "interleaved O_DIRECT writes after remount")


def test_mmap_extend_and_mixed_io():
    with Volume() as v:
        p = v.path("mx")
        write_file(p, pattern(C + 10, 1))
        fd = os.open(p, os.O_RDWR)
        try:
            os.ftruncate(fd, 4 * C + 5)
            with mmap.mmap(fd, 4 * C + 5, mmap.MAP_SHARED) as m:
                m[3 * C - 3:3 * C + 7] = b"0123456789"  # in the grown region, across a boundary
                m[4 * C + 4:4 * C + 5] = b"Z"           # last byte
                os.pwrite(fd, b"WRITE", 2 * C)          # write() seen by the mapping
                assert_eq(m[2 * C:2 * C + 5], b"WRITE", "write() visible through mmap")
                m.flush()
            want = bytearray(pattern(C + 10, 1) + b"\0" * (3 * C - 5))
            want[3 * C - 3:3 * C + 7] = b"0123456789"
            want[4 * C + 4] = ord("Z")
            want[2 * C:2 * C + 5] = b"WRITE"
            assert_bytes_eq(os.pread(fd, 5 * C, 0), bytes(want), "after msync")
        finally:
            os.close(fd)
        v.remount()
        assert_bytes_eq(read_file(p), bytes(want), "mmap writes in a grown file after remount")


def test_long_path_from_deep_cwd():
    with Volume() as v:
        prefix = max(len(os.fsencode(v.mnt)), len(os.fsencode(v.backing)))
        target = 4096 - 1 - prefix - 40  # leave room for "/" + file name
        comps = []
        total = 0
        i = 0
        while True:
            n = min(255, target - total - 1)
            if n < 10:
                break
            comps.append(("%03d" % i + "d" * 255)[:n])
            total += n + 1
            i += 1
        rel = "/".join(comps)
        with saved_cwd():
            os.chdir(v.mnt)
            for c in comps:
                os.mkdir(c)
                os.chdir(c)
            # now deep inside: relative ops from a deep cwd
            write_file("file", pattern(C + 1, 11))
            assert_bytes_eq(read_file("file"), pattern(C + 1, 11), "read from deep cwd")
            os.rename("file", "file2")
            os.symlink("file2", "sl")
            assert_eq(read_file("sl"), pattern(C + 1, 11))
            assert_eq(sorted(os.listdir(".")), ["file2", "sl"])
            os.chdir("..")
            assert_eq(os.listdir("."), [comps[-1]])
        full = os.path.join(v.mnt, rel, "file2")
        assert len(os.fsencode(full)) > 3900, len(full)
        assert len(os.fsencode(full)) < 4096
        assert_eq(os.stat(full).st_size, C + 1, "stat of long absolute path")
        v.remount()
        assert_bytes_eq(read_file(full), pattern(C + 1, 11), "long path after remount")
        with saved_cwd():
            os.chdir(os.path.join(v.mnt, rel))
            assert_bytes_eq(read_file("file2"), pattern(C + 1, 11))
            os.unlink("sl")
            os.unlink("file2")
        # remove the chain bottom-up
        with saved_cwd():
            os.chdir(v.mnt)
            for k in range(len(comps), 0, -1):
                os.rmdir("/".join(comps[:k]))
        assert_eq(os.listdir(v.mnt), [])


def test_unlink_open_file():
    with Volume() as v:
        p = v.path("u")
        write_file(p, pattern(2 * C, 12))
        fd = os.open(p, os.O_RDWR)
        try:
            os.unlink(p)
            assert "u" not in os.listdir(v.mnt)
            assert_raises_errno(errno.ENOENT, os.stat, p)
            os.pwrite(fd, b"still-writable", C + 3)
            want = bytearray(pattern(2 * C, 12))
            want[C + 3:C + 17] = b"still-writable"
            assert_bytes_eq(os.pread(fd, 3 * C, 0), bytes(want), "read of unlinked open file")
            write_file(p, b"new file same name")
            assert_eq(read_file(p), b"new file same name")
            assert_bytes_eq(os.pread(fd, 3 * C, 0), bytes(want), "old fd after name reuse")
        finally:
            os.close(fd)
        v.remount()
        assert_eq(os.listdir(v.mnt), ["u"])
        assert_eq(read_file(p), b"new file same name")
        assert_eq(sorted(v.backing_files()), ["u"], "backing files (no leftovers)")


def test_read_only_mount():
    with Volume() as v:
        write_file(v.path("f"), b"ro-data")
        v.remount(opts="ro")
        ent = mount_entries(v.mnt)
        assert ent and "ro" in ent[0][3].split(","), "not mounted ro: %r" % ent
        assert_eq(read_file(v.path("f")), b"ro-data")
        assert_raises_errno(errno.EROFS, write_file, v.path("g"), b"x")
        assert_raises_errno(errno.EROFS, os.open, v.path("f"), os.O_WRONLY)
        assert_raises_errno(errno.EROFS, os.mkdir, v.path("d"))


def _as_nobody(fn):
    """Run fn() in a forked child as uid/gid 65534; returns its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        except BaseException:
            code = 98
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_allow_other_default_permissions():
    with Volume() as v:
        write_file(v.path("secret"), b"s", 0o600)
        write_file(v.path("public"), b"p", 0o644)

        def try_read(name):
            def f():
                try:
                    read_file(v.path(name))
                    return 0
                except OSError as e:
                    return e.errno % 256
            return f
        # let the other user traverse the temp dirs up to the mount point
        os.chmod(tmp_root(), 0o711)
        os.chmod(v.base, 0o711)
        os.chmod(v.mnt, 0o755)
        # without allow_other another user cannot access the mount at all
        assert_eq(_as_nobody(try_read("public")), errno.EACCES,
                  "other user reading 0644 file WITHOUT allow_other (expect EACCES)")
        v.remount(opts="allow_other,default_permissions")
        assert_eq(_as_nobody(try_read("public")), 0, "other user reading 0644 with allow_other")
        assert_eq(_as_nobody(try_read("secret")), errno.EACCES,
                  "other user reading 0600 root file with default_permissions")
        os.mkdir(v.path("shared"))
        os.chmod(v.path("shared"), 0o1777)

        def create():
            try:
                write_file(v.path("shared", "mine"), b"by nobody", 0o644)
                os.mkdir(v.path("shared", "mydir"))
                return 0
            except OSError as e:
                return e.errno % 256
        assert_eq(_as_nobody(create), 0, "other user creating files in a 1777 dir")
        for n in ("mine", "mydir"):
            st = os.stat(v.path("shared", n))
            assert_eq((st.st_uid, st.st_gid), (65534, 65534),
                      "owner of %s created by uid 65534 through allow_other" % n)
        v.remount(opts="allow_other,default_permissions")
        st = os.stat(v.path("shared", "mine"))
        assert_eq((st.st_uid, st.st_gid), (65534, 65534), "owner after remount")


# Built into the daemon with LD_PRELOAD: the backing filesystem refuses to give anything to
# uid 65534, as NFS with root_squash or a filesystem without owners refuses chown.
_CHOWN_REFUSING_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <unistd.h>
int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
	int (*real)(int, const char *, uid_t, gid_t, int) = dlsym(RTLD_NEXT, "fchownat");
	if (uid == 65534) { errno = EPERM; return -1; }
	return real(dirfd, path, uid, gid, flags);
}
int fchown(int fd, uid_t uid, gid_t gid)
{
	int (*real)(int, uid_t, gid_t) = dlsym(RTLD_NEXT, "fchown");
	if (uid == 65534) { errno = EPERM; return -1; }
	return real(fd, uid, gid);
}
"""


def test_new_entries_left_out_when_backing_refuses_their_owner():
    """When the backing filesystem refuses to give a new entry to its creator, create, mkdir,
    mknod and symlink fail with its error and leave nothing behind: no entry, no long-name
    side file, no directory id. Before, the entry stayed (owned by root) after the error."""
    require_tools("cc")
    with Volume(do_mount=False) as v:
        shim = os.path.join(v.base, "refuse_chown.so")
        src = shim + ".c"
        with open(src, "w") as f:
            f.write(_CHOWN_REFUSING_SHIM)
        subprocess.run(["cc", "-shared", "-fPIC", "-o", shim, src, "-ldl"], check=True)
        asan = os.environ.get("ASAN_OPTIONS", "")  # a sanitized daemon: shim first is fine
        r = run_kekfs(*v.mount_argv(opts="allow_other"),
                      env=dict(os.environ, LD_PRELOAD=shim,
                               ASAN_OPTIONS=asan + ":verify_asan_link_order=0"))
        assert r.returncode == 0, r
        assert wait_mounted(v.mnt)
        v.daemon_pids = find_daemon_pids(v.mnt)
        os.chmod(tmp_root(), 0o711)
        os.chmod(v.base, 0o711)
        os.chmod(v.mnt, 0o777)
        backing_before = sorted(os.listdir(v.backing))
        names = ["short", "long-" + "x" * 200]  # the long one has a side file when encrypted

        def make_all():
            for n in names:
                for make in (lambda p: os.mkdir(p), lambda p: os.symlink("t", p),
                             lambda p: os.mkfifo(p), lambda p: os.close(os.open(
                                 p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))):
                    try:
                        make(v.path(n))
                        return 1  # made: the shim did not refuse
                    except OSError as e:
                        if e.errno != errno.EPERM:
                            return 2
            return 0
        assert_eq(_as_nobody(make_all), 0, "every make refused with EPERM")
        assert_eq(os.listdir(v.mnt), [], "entries left in the mount")
        assert_eq(sorted(os.listdir(v.backing)), backing_before, "left in the backing dir")
        os.mkdir(v.path("by-root"))  # root's own creates still work
        write_file(v.path("by-root", "f"), b"ok")
        assert_eq(read_file(v.path("by-root", "f")), b"ok")


def _mode_after_op_by_nobody(path, mode, gid, op):
    """The mode of path (made mode, group gid) after op(path) run as nobody."""
    write_file(path, pattern(2 * C, 3))
    os.chown(path, -1, gid)
    os.chmod(path, mode)

    def run():
        try:
            op(path)
            return 0
        except OSError as e:
            return e.errno % 256
    assert_eq(_as_nobody(run), 0, "%s by another user" % os.path.basename(path))
    return stat.S_IMODE(os.stat(path).st_mode)


def open_to_others_beside_plain_dir(v):
    """Remounts v with allow_other, reachable by nobody, and makes a plain directory beside
    it on the local filesystem for the same ops, whose results kekfs must match."""
    os.chmod(tmp_root(), 0o711)
    os.chmod(v.base, 0o711)
    os.chmod(v.mnt, 0o755)
    v.remount(opts="allow_other")
    plain = os.path.join(v.base, "plain")
    os.mkdir(plain, 0o777)
    return plain


def test_write_and_truncate_by_others_clear_setuid_setgid():
    """A write (buffered or O_DIRECT), a truncate, an O_TRUNC open or a fallocate by a user
    without CAP_FSETID clears setuid, and setgid of a file that is group-executable or whose
    group the writer is not in, exactly as the local filesystem under the test's temp dir
    does; root's writes keep them."""
    with Volume() as v:
        plain = open_to_others_beside_plain_dir(v)
        ops = {"write": lambda p: on_fd(p, lambda fd: os.pwrite(fd, b"nobody", 0)),
               "truncate": lambda p: os.truncate(p, 3),
               "otrunc": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)),
               "fallocate": lambda p: on_fd(p, lambda fd: os.posix_fallocate(fd, 0, 4 * C)),
               "odirect": lambda p: on_fd(p, lambda fd: os.pwrite(fd, aligned(4096, 7), 0),
                                          os.O_DIRECT)}
        cleared = 0
        for name, op in ops.items():
            for mode, gid in ((0o6777, 0), (0o6767, 0), (0o6767, 65534), (0o2777, 65534)):
                f = "%s-%o-%d" % (name, mode, gid)
                want = _mode_after_op_by_nobody(os.path.join(plain, f), mode, gid, op)
                got = _mode_after_op_by_nobody(v.path(f), mode, gid, op)
                assert_eq(got, want, "mode after %s by another user of a %o file of group %d "
                          "(the local filesystem gives %o)" % (name, mode, gid, want))
                cleared += want != mode
        assert cleared >= 10, "the local filesystem cleared bits in only %d cases" % cleared
        p = v.path("root-writes")
        write_file(p, b"x")
        os.chmod(p, 0o6777)
        on_fd(p, lambda fd: os.pwrite(fd, b"root", 0))
        assert_eq(stat.S_IMODE(os.stat(p).st_mode), 0o6777, "mode after a write by root")


def on_fd(path, fn, flags=0):
    """fn(fd) on path opened write-only (and with flags)."""
    fd = os.open(path, os.O_WRONLY | flags)
    try:
        fn(fd)
    finally:
        os.close(fd)


def aligned(n, seed):
    """n bytes of pattern in a page-aligned buffer, as O_DIRECT wants."""
    buf = mmap.mmap(-1, n)
    buf.write(pattern(n, seed))
    return buf


# ---------------------------------------------------------------- more edges


def test_large_offsets_beyond_4g():
    with Volume() as v:
        p = v.path("huge")
        off = 5 * 1024 * 1024 * 1024 + 4093  # > 2^32, straddles a chunk boundary
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"0123456789", off)
            assert_eq(os.fstat(fd).st_size, off + 10)
            assert_eq(os.pread(fd, 20, off - 5), b"\0" * 5 + b"0123456789")
            os.ftruncate(fd, off + 5)
            assert_eq(os.pread(fd, 20, off - 5), b"\0" * 5 + b"01234")
        finally:
            os.close(fd)
        v.remount()
        assert_eq(os.stat(p).st_size, off + 5)
        fd = os.open(p, os.O_RDONLY)
        try:
            assert_eq(os.pread(fd, 20, off - 5), b"\0" * 5 + b"01234")
            assert_eq(os.pread(fd, 10, 4 * 1024 * 1024 * 1024), b"\0" * 10)
        finally:
            os.close(fd)
        assert_eq(os.stat(v.backing_path("huge")).st_size, v.expected_backing_size(off + 5),
                  "backing size of a >4 GiB sparse file")


def test_rename_edge_cases():
    with Volume() as v:
        write_file(v.path("a"), b"A" * 5000)
        os.link(v.path("a"), v.path("b"))
        # rename onto another hard link of the same inode: POSIX no-op
        os.rename(v.path("a"), v.path("b"))
        assert os.path.exists(v.path("a")) and os.path.exists(v.path("b")), \
            "rename between two links of one inode must leave both names"
        assert_eq(os.stat(v.path("b")).st_nlink, 2)
        os.rename(v.path("a"), v.path("a"))  # same name
        assert_eq(read_file(v.path("a")), b"A" * 5000)
        # rename over a file that is open: the old fd keeps the old data
        write_file(v.path("victim"), b"old victim data")
        fd = os.open(v.path("victim"), os.O_RDONLY)
        try:
            write_file(v.path("new"), b"replacement")
            os.rename(v.path("new"), v.path("victim"))
            assert_eq(os.pread(fd, 100, 0), b"old victim data", "fd of the replaced file")
            assert_eq(read_file(v.path("victim")), b"replacement")
        finally:
            os.close(fd)
        # rename a directory holding an open file, keep writing through the fd
        os.makedirs(v.path("d1", "inner"))
        fd = os.open(v.path("d1", "inner", "f"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, pattern(5000, 1))
            os.rename(v.path("d1"), v.path("d2"))
            os.write(fd, pattern(5000, 2))
        finally:
            os.close(fd)
        want = pattern(5000, 1) + pattern(5000, 2)
        assert_bytes_eq(read_file(v.path("d2", "inner", "f")), want, "after dir rename")
        v.remount()
        assert_bytes_eq(read_file(v.path("d2", "inner", "f")), want, "after dir rename + remount")
        assert_eq(read_file(v.path("victim")), b"replacement")
        assert_eq(sorted(v.backing_files()), sorted(["a", "b", "victim", "d2/inner/f"]),
                  "backing files (no leftovers from replaced files)")


def test_truncate_to_zero_through_hard_link():
    with Volume() as v:
        write_file(v.path("x"), pattern(3 * C, 1))
        os.link(v.path("x"), v.path("y"))
        os.setxattr(v.path("x"), "user.k", b"v")
        read_file(v.path("y"))  # cache y
        fd = os.open(v.path("y"), os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"fresh")
        os.close(fd)
        assert_eq(read_file(v.path("x")), b"fresh", "O_TRUNC via other link")
        assert_eq(os.getxattr(v.path("x"), "user.k"), b"v")
        v.remount()
        assert_eq(read_file(v.path("x")), b"fresh")
        assert_eq(read_file(v.path("y")), b"fresh")
        assert_eq(os.stat(v.path("x")).st_ino, os.stat(v.path("y")).st_ino)


def test_mknod_regular_file():
    with Volume() as v:
        os.mknod(v.path("r"), stat.S_IFREG | 0o640)
        assert stat.S_ISREG(os.stat(v.path("r")).st_mode)
        assert_eq(read_file(v.path("r")), b"", "mknod'ed regular file reads empty")
        v.remount()
        assert_eq(read_file(v.path("r")), b"", "mknod'ed file after remount")
        write_file(v.path("r"), pattern(C + 1, 3))
        v.remount()
        assert_bytes_eq(read_file(v.path("r")), pattern(C + 1, 3))
        assert_eq(stat.S_IMODE(os.stat(v.path("r")).st_mode), 0o640)


def test_copy_file_range_and_sendfile():
    with Volume() as v:
        src = v.path("src")
        data = pattern(3 * C + 77, 4)
        write_file(src, data)
        plain = make_tempdir("plain")
        try:
            for dst in (v.path("dst"), os.path.join(plain, "dst")):
                fi = os.open(src, os.O_RDONLY)
                fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    left, off = len(data), 0
                    while left:
                        try:
                            n = os.copy_file_range(fi, fo, left, off, off)
                        except OSError as e:
                            # the kernel refuses copies between different
                            # filesystem types; only the in-mount copy matters
                            if e.errno == errno.EXDEV and dst.startswith(plain):
                                os.pwrite(fo, os.pread(fi, left, off), off)
                                n = left
                            else:
                                raise
                        if n == 0:
                            break
                        off += n
                        left -= n
                finally:
                    os.close(fi)
                    os.close(fo)
                assert_bytes_eq(read_file(dst), data, "copy_file_range to %s" % dst)
            # copy_file_range into the middle of an existing file in the mount
            fi = os.open(src, os.O_RDONLY)
            fo = os.open(v.path("dst"), os.O_WRONLY)
            try:
                os.copy_file_range(fi, fo, 100, C - 50, 2 * C - 10)
            finally:
                os.close(fi)
                os.close(fo)
            want = bytearray(data)
            want[2 * C - 10:2 * C + 90] = data[C - 50:C + 50]
            assert_bytes_eq(read_file(v.path("dst")), bytes(want), "partial copy_file_range")
            fi = os.open(src, os.O_RDONLY)
            fo = os.open(os.path.join(plain, "sf"), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                off = 0
                while off < len(data):
                    n = os.sendfile(fo, fi, off, len(data) - off)
                    if n == 0:
                        break
                    off += n
            finally:
                os.close(fi)
                os.close(fo)
            assert_bytes_eq(read_file(os.path.join(plain, "sf")), data, "sendfile from mount")
            v.remount()
            assert_bytes_eq(read_file(v.path("dst")), bytes(want), "after remount")
        finally:
            rmtree(plain)


def test_many_open_files():
    with Volume() as v:
        fds = []
        try:
            for i in range(300):
                fd = os.open(v.path("f%03d" % i), os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                os.write(fd, pattern(100 + i, i))
            for i, fd in enumerate(fds):
                assert_eq(os.pread(fd, 1000, 0), pattern(100 + i, i), "file %d" % i)
        finally:
            for fd in fds:
                os.close(fd)
        v.remount()
        for i in range(0, 300, 17):
            assert_eq(read_file(v.path("f%03d" % i)), pattern(100 + i, i))


def test_umask_and_setgid_inheritance():
    with Volume() as v:
        old = os.umask(0o027)
        try:
            write_file(v.path("f"), b"x", 0o666)
            os.mkdir(v.path("d"), 0o777)
            assert_eq(stat.S_IMODE(os.stat(v.path("f")).st_mode), 0o640, "umask on create")
            assert_eq(stat.S_IMODE(os.stat(v.path("d")).st_mode), 0o750, "umask on mkdir")
        finally:
            os.umask(old)
        os.mkdir(v.path("sg"))
        os.chown(v.path("sg"), 0, 4242)
        os.chmod(v.path("sg"), 0o2775)
        write_file(v.path("sg", "file"), b"y")
        os.mkdir(v.path("sg", "sub"))
        st = os.stat(v.path("sg", "file"))
        assert_eq(st.st_gid, 4242, "file in setgid dir inherits the dir's group")
        st = os.stat(v.path("sg", "sub"))
        assert_eq(st.st_gid, 4242, "subdir of setgid dir inherits the group")
        assert st.st_mode & stat.S_ISGID, "subdir of setgid dir inherits the setgid bit"
        v.remount()
        assert_eq(os.stat(v.path("sg", "file")).st_gid, 4242, "after remount")


def test_utime_omit_and_now():
    with Volume() as v:
        p = v.path("t")
        write_file(p, b"x")
        os.utime(p, ns=(111_000_000_007, 222_000_000_009))
        # atime only: mtime is UTIME_OMIT (as `touch -a` does)
        utimensat(p, (333, 500_000_000), None)
        st = os.stat(p)
        assert_eq(st.st_mtime_ns, 222_000_000_009,
                  "mtime after utimensat(atime=333.5, mtime=UTIME_OMIT)")
        assert_eq(st.st_atime_ns, 333_500_000_000, "atime after utimensat(atime only)")
        # mtime only: atime is UTIME_OMIT (as `touch -m` does)
        utimensat(p, None, (444, 250_000_000))
        st = os.stat(p)
        assert_eq(st.st_mtime_ns, 444_250_000_000, "mtime after utimensat(mtime only)")
        assert_eq(st.st_atime_ns, 333_500_000_000,
                  "atime after utimensat(atime=UTIME_OMIT, mtime=444.25) must stay unchanged")
        # the same through an open file descriptor (futimens, what touch does)
        fd = os.open(p, os.O_WRONLY)
        try:
            utimensat(fd, None, (666, 125_000_000))
            st = os.stat(p)
            assert_eq(st.st_mtime_ns, 666_125_000_000, "mtime after futimens(mtime only)")
            assert_eq(st.st_atime_ns, 333_500_000_000,
                      "atime after futimens(fd, atime=UTIME_OMIT, mtime=666.125) must stay unchanged")
            utimensat(fd, (777, 5), None)
            st = os.stat(p)
            assert_eq(st.st_atime_ns, 777_000_000_005, "atime after futimens(atime only)")
            assert_eq(st.st_mtime_ns, 666_125_000_000,
                      "mtime after futimens(fd, atime=777, mtime=UTIME_OMIT) must stay unchanged")
        finally:
            os.close(fd)
        subprocess.run(["touch", "-a", "-d", "@555.5", p], check=True)
        assert_eq(os.stat(p).st_mtime_ns, 666_125_000_000, "mtime after touch -a")
        subprocess.run(["touch", "-m", "-d", "@888.5", p], check=True)
        assert_eq(os.stat(p).st_atime_ns, 555_500_000_000, "atime after touch -m")
        t0 = time.time_ns()
        os.utime(p)  # UTIME_NOW for both
        st = os.stat(p)
        assert abs(st.st_mtime_ns - t0) < 5 * 10**9, "utime(NULL) did not set mtime to now"
        assert abs(st.st_atime_ns - t0) < 5 * 10**9, "utime(NULL) did not set atime to now"
        v.remount()
        st2 = os.stat(p)
        assert_eq(st2.st_mtime_ns, st.st_mtime_ns, "mtime after remount")


def test_open_without_read_keeps_atime():
    """open(O_WRONLY)/close and stat do not change atime (on a local
    filesystem only a read may, under relatime)."""
    with Volume() as v:
        p = v.path("t")
        write_file(p, pattern(2 * C, 1))
        os.utime(p, ns=(111_000_000_007, 222_000_000_009))  # atime < mtime: relatime would bump
        fd = os.open(p, os.O_WRONLY)
        os.close(fd)
        os.stat(p)
        v.remount()
        assert_eq(os.stat(p).st_atime_ns, 111_000_000_007,
                  "atime after open(O_WRONLY)+close (no read), checked after remount")
        os.chmod(p, 0o600)
        assert_eq(os.stat(p).st_atime_ns, 111_000_000_007, "atime after chmod")


def test_locks_and_concurrent_appends():
    import fcntl
    with Volume() as v:
        p = v.path("log")
        write_file(p, b"")
        fd = os.open(p, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        nproc, nrec, reclen = 4, 150, 97
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_appender, args=(p, i, nrec, reclen)) for i in range(nproc)]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join(60)
            assert pr.exitcode == 0, "appender exit code %r" % pr.exitcode
        data = read_file(p)
        assert_eq(len(data), nproc * nrec * reclen, "total size of concurrent O_APPEND writes")
        recs = [data[i:i + reclen] for i in range(0, len(data), reclen)]
        for r in recs:
            assert r[:1] in b"ABCD" and r == r[:1] * reclen, "torn/interleaved record %r" % r[:20]
        for i in range(nproc):
            assert_eq(sum(1 for r in recs if r[:1] == bytes([65 + i])), nrec, "records of %d" % i)


def _appender(path, idx, nrec, reclen):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        rec = bytes([65 + idx]) * reclen
        for _ in range(nrec):
            os.write(fd, rec)
    finally:
        os.close(fd)
    os._exit(0)


def _backing_state(v):
    st = {}
    for dp, dns, fns in os.walk(v.backing):
        for n in dns + fns:
            p = os.path.join(dp, n)
            s = os.lstat(p)
            data = read_file(p) if stat.S_ISREG(s.st_mode) else None
            st[p] = (s.st_mode, s.st_size, s.st_mtime_ns, data)
    return st


def test_read_only_mount_never_writes_backing():
    with Volume() as v:
        write_file(v.path("f"), pattern(3 * C, 1))
        os.mkdir(v.path("d"))
        os.setxattr(v.path("f"), "user.a", b"1")
        v.umount()
        before = _backing_state(v)
        v.mount(opts="ro")
        assert_bytes_eq(read_file(v.path("f")), pattern(3 * C, 1))
        os.listdir(v.path("d"))
        os.getxattr(v.path("f"), "user.a")
        assert_raises_errno(errno.EROFS, os.setxattr, v.path("f"), "user.b", b"2")
        assert_raises_errno(errno.EROFS, os.truncate, v.path("f"), 0)
        assert_raises_errno(errno.EROFS, os.chmod, v.path("f"), 0o600)
        v.umount()
        after = _backing_state(v)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, "ro mount modified backing files: %r" % changed


def test_many_cached_inodes():
    """Looking up more names than the daemon's fd limit must not break the
    mount: the kernel keeps every looked-up inode cached while memory lasts,
    so a daemon that pins one backing fd per inode runs out (EMFILE) after
    ~RLIMIT_NOFILE lookups, e.g. during an rsync of a large tree."""
    n = 25000
    with Volume() as v:
        if v.names == "plaintext":
            v.umount()
            base = v.bpath("many")
            os.mkdir(base)
            for i in range(n):  # plain backing directories are valid kekfs directories
                os.mkdir(os.path.join(base, "d%05d" % i))
        else:  # names must be encrypted by kekfs: FIFOs are the cheapest entries to make
            os.mkdir(v.path("many"))
            for i in range(n):
                os.mknod(v.path("many", "d%05d" % i), stat.S_IFIFO | 0o600)
            v.umount()  # the kernel forgets them all: the stats below are lookups again
        v.mount()
        failed = None
        for i in range(n):
            try:
                os.stat(v.path("many", "d%05d" % i))
            except OSError as e:
                failed = (i, e)
                break
        assert failed is None, "lookup #%d failed: %s" % failed
        try:
            write_file(v.path("after-many-lookups"), b"still works")
            got = read_file(v.path("after-many-lookups"))
        except OSError as e:
            raise AssertionError("creating a file after %d lookups failed: %s" % (n, e))
        assert_eq(got, b"still works")


test_many_cached_inodes.timeout = 300


def test_default_acl_overrides_umask_like_plain_dir():
    """With a default ACL on the parent, the umask is not applied (POSIX.1e);
    compare modes and ACLs of new objects with a plain directory."""
    require_tools("setfacl", "getfacl")
    def scenario(root):
        os.makedirs(os.path.join(root, "d"))
        subprocess.run(["setfacl", "-d", "-m", "u:1234:rwx,g::r-x,o::---",
                        os.path.join(root, "d")], check=True)
        old = os.umask(0o022)
        try:
            write_file(os.path.join(root, "d", "f"), b"x", 0o666)
            os.mkdir(os.path.join(root, "d", "sub"), 0o777)
        finally:
            os.umask(old)
        res = {}
        for n in ("d/f", "d/sub"):
            p = os.path.join(root, n)
            acl = subprocess.run(["getfacl", "-n", "-p", "--omit-header", p],
                                 stdout=subprocess.PIPE, check=True).stdout.decode()
            res[n] = (oct(os.stat(p).st_mode), acl)
        return res
    plain = make_tempdir("plainacl")
    try:
        want = scenario(plain)
        with Volume() as v:
            got = scenario(v.mnt)
            for n in sorted(want):
                assert_eq(got[n], want[n], "%s: (mode, ACL) in kekfs vs plain dir, umask 022 "
                          "with a default ACL on the parent" % n)
    finally:
        rmtree(plain)


def test_allow_other_alone_enforces_permissions():
    """`-o allow_other` implies default_permissions (kekfs mount --help): other
    users must not get past the file modes."""
    with Volume() as v:
        write_file(v.path("secret"), b"s", 0o600)
        os.mkdir(v.path("private"), 0o700)
        write_file(v.path("private", "inner"), b"i", 0o644)
        write_file(v.path("ro"), b"r", 0o644)
        os.chmod(tmp_root(), 0o711)
        os.chmod(v.base, 0o711)
        os.chmod(v.mnt, 0o755)  # the volume root (through the mount)
        v.remount(opts="allow_other")
        assert_eq(stat.S_IMODE(os.stat(v.mnt).st_mode), 0o755, "volume root mode")

        def attempt(fn):
            def f():
                try:
                    fn()
                    return 0
                except OSError as e:
                    return e.errno % 256
            return f
        checks = [
            ("read 0600 root file", lambda: read_file(v.path("secret")), errno.EACCES),
            ("read inside 0700 root dir", lambda: read_file(v.path("private", "inner")),
             errno.EACCES),
            ("write 0644 root file", lambda: write_file(v.path("ro"), b"x"), errno.EACCES),
            ("create in 0755 root dir", lambda: write_file(v.path("new"), b"x"), errno.EACCES),
            ("chmod root's file", lambda: os.chmod(v.path("ro"), 0o666), errno.EPERM),
            ("read 0644 root file", lambda: read_file(v.path("ro")), 0),
        ]
        for label, fn, want in checks:
            assert_eq(_as_nobody(attempt(fn)), want, "uid 65534 with -o allow_other: " + label)
        assert_eq(read_file(v.path("ro")), b"r", "file unchanged")
        assert not os.path.exists(v.path("new"))


def test_mount_key_options_via_o():
    """mount -o keyfile=F (and keyring=P) as documented in `kekfs mount --help`."""
    with Volume(keyring_outside=True) as v:
        write_file(v.path("f"), b"via -o")
        v.umount()
        r = run_kekfs("mount", "-o", "keyfile=%s,keyring=%s" % (v.key_file, v.keyring),
                      v.backing, v.mnt)
        assert r.returncode == 0, r
        v.daemon_pids = find_daemon_pids(v.mnt)
        assert is_mounted(v.mnt)
        assert_eq(read_file(v.path("f")), b"via -o")
        v.umount()
    with Volume(passphrase="pass via o") as v:
        write_file(v.path("f"), b"pass")
        v.umount()
        r = run_kekfs("mount", "-o", "ro,passfile=%s" % v.pass_file, v.backing, v.mnt)
        assert r.returncode == 0, r
        v.daemon_pids = find_daemon_pids(v.mnt)
        assert_eq(read_file(v.path("f")), b"pass")
        assert_raises_errno(errno.EROFS, write_file, v.path("g"), b"x")
        v.umount()


def test_read_keeps_mtime_and_backing_untouched():
    """Reading (and stat, readdir, getxattr) never writes the backing file."""
    with Volume() as v:
        write_file(v.path("f"), pattern(5 * C + 1, 2))
        os.setxattr(v.path("f"), "user.a", b"1")
        os.utime(v.path("f"), ns=(10**18, 10**18))
        bf = v.backing_path("f")
        v.umount()
        b = os.stat(bf)
        data = read_file(bf)
        v.mount()
        for _ in range(2):
            assert_bytes_eq(read_file(v.path("f")), pattern(5 * C + 1, 2))
        os.listdir(v.mnt)
        os.getxattr(v.path("f"), "user.a")
        with open(v.path("f"), "rb") as fh:
            with mmap.mmap(fh.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                m[:]
        v.umount()
        b2 = os.stat(bf)
        assert_eq(b2.st_mtime_ns, b.st_mtime_ns, "backing mtime after reads")
        assert_eq(read_file(bf), data, "backing bytes after reads")
        v.mount()
        assert_eq(os.stat(v.path("f")).st_mtime_ns, 10**18, "mtime after reads + remount")
