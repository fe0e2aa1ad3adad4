"""No plaintext and no key material may leak into the backing directory,
the daemon's output, or its /proc entries."""

import base64
import os
import stat

from kekfs_harness import (Volume, write_file, read_file, assert_eq, find_daemon_pids,
                           run_kekfs)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def _marker():
    core = b"KEKFS-PLAINTEXT-MARKER-" + os.urandom(8).hex().encode() + b"-END"
    return core


def scan_tree(root, needles):
    """Search every byte of every file (contents, names, symlink targets,
    xattr names and values of any namespace) below root, root included.
    Returns a list of (needle label, where) hits."""
    hits = []
    rootb = os.fsencode(root)

    def check(blob, where):
        for label, n in needles:
            if n and n in blob:
                hits.append((label, where))

    def xattrs(p, where):
        try:
            names = os.listxattr(p, follow_symlinks=False)
        except OSError:
            return
        for xn in names:
            check(os.fsencode(xn), where + " xattr name")
            try:
                check(os.getxattr(p, xn, follow_symlinks=False), where + " xattr " + xn)
            except OSError:
                pass

    xattrs(rootb, "root dir")
    for dp, dns, fns in os.walk(rootb):
        for n in dns + fns:
            p = os.path.join(dp, n)
            where = os.fsdecode(os.path.relpath(p, rootb))
            check(n, where + " (name)")
            st = os.lstat(p)
            xattrs(p, where)
            if stat.S_ISLNK(st.st_mode):
                check(os.readlink(p), where + " (symlink target)")
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    prev = b""
                    off = 0
                    while True:
                        blk = f.read(1 << 20)
                        if not blk:
                            break
                        check(prev[-256:] + blk, "%s (contents near offset %d)" % (where, off))
                        prev = blk
                        off += len(blk)
    return hits


def key_needles(key):
    return [("raw key", key), ("raw key first half", key[:16]), ("raw key second half", key[16:]),
            ("hex key", key.hex().encode()), ("HEX key", key.hex().upper().encode()),
            ("base64 key", base64.b64encode(key)), ("base64 key (no pad)",
                                                     base64.b64encode(key).rstrip(b"="))]


def test_marker_absent_from_backing():
    with Volume() as v:
        m = _marker()
        content = (m + b"\n") * 400  # ~24 KiB, crosses chunks
        write_file(v.path("file-a"), content)
        write_file(v.path("file-b"), m)  # short, single partial chunk
        os.mkdir(v.path("dir"))
        # marker in a file-name-independent xattr value and a symlink target
        os.setxattr(v.path("file-a"), "user.note", m)
        os.setxattr(v.path("dir"), "user.note", m * 3)
        os.symlink(m.decode(), v.path("link"))
        # sparse with marker after a hole, and marker written via mmap-less pwrite
        fd = os.open(v.path("sparse"), os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, m, 5 * 1024 * 1024)
        os.fsync(fd)
        os.close(fd)
        # sanity: readable through the mount
        assert_eq(read_file(v.path("file-a")), content)
        assert_eq(os.readlink(v.path("link")), m.decode())
        hits = scan_tree(v.backing, [("marker", m), ("marker prefix", m[:20]),
                                     ("marker suffix", m[-20:])])
        assert not hits, "plaintext found in backing dir while mounted: %r" % hits[:10]
        v.umount()
        hits = scan_tree(v.backing, [("marker", m), ("marker prefix", m[:20]),
                                     ("marker suffix", m[-20:])])
        assert not hits, "plaintext found in backing dir after unmount: %r" % hits[:10]
        # the scan itself works: the marker is found when it is there
        write_file(os.path.join(v.base, "probe"), b"xx" + m + b"yy")
        assert scan_tree(v.base, [("marker", m)]), "scan_tree self-test failed"
        v.mount()
        assert_eq(os.getxattr(v.path("dir"), "user.note"), m * 3)


