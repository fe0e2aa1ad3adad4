"""fallocate's PUNCH_HOLE and ZERO_RANGE, and lseek's SEEK_DATA and SEEK_HOLE (issue 19), on a
real mount next to a plain directory: the same bytes and sizes at every alignment, holes
that free backing space and that SEEK_HOLE finds, cp --sparse, fallocate --dig-holes and
tar -S keeping holes, and kill -9 during punches leaving every chunk old or zero. At c2bb781
PUNCH_HOLE and ZERO_RANGE gave EOPNOTSUPP and SEEK_HOLE found no hole."""

import ctypes
import errno
import os
import random
import subprocess
import threading

from kekfs_harness import (Volume, assert_eq, assert_bytes_eq, make_tempdir, rmtree, pattern,
                           wait_for)
from test_crash import _kill_daemon

C = 4096
KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE = 0x01, 0x02, 0x10
_libc = ctypes.CDLL(None, use_errno=True)


def falloc(fd, mode, off, n):
    if _libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(n)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# (mode, offset, length) on a file of SIZE bytes: inside a chunk, across a boundary, whole
# chunks, the tail chunk, up to and past the end
SIZE = 40 * C + 123
CASES = [(m, off, n) for m in (PUNCH_HOLE | KEEP_SIZE, ZERO_RANGE, ZERO_RANGE | KEEP_SIZE)
         for off, n in ((5, 100), (C - 10, 20), (3 * C, 4 * C), (3 * C + 5, 10 * C),
                        (39 * C + 1, C), (40 * C, 123), (38 * C, 10 * C), (SIZE + 2 * C, C),
                        (0, SIZE))]


def run_case(d, i, mode, off, n):
    """The case on a fresh file in d: (size, bytes, st_blocks)."""
    p = os.path.join(d, "c%d" % i)
    with open(p, "wb") as f:
        f.write(pattern(SIZE, i))
    fd = os.open(p, os.O_RDWR)
    try:
        falloc(fd, mode, off, n)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(p, "rb") as f:
        data = f.read()
    return os.path.getsize(p), data


def test_punch_and_zero_match_a_plain_directory():
    plain = make_tempdir("falloc-plain")
    try:
        want = [run_case(plain, i, *c) for i, c in enumerate(CASES)]
        with Volume() as v:
            for i, c in enumerate(CASES):
                got = run_case(v.mnt, i, *c)
                assert_eq(got[0], want[i][0], "size after %r" % (c,))
                assert_bytes_eq(got[1], want[i][1], "bytes after %r" % (c,))
            v.remount()
            for i, c in enumerate(CASES):
                with open(v.path("c%d" % i), "rb") as f:
                    assert_bytes_eq(f.read(), want[i][1], "bytes after %r and a remount" % (c,))
    finally:
        rmtree(plain)


def test_punch_frees_backing_space_and_seek_hole_finds_it():
    """Punching 200 whole chunks frees their backing blocks; SEEK_HOLE finds the hole, SEEK_DATA
    the data after it, and both stay within what a plain directory reports."""
    with Volume(names="plaintext") as v:
        p = v.path("f")
        with open(p, "wb") as f:
            f.write(pattern(300 * C, 1))
            f.flush()
            os.fsync(f.fileno())
        before = os.stat(v.bpath("f")).st_blocks
        fd = os.open(p, os.O_RDWR)
        try:
            falloc(fd, PUNCH_HOLE | KEEP_SIZE, 50 * C, 200 * C)
        finally:
            os.close(fd)
        after = os.stat(v.bpath("f")).st_blocks
        assert after * 512 < before * 512 - 190 * C, \
            "backing blocks %d before the punch, %d after" % (before, after)
        fd = os.open(p, os.O_RDONLY)
        try:
            hole = os.lseek(fd, 0, os.SEEK_HOLE)
            data = os.lseek(fd, hole, os.SEEK_DATA)
            assert 50 * C <= hole <= 52 * C, "SEEK_HOLE from 0: %d" % hole
            assert 248 * C <= data <= 250 * C, "SEEK_DATA from the hole: %d" % data
            assert_eq(os.pread(fd, data - hole, hole), bytes(data - hole), "the hole's bytes")
            assert_eq(os.lseek(fd, 299 * C, os.SEEK_HOLE), 300 * C, "the end is a hole")
            for w in (os.SEEK_DATA, os.SEEK_HOLE):
                try:
                    os.lseek(fd, 300 * C, w)
                    raise AssertionError("lseek at the end succeeded")
                except OSError as e:
                    assert_eq(e.errno, errno.ENXIO, "lseek at the end")
        finally:
            os.close(fd)


def check_seek_invariants(fd, size, rng, data):
    """SEEK_DATA and SEEK_HOLE from random offsets: never before the offset, never past the end,
    and what is skipped as hole reads as zeros. Returns how many were checked."""
    for _ in range(200):
        off = rng.randrange(size)
        d = os.lseek(fd, off, os.SEEK_DATA)
        h = os.lseek(fd, off, os.SEEK_HOLE)
        assert off <= d < size and off <= h <= size, (off, d, h, size)
        assert_eq(data[off:d], bytes(d - off), "bytes SEEK_DATA skipped from %d" % off)
        nxt = os.lseek(fd, h, os.SEEK_DATA) if h < size else size
        assert_eq(data[h:nxt], bytes(nxt - h), "the hole SEEK_HOLE found at %d" % h)
    return 200


