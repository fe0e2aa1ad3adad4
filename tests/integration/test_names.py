"""Encrypted names (the default for new volumes): lengths, Unicode and non-UTF-8 bytes,
long names, directory ids, xattr names, hidden internals, tampering, `kekfs path`.

The core's mount-level tests run on both name modes (modules with NAME_MODES, see
tests/run_tests.py); this module covers what only encrypted names do.
"""

import errno
import os
import signal
import subprocess
import time

from kekfs_harness import (Volume, write_file, read_file, assert_eq, assert_raises_errno,
                           run_kekfs, require_tools, wait_for)

MARK = "PlainMark"


def _backing_entries(v):
    """Every name, symlink target and xattr name in the backing directory, and the bytes of
    every small file (id and side files)."""
    seen = []
    for root, dirs, files in os.walk(v.backing):
        for n in dirs + files:
            p = os.path.join(root, n)
            seen.append(n)
            if os.path.islink(p):
                seen.append(os.readlink(p))
            seen.extend(os.listxattr(p, follow_symlinks=False))
            if os.path.isfile(p) and not os.path.islink(p):
                seen.append(open(p, "rb").read().decode("latin-1"))
    return seen


def _traced(pid):
    """Every thread of pid has a tracer attached."""
    try:
        return all("\nTracerPid:\t0\n" not in open("/proc/%d/task/%s/status" % (pid, t)).read()
                   for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return False


def _daemon_syscalls(v, fn):
    """How many system calls the daemon (all its threads) makes while fn runs: strace -c."""
    require_tools("strace")
    (pid,), out = v.daemon_pids, os.path.join(v.base, "strace.txt")
    tr = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _traced(pid), 10.0), "strace did not attach to the daemon"
        fn()
    finally:
        tr.send_signal(signal.SIGINT)
        tr.wait(timeout=30)
    total = [l.split() for l in open(out) if l.split()[-1:] == ["total"]]
    assert total, "no strace summary in %s" % out
    return int(total[0][3])  # % time, seconds, usecs/call, calls[, errors], total


def _names_in(path):
    return sorted(os.listdir(path))


def test_name_lengths():
    with Volume(names="encrypted") as v:
        for n in (1, 175, 176, 255):
            write_file(v.path("f" * n), b"len %d" % n)
            os.mkdir(v.path("d" * n))
            write_file(v.path("d" * n, "inner"), b"in %d" % n)
        assert_raises_errno(errno.ENAMETOOLONG, write_file, v.path("x" * 256), b"")
        assert_raises_errno(errno.ENAMETOOLONG, os.mkdir, v.path("x" * 256))
        v.remount()
        want = sorted([c * n for n in (1, 175, 176, 255) for c in "fd"])
        assert_eq(_names_in(v.mnt), want, "listing after remount")
        for n in (1, 175, 176, 255):
            assert_eq(read_file(v.path("f" * n)), b"len %d" % n, "file of %d" % n)
            assert_eq(read_file(v.path("d" * n, "inner")), b"in %d" % n, "inner of %d" % n)
        for e in os.listdir(v.backing):
            assert len(e) <= 255, "backing name longer than 255: %d" % len(e)
        # 175 bytes fit a plain encrypted name; 176 and 255 need the hashed form
        longs = [e for e in os.listdir(v.backing) if e.startswith("kekfs.long.")]
        assert_eq(len(longs), 4, "long backing names (176 and 255, file and directory)")
        # rename between long and short names, and unlink a long one: no side file stays
        os.rename(v.path("f" * 255), v.path("short"))
        os.rename(v.path("short"), v.path("g" * 200))
        os.unlink(v.path("g" * 200))
        os.unlink(v.path("f" * 176))
        side = [e for e in os.listdir(v.backing) if e.startswith(".kekfs.long.")]
        assert_eq(len(side), 2, "side files left (the two long directories only)")


def test_unicode_and_non_utf8_names():
    with Volume(names="encrypted") as v:
        mnt = os.fsencode(v.mnt)
        names = ["héllo wörld ✓ 日本語".encode(), b"\xff\xfe\x80 not utf-8", b"-", b"..."]
        for i, n in enumerate(names):
            write_file(os.path.join(mnt, n), b"%d" % i)
        v.remount()
        assert_eq(sorted(os.listdir(mnt)), sorted(names), "bytes names")
        for i, n in enumerate(names):
            assert_eq(read_file(os.path.join(mnt, n)), b"%d" % i, "contents of %r" % n)


