"""Backup round trips through a kekfs mount with rsync and tar: the tree
must come back byte for byte and attribute for attribute."""

import os
import stat

from kekfs_harness import (Volume, make_tempdir, rmtree, compare_trees, run, write_file,
                           pattern, assert_eq, require_tools)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

MiB = 1024 * 1024
HOLE = 40 * MiB

ODD_NAMES = [
    "with space", " leading space", "trailing space ", "new\nline", "tab\tname",
    "ünïcødé-日本語-émoji-\U0001F600", "-dash-first", "quote'\"back\\slash", "*?[glob]{x}",
    "L" * 200, ".hidden",
]
NON_UTF8 = [b"bad\xff\xfe-bytes", b"latin1-caf\xe9"]


def make_tree(root):
    """Generate the reference tree; returns it (a plain directory)."""
    R = os.fsencode(root)

    def P(*parts):
        return os.path.join(R, *[os.fsencode(p) for p in parts])

    os.makedirs(P("dir", "sub", "deeper", "deepest"))
    os.mkdir(P("private"), 0o700)
    os.mkdir(P("sticky"))
    os.chmod(P("sticky"), 0o1777)
    os.mkdir(P("setgid"))
    os.chmod(P("setgid"), 0o2755)
    os.mkdir(P("empty dir"))
    os.mkdir(P("odd"))
    # regular files of assorted sizes
    write_file(P("empty"), b"")
    write_file(P("one"), b"1")
    write_file(P("page"), pattern(4096, 1))
    write_file(P("dir", "sub", "big1"), pattern(3 * MiB + 11, 2))
    write_file(P("dir", "big2"), pattern(2 * MiB + 4097, 3))
    write_file(P("dir", "sub", "deeper", "deepest", "leaf"), b"leaf\n" * 1000)
    write_file(P("private", "secret"), pattern(777, 4), 0o600)
    write_file(P("zeros"), b"\0" * (3 * 4096 + 5))  # real zeros, not a hole
    # odd names
    for i, n in enumerate(ODD_NAMES):
        write_file(P("odd", n), pattern(100 + i, 10 + i))
    for i, n in enumerate(NON_UTF8):
        write_file(os.path.join(P("odd"), n), pattern(50 + i, 30 + i))
    os.mkdir(os.path.join(P("odd"), b"dir \xff with\nnewline"))
    write_file(os.path.join(P("odd"), b"dir \xff with\nnewline", b"inner"), b"in")
    # modes
    for n, m in [("m000", 0o000), ("m444", 0o444), ("m755", 0o755), ("m4755", 0o4755),
                 ("m2711", 0o2711), ("m1644", 0o1644), ("m600", 0o600)]:
        write_file(P(n), n.encode())
        os.chmod(P(n), m)
    # owners
    os.chown(P("one"), 1234, 5678)
    os.chown(P("dir", "sub"), 4242, 4343)
    os.chown(P("m755"), 65534, 65534)
    # hard links (two groups, across directories)
    write_file(P("hl_a"), pattern(5000, 5))
    os.link(P("hl_a"), P("dir", "hl_b"))
    os.link(P("hl_a"), P("odd", "hl c with space"))
    write_file(P("dir", "sub", "hl2_x"), b"second group")
    os.link(P("dir", "sub", "hl2_x"), P("hl2_y"))
    # symlinks
    os.symlink("page", P("sl_rel"))
    os.symlink("/etc/hostname-absolute-target", P("sl_abs_dangling"))
    os.symlink("dir/sub", P("sl_dir"))
    os.symlink("../../one", P("dir", "sub", "sl_up"))
    os.symlink("target with spaces and ünïcødé", P("odd", "sl_odd"))
    # sparse file with a big hole
    fd = os.open(P("sparse"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, pattern(4096, 6), 0)
        os.pwrite(fd, pattern(10000, 7), HOLE)
        os.pwrite(fd, b"end", HOLE + 10000 + MiB)
    finally:
        os.close(fd)
    # FIFO
    os.mkfifo(P("fifo"), 0o620)
    os.mkfifo(P("dir", "fifo2"))
    # user.* xattrs
    os.setxattr(P("page"), "user.comment", b"a page")
    os.setxattr(P("page"), "user.binary", bytes(range(256)))
    os.setxattr(P("page"), "user.empty", b"")
    os.setxattr(P("dir"), "user.dirattr", b"on a directory")
    os.setxattr(P("hl_a"), "user.linked", b"shared by hard links")
    os.setxattr(os.path.join(P("odd"), NON_UTF8[0]), "user.odd", b"\xff\x00\xfe")
    os.setxattr(P("dir", "sub", "big1"), "user.big", pattern(2000, 8))
    # mtimes (ns precision, old and post-2038), files first, then dirs bottom-up
    t = 1_000_000_000_123_456_789
    for i, (dp, dns, fns) in enumerate(sorted(os.walk(R), key=lambda x: x[0])):
        for j, f in enumerate(sorted(fns)):
            p = os.path.join(dp, f)
            tt = t + (i * 1000 + j) * 1_000_003_017
            if os.path.islink(p):
                os.utime(p, ns=(tt, tt), follow_symlinks=False)
            else:
                os.utime(p, ns=(tt + 5, tt))
    os.utime(P("one"), ns=(1, 1))                                     # 1970
    os.utime(P("page"), ns=(2_500_000_000_000_000_001, 2_500_000_000_999_999_999))  # 2049
    dirs = sorted((dp for dp, _, _ in os.walk(R)), key=len, reverse=True)
    for k, d in enumerate(dirs):
        os.utime(d, ns=(t + k * 7_000_000_011, t + k * 7_000_000_011))
    return root


def _assert_sparse_src(src):
    st = os.stat(os.path.join(src, "sparse"))
    if st.st_blocks * 512 >= st.st_size // 2:
        raise AssertionError("test setup: source sparse file is not sparse (%d blocks)" % st.st_blocks)


def _rsync(src, dst, extra=()):
    return run(["rsync", "-aHAX", "--sparse", "--numeric-ids"] + list(extra) +
               [src.rstrip("/") + "/", dst.rstrip("/") + "/"], timeout=180)


def test_rsync_roundtrip():
    require_tools("rsync")
    work = make_tempdir("rsync")
    try:
        src = make_tree(os.path.join(work, "src"))
        _assert_sparse_src(src)
        out = os.path.join(work, "out")
        with Volume() as v:
            dst = v.path("r")
            _rsync(src, dst)
            compare_trees(src, dst, check_root=True)
            _rsync(dst, out)
            compare_trees(src, out, check_root=True, check_sparse=True)
            v.remount()
            compare_trees(src, dst, check_root=True)
            # nothing may look changed to rsync after a remount
            r = _rsync(src, dst, ["--itemize-changes"])
            changes = [l for l in r.stdout.decode("utf-8", "replace").splitlines() if l.strip()]
            assert_eq(changes, [], "rsync --itemize-changes after remount (should be no-op)")
            rmtree(out)
            _rsync(dst, out)
            compare_trees(src, out, check_root=True, check_sparse=True)
            # incremental: modify a few things in the source, sync again
            write_file(os.path.join(src, "dir", "sub", "big1"), pattern(3 * 1024 * 1024 + 99, 77))
            os.unlink(os.path.join(src, "one"))
            os.chmod(os.path.join(src, "page"), 0o600)
            _rsync(src, dst, ["--delete"])
            v.remount()
            # (rsync itself leaves the root's mtime changed by its deletion)
            compare_trees(src, dst, check_root=False)
            assert not os.path.lexists(os.path.join(dst, "one")), "--delete did not delete"
    finally:
        rmtree(work)


test_rsync_roundtrip.timeout = 300


def _tar_copy(src, dst):
    os.makedirs(dst, exist_ok=True)
    cmd = ("tar --xattrs --xattrs-include='user.*' --acls --numeric-owner -S -C %s -cf - . | "
           "tar --xattrs --xattrs-include='user.*' --acls --numeric-owner -xpf - -C %s"
           % (_q(src), _q(dst)))
    return run(["bash", "-o", "pipefail", "-c", cmd], timeout=180)


def _q(s):
    return "'" + s.replace("'", "'\\''") + "'"


def test_tar_roundtrip():
    require_tools("tar", "bash")
    work = make_tempdir("tar")
    try:
        src = make_tree(os.path.join(work, "src"))
        out = os.path.join(work, "out")
        with Volume() as v:
            dst = v.path("t")
            _tar_copy(src, dst)
            compare_trees(src, dst, check_root=True)
            _tar_copy(dst, out)
            compare_trees(src, out, check_root=True)
            v.remount()
            compare_trees(src, dst, check_root=True)
            rmtree(out)
            _tar_copy(dst, out)
            compare_trees(src, out, check_root=True)
    finally:
        rmtree(work)


test_tar_roundtrip.timeout = 300


def _unlink_keep_dir_mtime(b, d, n):
    """Break a hard link into an identical copy without touching the dir's
    mtime, so only the link grouping differs."""
    dst = os.stat(os.path.join(b, d))
    p = os.path.join(b, d, n)
    st = os.lstat(p)
    x = {k: os.getxattr(p, k) for k in os.listxattr(p)}
    data = open(p, "rb").read()
    os.unlink(p)
    write_file(p, data, stat.S_IMODE(st.st_mode))
    for k, val in x.items():
        os.setxattr(p, k, val)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(os.path.join(b, d), ns=(dst.st_atime_ns, dst.st_mtime_ns))


def test_tree_compare_detects_differences():
    """Self-test of compare_trees so that the round-trip tests cannot pass
    vacuously."""
    work = make_tempdir("cmp")
    try:
        a = make_tree(os.path.join(work, "a"))
        b = os.path.join(work, "b")
        run(["cp", "-a", a, b])
        compare_trees(a, b, check_root=True)
        mutations = [
            lambda: os.utime(os.path.join(b, "empty"), ns=(5, 6)),
            lambda: os.chmod(os.path.join(b, "m444"), 0o644),
            lambda: os.setxattr(os.path.join(b, "page"), "user.comment", b"changed"),
            lambda: _unlink_keep_dir_mtime(b, "dir", "hl_b"),
            lambda: os.chown(os.path.join(b, "page"), 1, 1),
        ]
        for i, mut in enumerate(mutations):
            rmtree(b)
            run(["cp", "-a", a, b])
            mut()
            try:
                compare_trees(a, b, check_root=True)
            except AssertionError:
                continue
            raise AssertionError("compare_trees missed mutation %d" % i)
        # content change with same size and mtime
        rmtree(b)
        run(["cp", "-a", a, b])
        p = os.path.join(b, "dir", "sub", "big1")
        st = os.stat(p)
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, b"X", 2 * MiB + 3)
        os.close(fd)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        try:
            compare_trees(a, b)
        except AssertionError:
            pass
        else:
            raise AssertionError("compare_trees missed a content change")
    finally:
        rmtree(work)