def _check_proc(pid, needles, what):
    leaks = []
    for f in ("cmdline", "environ"):
        try:
            with open("/proc/%d/%s" % (pid, f), "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        for label, n in needles:
            if n in data:
                leaks.append("%s found in /proc/%d/%s (%s)" % (label, pid, f, what))
    return leaks


def test_key_not_leaked():
    with Volume(foreground=True) as v:
        m = _marker()
        write_file(v.path("f"), m * 10)
        needles = key_needles(v.key)
        leaks = []
        pids = find_daemon_pids(v.mnt) or v.daemon_pids
        assert pids, "no daemon process found"
        for pid in pids:
            leaks += _check_proc(pid, needles, "foreground daemon")
        # provoke error paths that might log: read a tampered file
        bf = v.backing_path("f")
        v.umount()
        with open(bf, "r+b") as fh:
            fh.seek(300)
            b = fh.read(1)
            fh.seek(300)
            fh.write(bytes([b[0] ^ 0xFF]))
        v.mount()
        try:
            read_file(v.path("f"))
        except OSError:
            pass
        v.umount()
        for path in v._fg_files:
            with open(path, "rb") as fh:
                log = fh.read()
            for label, n in needles:
                if n in log:
                    leaks.append("%s found in daemon stderr/log (-f)" % label)
            if m in log:
                leaks.append("plaintext marker in daemon stderr/log")
        hits = scan_tree(v.backing, needles)
        leaks += ["%s in backing: %s" % h for h in hits]
        assert not leaks, "key material leaked:\n  " + "\n  ".join(leaks)


def test_key_not_leaked_daemonized():
    with Volume() as v:
        needles = key_needles(v.key)
        write_file(v.path("x"), b"y")
        leaks = []
        for pid in v.daemon_pids:
            leaks += _check_proc(pid, needles, "daemonized")
        for r in v.mount_results:
            for label, n in needles:
                if n in r.stdout or n in r.stderr:
                    leaks.append("%s in kekfs mount output" % label)
        # the daemon's log file (--log-file), including an error path
        bx = v.backing_path("x")
        v.umount()
        log = os.path.join(v.base, "daemon.log")
        with open(bx, "r+b") as fh:
            fh.seek(256 + 5)
            b = fh.read(1)
            fh.seek(256 + 5)
            fh.write(bytes([b[0] ^ 0xFF]))
        r = run_kekfs(*v.mount_argv(extra=("--log-file", log)))
        assert r.returncode == 0, "mount with --log-file failed: %r" % r
        v.daemon_pids = find_daemon_pids(v.mnt)
        for pid in v.daemon_pids:
            leaks += _check_proc(pid, needles, "daemonized with --log-file")
        try:
            read_file(v.path("x"))
        except OSError:
            pass
        else:
            raise AssertionError("damaged file read without error")
        v.umount()
        text = read_file(log) if os.path.exists(log) else b""
        assert text, "--log-file is empty after reading a damaged file (nothing to check)"
        for label, n in needles:
            if n in text:
                leaks.append("%s found in --log-file" % label)
        # also: a failing mount with a wrong key must not echo either key
        other = os.path.join(v.base, "wrongkey")
        wrong = os.urandom(32)
        with open(other, "wb") as f:
            f.write(wrong)
        r = run_kekfs("mount", "--key-file", other, v.backing, v.mnt)
        assert r.returncode != 0, "mount with a wrong key succeeded"
        for label, n in needles + key_needles(wrong):
            if n in r.stdout or n in r.stderr:
                leaks.append("%s in failed mount output" % label)
        hits = scan_tree(v.backing, needles + key_needles(wrong))
        leaks += ["%s in backing: %s" % h for h in hits]
        assert not leaks, "key material leaked:\n  " + "\n  ".join(leaks)


def test_passphrase_not_leaked():
    pw = "kekfs-secret-passphrase-" + os.urandom(6).hex()
    with Volume(passphrase=pw) as v:
        write_file(v.path("x"), b"y")
        needles = [("passphrase", pw.encode()), ("passphrase hex", pw.encode().hex().encode())]
        leaks = []
        for pid in v.daemon_pids:
            leaks += _check_proc(pid, needles, "daemon")
        v.umount()
        hits = scan_tree(v.backing, needles)
        leaks += ["%s in backing: %s" % h for h in hits]
        assert not leaks, "passphrase leaked:\n  " + "\n  ".join(leaks)