def test_no_plaintext_name_in_backing():
    with Volume(names="encrypted") as v:
        os.makedirs(v.path(MARK + "dir", MARK + "sub"))
        write_file(v.path(MARK + "dir", MARK + "file"), b"x")
        write_file(v.path(MARK + "long" + "L" * 200), b"y")
        os.symlink(MARK + "target", v.path(MARK + "link"))
        os.link(v.path(MARK + "dir", MARK + "file"), v.path(MARK + "hard"))
        os.setxattr(v.path(MARK + "dir", MARK + "file"), "user." + MARK + "attr", b"v")
        os.setxattr(v.path(MARK + "dir"), "user." + MARK + "dirattr", b"v")
        os.rename(v.path(MARK + "dir"), v.path(MARK + "moved"))
        v.umount()
        seen = _backing_entries(v)
        assert len(seen) > 10, "walked too little of the backing directory"
        for s in seen:
            assert MARK not in s and MARK.lower() not in s.lower(), \
                "plaintext name in the backing directory: %r" % s[:80]
        v.mount()
        assert_eq(os.getxattr(v.path(MARK + "moved", MARK + "file"), "user." + MARK + "attr"),
                  b"v", "xattr after remount")
        assert_eq(os.readlink(v.path(MARK + "link")), MARK + "target", "symlink target")


def test_rename_directory_with_10000_entries_is_o1():
    with Volume(names="encrypted") as v:
        os.mkdir(v.path("big"))
        for i in range(10000):
            os.mknod(v.path("big", "entry%05d" % i))
        bdir = v.backing_path("big")
        before = {e: os.lstat(os.path.join(bdir, e)).st_ino for e in os.listdir(bdir)}
        top_before = set(os.listdir(v.backing))
        t0 = time.monotonic()
        calls = _daemon_syscalls(v, lambda: os.rename(v.path("big"), v.path("renamed")))
        elapsed = time.monotonic() - t0
        assert calls < 200, "the daemon made %d system calls to rename the directory" % calls
        bdir2 = v.backing_path("renamed")
        after = {e: os.lstat(os.path.join(bdir2, e)).st_ino for e in os.listdir(bdir2)}
        assert_eq(after, before, "backing entries of the renamed directory (names, inodes)")
        top_after = set(os.listdir(v.backing))
        assert_eq(len(top_before - top_after), 1, "backing entries gone at the top")
        assert_eq(len(top_after - top_before), 1, "backing entries new at the top")
        assert elapsed < 2.0, "renaming took %.2fs" % elapsed
        assert_eq(len(os.listdir(v.path("renamed"))), 10000, "entries after the rename")


test_rename_directory_with_10000_entries_is_o1.timeout = 300


def test_tampered_and_foreign_names_are_skipped():
    with Volume(names="encrypted", foreground=True) as v:
        for n in ("keepme", "victim"):
            write_file(v.path(n), n.encode())
        victim = os.path.basename(v.backing_path("victim"))
        flipped = ("B" if victim[5] == "A" else "A").join((victim[:5], victim[6:]))
        v.umount()  # (the kernel would otherwise still remember "victim")
        os.rename(os.path.join(v.backing, victim), os.path.join(v.backing, flipped))
        write_file(os.path.join(v.backing, "foreign.txt"), b"not from kekfs")
        v.mount()
        assert_eq(_names_in(v.mnt), ["keepme"], "listing with a tampered and a foreign name")
        log = open(v.fg_stderr_path, "rb").read().decode("utf-8", "replace")
        lines = [l for l in log.splitlines() if "do not decrypt" in l]
        assert_eq(len(lines), 1, "log lines for one listing")
        assert "victim" not in log and "keepme" not in log, "plaintext name in the log"
        assert_raises_errno(errno.ENOENT, os.stat, v.path("victim"))
        assert_eq(read_file(v.path("keepme")), b"keepme", "the daemon still serves")