def test_seek_never_skips_data():
    """Random punches, then SEEK_DATA/SEEK_HOLE from random offsets, closed and while a cached
    writer still holds unflushed writes into a hole and past the end (the kernel is made to
    write them back first)."""
    rng = random.Random(19)
    with Volume() as v:
        p = v.path("f")
        with open(p, "wb") as f:
            f.write(pattern(120 * C + 77, 2))
        fd = os.open(p, os.O_RDWR)
        try:
            for _ in range(15):
                falloc(fd, PUNCH_HOLE | KEEP_SIZE, rng.randrange(120 * C), rng.randrange(20 * C))
        finally:
            os.close(fd)
        with open(p, "rb") as f:
            data = f.read()
        fd = os.open(p, os.O_RDONLY)
        try:
            check_seek_invariants(fd, len(data), rng, data)
        finally:
            os.close(fd)
        w = os.open(p, os.O_RDWR)
        r = os.open(p, os.O_RDONLY)
        try:
            falloc(w, PUNCH_HOLE | KEEP_SIZE, 10 * C, 50 * C)
            os.pwrite(w, b"late", 30 * C)  # in the kernel's cache, not yet in the backing file
            os.pwrite(w, b"end", 130 * C)  # and a size the backing file does not have yet
            assert os.lseek(r, 10 * C, os.SEEK_DATA) <= 30 * C, "SEEK_DATA skipped unflushed data"
            assert os.lseek(r, 30 * C, os.SEEK_HOLE) > 30 * C, "unflushed data reported as hole"
            assert os.lseek(r, 125 * C, os.SEEK_DATA) <= 130 * C, "unflushed end not found"
        finally:
            os.close(w)
            os.close(r)


def test_sparse_tools_keep_holes():
    """cp --sparse=always out of and into the mount, fallocate --dig-holes in it, and a tar -S
    round trip keep the bytes and leave the copies sparse."""
    with Volume(names="plaintext") as v:
        out = make_tempdir("falloc-out")
        try:
            p = v.path("sparse")
            with open(p, "wb") as f:
                f.write(pattern(10 * C, 3))
                f.seek(500 * C)
                f.write(pattern(10 * C, 4))
            want = open(p, "rb").read()
            subprocess.run(["cp", "--sparse=always", p, os.path.join(out, "c")], check=True)
            subprocess.run(["cp", "--sparse=always", os.path.join(out, "c"), v.path("back")],
                           check=True)
            subprocess.run(["tar", "-C", v.mnt, "-S", "-cf", os.path.join(out, "t.tar"),
                            "sparse"], check=True)
            os.mkdir(v.path("untar"))
            subprocess.run(["tar", "-C", v.path("untar"), "-S", "-xf",
                            os.path.join(out, "t.tar")], check=True)
            dense = v.path("dense")
            with open(dense, "wb") as f:
                f.write(pattern(10 * C, 5) + bytes(300 * C) + pattern(10 * C, 6))
            dense_want = open(dense, "rb").read()
            subprocess.run(["fallocate", "--dig-holes", dense], check=True)
            for path, b in ((os.path.join(out, "c"), want), (v.path("back"), want),
                            (v.path("untar", "sparse"), want), (dense, dense_want)):
                assert_bytes_eq(open(path, "rb").read(), b, "bytes of " + path)
            for name in ("back", "untar/sparse", "dense"):
                blocks = os.stat(v.bpath(*name.split("/"))).st_blocks * 512
                assert blocks < 100 * C, "%s holds %d backing bytes: not sparse" % (name, blocks)
            assert os.stat(os.path.join(out, "c")).st_blocks * 512 < 100 * C, "cp out not sparse"
        finally:
            rmtree(out)


def test_sigkill_during_punches_leaves_old_or_zero_chunks():
    """A thread punches and zeroes random ranges of files while the daemon is killed: every file
    opens after a remount, keeps its size, and each chunk reads as it was or as zeros."""
    rng = random.Random(7)
    with Volume() as v:
        files = {}
        for i in range(4):
            files[i] = pattern(64 * C + i, 10 + i)
            with open(v.path("f%d" % i), "wb") as f:
                f.write(files[i])
        for rnd in range(3):
            stop, done = threading.Event(), [0]

            def puncher():
                try:
                    while not stop.is_set():
                        i = rng.randrange(4)
                        fd = os.open(v.path("f%d" % i), os.O_RDWR)
                        try:
                            falloc(fd, rng.choice((PUNCH_HOLE | KEEP_SIZE, ZERO_RANGE | KEEP_SIZE)),
                                   rng.randrange(64 * C), rng.randrange(1, 8 * C))
                        finally:
                            os.close(fd)
                        done[0] += 1
                except OSError:
                    pass  # the daemon is gone
            t = threading.Thread(target=puncher)
            t.start()
            assert wait_for(lambda: done[0] >= 5 + rnd * 3, 30), "no punches ran"
            _kill_daemon(v)
            stop.set()
            t.join(30)
            assert not t.is_alive(), "puncher stuck after the kill"
            v.mount()
            for i, old in files.items():
                got = open(v.path("f%d" % i), "rb").read()
                assert_eq(len(got), len(old), "size of f%d after kill -9" % i)
                for k in range(0, len(old), C):
                    chunk = got[k:k + C]
                    assert chunk == old[k:k + C] or chunk.count(0) == len(chunk) or \
                        all(a == b or a == 0 for a, b in zip(chunk, old[k:k + C])), \
                        "f%d chunk %d is neither old nor zero after kill -9" % (i, k // C)
                files[i] = got
