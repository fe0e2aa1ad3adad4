"""Crypto-shredding: kekfs shred on open, hard-linked and many files, the EKEYREVOKED error,
the seal against old copies (kekfs shred --seal / --verify), the audit log, refusals."""

import errno
import json
import os
import shutil

from kekfs_harness import (kekfs_fails, Volume, write_file, read_file, pattern, assert_eq,
                           assert_bytes_eq,
                           run_kekfs)
from test_rotation import kekfs_ok

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

FLAGS_OFF = 7


def read_errno(fd):
    try:
        os.pread(fd, 4096, 0)
    except OSError as e:
        return e.errno
    return 0


def shred_records(v):
    with open(v.bpath(".kekfs", "audit.log")) as f:
        return [json.loads(l) for l in f if '"op":"shred"' in l]


def all_bytes_under(*roots):
    for root in roots:
        if os.path.isfile(root):
            yield root, read_file(root)
            continue
        for dp, _, fns in os.walk(root):
            for n in fns:
                p = os.path.join(dp, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    yield p, read_file(p)


def test_shred_open_file():
    """A reader holding the file open gets EKEYREVOKED next; the daemon and neighbours live on."""
    with Volume() as v:
        data = pattern(50000, 1)
        write_file(v.path("victim"), data)
        write_file(v.path("neighbour"), pattern(9000, 2))
        bp = v.backing_path("victim")
        fd = os.open(v.path("victim"), os.O_RDONLY)
        try:
            assert_bytes_eq(os.pread(fd, 50000, 0), data)
            out = kekfs_ok("shred", v.path("victim"))
            assert "shredded 1 file" in out, out
            assert_eq(read_errno(fd), errno.EKEYREVOKED, "read of a shredded open file")
        finally:
            os.close(fd)
        assert not os.path.exists(v.path("victim")), "the name is still there"
        assert not os.path.exists(bp), "the backing file is still there"
        assert_bytes_eq(read_file(v.path("neighbour")), pattern(9000, 2))
        assert v.daemon_alive()
        kekfs_ok("audit", "verify", v.mnt)
        recs = shred_records(v)
        assert_eq(len(recs), 1, "shred records")
        assert "victim" not in json.dumps(recs)


def test_shredded_copy_put_back_reads_ekeyrevoked():
    """A backing file whose slots were wiped reads as EKEYREVOKED, with a log line saying so."""
    with Volume(names="plaintext", foreground=True) as v:
        write_file(v.path("f"), b"secret" * 100)
        write_file(v.path("g"), b"other")
        shutil.copy(v.bpath("f"), v.base + "/copy")
        kekfs_ok("shred", v.path("f"))
        shutil.copy(v.base + "/copy", v.bpath("restored"))
        with open(v.bpath("restored"), "r+b") as f:  # wipe as a shred does: flag + random slots
            f.seek(FLAGS_OFF)
            f.write(b"\x01")
            f.seek(24)
            f.write(os.urandom(192))
        try:
            read_file(v.path("restored"))
            raise AssertionError("a shredded header opened")
        except OSError as e:
            assert_eq(e.errno, errno.EKEYREVOKED, "open of a shredded header")
        log = open(v.fg_stderr_path, "rb").read().decode(errors="replace")
        assert "restored: crypto-shredded" in log and "EKEYREVOKED" in log, log[-2000:]
        # generic damage stays a generic error
        with open(v.bpath("g"), "r+b") as f:
            f.seek(24)
            f.write(os.urandom(192))
        try:
            read_file(v.path("g"))
            raise AssertionError("a damaged header opened")
        except OSError as e:
            assert_eq(e.errno, errno.EIO, "open of a damaged header")


def test_shred_hard_links():
    """Every name of a hard-linked file goes; the report gives the link count."""
    with Volume() as v:
        os.makedirs(v.path("a", "b"))
        write_file(v.path("a", "one"), pattern(5000, 3))
        os.link(v.path("a", "one"), v.path("a", "b", "two"))
        os.link(v.path("a", "one"), v.path("three"))
        out = kekfs_ok("shred", v.path("a", "b", "two"))
        assert "3 links, 3 names removed, 0 left" in out, out
        for p in (v.path("a", "one"), v.path("a", "b", "two"), v.path("three")):
            assert not os.path.exists(p), p
        assert_eq(v.backing_objects(), [], "backing files left")
        assert_eq(len(shred_records(v)), 1, "one record per shredded file")


def test_shred_tree_of_1000_files():
    with Volume() as v:
        for i in range(1000):
            p = v.path("tree", "d%02d" % (i % 10), "f%04d" % i)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            write_file(p, b"tree-file-%d" % i)
        write_file(v.path("keep"), b"keep me")
        os.link(v.path("tree", "d00", "f0000"), v.path("tree", "d05", "link-to-f0000"))
        err = kekfs_fails("shred", v.path("tree"))
        assert "is a directory" in err and "-r" in err, err
        out = kekfs_ok("shred", "-r", v.path("tree"))
        assert "shredded 1000 files and removed 11 directories" in out, out
        assert not os.path.exists(v.path("tree"))
        assert_eq(os.listdir(v.mnt), ["keep"], "what is left")
        assert_eq(read_file(v.path("keep")), b"keep me")
        assert_eq(len(shred_records(v)), 1000, "one audit record per file")
        kekfs_ok("audit", "verify", v.mnt)


def test_seal_old_copy():
    """A copy from before the shred opens until the seal, and never after it."""
    marker = b"SHRED-MARKER-7f3a9c"
    with Volume() as v:
        write_file(v.path("secret"), marker * 300)
        neighbours = {}
        for i in range(30):
            neighbours[v.path("n%02d" % i)] = pattern(3000 + i * 500, 100 + i)
            write_file(v.path("n%02d" % i), neighbours[v.path("n%02d" % i)])
        copy = os.path.join(v.base, "backup-copy")
        shutil.copy(v.backing_path("secret"), copy)
        kekfs_ok("shred", v.path("secret"))
        r = run_kekfs("shred", "--verify", copy, v.mnt)
        assert_eq(r.returncode, 2, "verify before the seal: %r" % r.stdout)
        assert b"CAN be opened" in r.stdout, r.stdout
        out = kekfs_ok("shred", "--seal", v.mnt)
        assert "seal: finished" in out and "destroyed KEK v1" in out, out
        assert "Guarantee" in out and "copies of the keyring made BEFORE" in out, out
        r = run_kekfs("shred", "--verify", copy, v.mnt)
        assert_eq(r.returncode, 0, "verify after the seal: %r" % r.stdout)
        assert b"KEK v1, destroyed" in r.stdout, r.stdout
        for p, d in neighbours.items():
            assert_bytes_eq(read_file(p), d, p)
        v.umount()
        # offline too, and the copy of the keyring made after the seal is no better
        r = run_kekfs("shred", "--verify", copy, *(v.key_args() + [v.backing]))
        assert_eq(r.returncode, 0, "offline verify: %r %r" % (r.stdout, r.stderr))
        os.unlink(copy)
        for p, data in all_bytes_under(v.backing):
            assert marker not in data, "marker in %s" % p
        v.mount()
        for p, d in neighbours.items():
            assert_bytes_eq(read_file(p), d, p)
        kekfs_ok("audit", "verify", v.mnt)


def test_seal_resumes_at_mount():
    """A seal whose marker is left (daemon killed) finishes at the next mount."""
    from test_hostile_journal import kill_during_seal
    with Volume(names="plaintext") as v:
        write_file(v.path("a"), b"a" * 5000)
        v.umount()
        kekfs_ok("rotate", *(v.key_args() + [v.backing]))  # v2 active, v1 decrypt-only
        v.mount()
        kill_during_seal(v)  # an empty marker is an attacker's (test_hostile_journal)
        v.mount()
        from kekfs_harness import wait_for
        assert wait_for(lambda: not os.path.exists(v.bpath(".kekfs", "seal-pending")), 60,
                        interval=0.05), "seal did not finish at mount"
        out = kekfs_ok("keys", "list", v.mnt)
        assert "KEK v1: destroyed" in out, out
        assert_eq(read_file(v.path("a")), b"a" * 5000)


def test_shred_offline_and_refusals():
    with Volume() as v:
        write_file(v.path("x"), b"x" * 100)
        write_file(v.path("y"), b"y" * 100)
        err = kekfs_fails("shred", v.backing, "x")
        assert "is mounted on" in err, err
        outside = os.path.join(v.base, "outside")
        write_file(outside, b"o")
        err = kekfs_fails("shred", outside)
        assert "not inside a mounted kekfs volume" in err, err
        err = kekfs_fails("shred", v.mnt)
        assert "root of the volume" in err, err
        err = kekfs_fails("shred", v.path("nope"))
        assert "No such file" in err, err
        v.umount()
        out = kekfs_ok("shred", *(v.key_args() + [v.backing, "x"]))
        assert "shredded 1 file" in out, out
        v.mount(opts="ro")
        err = kekfs_fails("shred", v.path("y"))
        assert "read-only" in err, err
        v.umount()
        v.mount()
        assert not os.path.exists(v.path("x"))
        assert_eq(read_file(v.path("y")), b"y" * 100)
        kekfs_ok("audit", "verify", v.mnt)