def test_swapped_side_files_and_moved_names_are_skipped():
    """A long name's side file swapped with another's, or an entry moved to another backing
    directory, does not decrypt there: skipped and logged, never shown under a wrong name;
    a long name still opens by its own name (the backing name is its hash)."""
    with Volume(names="encrypted", foreground=True) as v:
        long_a, long_b = "a" * 200, "b" * 200
        write_file(v.path(long_a), b"A")
        write_file(v.path(long_b), b"B")
        os.mkdir(v.path("sub"))
        write_file(v.path("moved"), b"M")
        side_a, side_b = (os.path.join(v.backing, "." + os.path.basename(v.backing_path(n)))
                          for n in (long_a, long_b))
        bmoved, bsub = v.backing_path("moved"), v.backing_path("sub")
        v.umount()
        a, b = read_file(side_a), read_file(side_b)
        for p, data in ((side_a, b), (side_b, a)):
            os.chmod(p, 0o600)
            write_file(p, data)
        os.rename(bmoved, os.path.join(bsub, os.path.basename(bmoved)))
        v.mount()
        assert_eq(_names_in(v.mnt), ["sub"], "root with swapped side files")
        assert_eq(_names_in(v.path("sub")), [], "sub with an entry moved in")
        assert_raises_errno(errno.ENOENT, os.stat, v.path("sub", "moved"))
        assert_raises_errno(errno.ENOENT, os.stat, v.path("moved"))
        assert_eq(read_file(v.path(long_a)), b"A", "long name looked up by itself")
        log = open(v.fg_stderr_path, "rb").read().decode("utf-8", "replace")
        assert_eq(len([l for l in log.splitlines() if "do not decrypt" in l]), 2,
                  "log lines (one per directory listed)")


def test_tampered_directory_id_is_detected():
    with Volume(names="encrypted", foreground=True) as v:
        os.mkdir(v.path("sub"))
        write_file(v.path("sub", "f"), b"data")
        idfile = os.path.join(v.backing_path("sub"), ".kekfs.dirid")
        v.umount()
        good = open(idfile, "rb").read()
        assert_eq(len(good), 16, "directory id length")
        os.chmod(idfile, 0o600)
        write_file(idfile, bytes([good[0] ^ 1]) + good[1:])
        v.mount()
        assert_eq(os.listdir(v.path("sub")), [], "names under a changed directory id")
        assert_raises_errno(errno.ENOENT, os.stat, v.path("sub", "f"))
        log = open(v.fg_stderr_path, "rb").read().decode("utf-8", "replace")
        assert "do not decrypt" in log, "no log line for the changed id"
        v.umount()
        write_file(idfile, good[:8])
        v.mount()
        assert_raises_errno(errno.EIO, os.listdir, v.path("sub"))
        v.umount()
        write_file(idfile, good)
        v.mount()
        assert_eq(read_file(v.path("sub", "f")), b"data", "restored id")


def test_missing_names_are_enoent():
    with Volume(names="encrypted") as v:
        os.mkdir(v.path("d"))
        for p in (v.path("nope"), v.path("d", "nope"), v.path("n" * 200),
                  v.path("d", "n" * 255), v.path(".kekfs.dirid"), v.path("d", ".kekfs.dirid")):
            assert_raises_errno(errno.ENOENT, os.stat, p)
        assert_raises_errno(errno.ENAMETOOLONG, os.stat, v.path("n" * 256))


def test_internal_files_hidden_and_names_free():
    with Volume(names="encrypted") as v:
        os.mkdir(v.path("d"))
        # names that look like kekfs's own files are ordinary names when encrypted
        for n in (".kekfs", ".kekfs.dirid", "kekfs.long.x"):
            write_file(v.path("d", n), n.encode())
        write_file(v.path(".kekfs"), b"mine")
        v.remount()
        assert_eq(_names_in(v.mnt), [".kekfs", "d"], "root listing")
        assert_eq(_names_in(v.path("d")), [".kekfs", ".kekfs.dirid", "kekfs.long.x"],
                  "listing of d")
        assert_eq(read_file(v.path("d", ".kekfs.dirid")), b".kekfs.dirid", "user file")
        assert_eq(read_file(v.path(".kekfs")), b"mine", "user .kekfs")
        for n in os.listdir(v.path("d")):
            os.unlink(v.path("d", n))
        os.rmdir(v.path("d"))
        assert_eq(_names_in(v.mnt), [".kekfs"], "after rmdir")


def test_directory_rename_over_empty_directory():
    with Volume(names="encrypted") as v:
        os.makedirs(v.path("a", "x"))
        os.mkdir(v.path("b"))
        write_file(v.path("a", "x", "f"), b"f")
        os.mkdir(v.path("full"))
        write_file(v.path("full", "g"), b"g")
        assert_raises_errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, v.path("a"),
                            v.path("full"))
        assert_raises_errno(errno.ENOTEMPTY, os.rmdir, v.path("full"))
        os.rename(v.path("a"), v.path("b"))
        v.remount()
        assert_eq(_names_in(v.mnt), ["b", "full"], "root after rename over b")
        assert_eq(read_file(v.path("b", "x", "f")), b"f", "moved contents")
        assert_eq(read_file(v.path("full", "g")), b"g", "untouched directory")


def test_crash_leftovers_do_not_block_rmdir():
    """What a crash in the middle of a mkdir or a long-name create leaves (a directory still
    under its temporary name, with or without its id; a side file without its entry) is
    never shown, and does not keep its parent from being removed."""
    with Volume(names="encrypted") as v:
        os.makedirs(v.path("p", "q"))
        bp = v.backing_path("p")
        v.umount()
        for tmp, with_id in ((".kekfs.new.0123456789abcdef", True),
                             (".kekfs.new.fedcba9876543210", False)):
            os.mkdir(os.path.join(bp, tmp))
            if with_id:
                write_file(os.path.join(bp, tmp, ".kekfs.dirid"), os.urandom(16), 0o400)
        write_file(os.path.join(bp, ".kekfs.long." + "A" * 43), b"orphaned side file", 0o444)
        v.mount()
        assert_eq(_names_in(v.path("p")), ["q"], "listing with crash leftovers")
        assert_raises_errno(errno.ENOTEMPTY, os.rmdir, v.path("p"))
        os.rmdir(v.path("p", "q"))
        assert_eq(_names_in(v.path("p")), [], "listing with only crash leftovers")
        os.rmdir(v.path("p"))
        assert not os.path.lexists(bp), "backing directory still there"
        assert_eq(_names_in(v.mnt), [], "root after rmdir")


def test_xattr_names_encrypted():
    with Volume(names="encrypted") as v:
        p = v.path("f")
        write_file(p, b"data")
        os.setxattr(p, "user." + MARK, b"value")
        os.setxattr(p, "user.other", b"2")
        assert_eq(sorted(os.listxattr(p)), ["user." + MARK, "user.other"], "listxattr")
        bp = v.backing_path("f")
        bnames = os.listxattr(bp)
        assert_eq(len(bnames), 2, "backing xattr count")
        assert all(MARK not in n and "other" not in n for n in bnames), bnames
        assert_raises_errno(errno.ERANGE, os.setxattr, p, "user." + "n" * 172, b"x")
        os.setxattr(p, "user." + "n" * 171, b"longest")
        # truncating to zero re-keys the file and re-seals values under their plaintext names
        with open(p, "wb"):
            pass
        v.remount()
        assert_eq(os.getxattr(p, "user." + MARK), b"value", "after truncate and remount")
        assert_eq(os.getxattr(p, "user." + "n" * 171), b"longest", "longest name")
        os.removexattr(p, "user.other")
        assert_raises_errno(errno.ENODATA, os.getxattr, p, "user.other")
        assert_raises_errno(errno.ENODATA, os.getxattr, p, "user.absent")


def test_path_encrypt_decrypt():
    with Volume(names="encrypted") as v:
        os.makedirs(v.path("docs", "y" * 200))
        write_file(v.path("docs", "y" * 200, "report.txt"), b"r")
        bp = v.backing_path("docs", "y" * 200, "report.txt")
        assert bp.startswith(v.backing + "/"), bp
        assert "report" not in bp and "docs" not in bp, bp
        v.umount()
        assert os.path.isfile(bp), "backing path does not exist: %s" % bp
        for arg in (bp, os.path.relpath(bp, v.backing)):
            r = run_kekfs("path", "decrypt", *(v.key_args() + ["--", v.backing, arg]))
            assert_eq(r.returncode, 0, "decrypt exit status (%r)" % (r,))
            assert_eq(r.stdout, ("/docs/%s/report.txt\n" % ("y" * 200)).encode(), "decrypt")
        r = run_kekfs("path", "decrypt", *(v.key_args() + [v.backing, "foreign.txt"]))
        assert_eq(r.returncode, 1, "decrypt of a foreign name")
        assert b"does not decrypt" in r.stderr, r


def test_plaintext_names_option():
    with Volume(names="plaintext") as v:
        write_file(v.path("visible"), b"v")
        assert os.path.isfile(v.bpath("visible")), "plaintext-names volume stores names as given"
        assert_eq(v.backing_path("visible"), v.bpath("visible"), "path encrypt on plaintext")
    with Volume() as v:  # the harness default; kekfs's own default is checked here
        pass
    with Volume(names="encrypted") as v:
        write_file(v.path("hidden"), b"h")
        assert not os.path.exists(v.bpath("hidden")), "default volume stored a plaintext name"
