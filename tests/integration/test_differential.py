#!/usr/bin/env python3
"""Seeded randomized differential tester: the same random operations are
applied to a kekfs mount and to a plain directory side by side; results
(return values, errno, sizes, contents) must match after every step, and
the whole tree must match after a remount.

In the test suite (tests/run_tests.py) it runs a bounded number of ops
(KEKFS_DIFF_OPS per seed, default 1000).  Standalone:

    python3 tests/integration/test_differential.py --ops N --seed S [--kekfs PATH]
        [--cipher aes-256-gcm] [--chunk-size N]

prints the op count and seed, and exits non-zero on a mismatch, printing the
tail of the op sequence that led to it.
"""

import errno
import os
import random
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kekfs_harness import (Volume, compare_trees, make_tempdir, rmtree, fallocate,  # noqa: E402
                           FALLOC_FL_KEEP_SIZE, renameat2, RENAME_NOREPLACE, RENAME_EXCHANGE)

FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x02, 0x10

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

MiB = 1024 * 1024


class DiffMismatch(AssertionError):
    pass


class DiffTester(object):
    """Applies random ops to roots[0] (kekfs) and roots[1] (plain dir)."""

    MAX_HANDLES = 4
    TAIL = 40

    def __init__(self, kroot, proot, seed, chunk=4096, remount=None, full_every=100,
                 big_offset=8 * MiB):
        self.rng = random.Random(seed)
        self.seed = seed
        self.roots = (kroot, proot)
        self.C = chunk
        self.remount_cb = remount
        self.full_every = full_every
        self.big_offset = big_offset
        self.files = []
        self.dirs = [""]
        self.handles = []      # [kfd, pfd, label]
        self.log = []
        self.nops = 0
        self.counts = {}  # op name: times chosen
        self.counter = 0
        for r in self.roots:
            os.makedirs(r, exist_ok=True)

    # ------------------------------------------------------------ plumbing

    def p(self, side, rel):
        return os.path.join(self.roots[side], rel) if rel else self.roots[side]

    def note(self, s):
        self.log.append("#%d %s" % (self.nops, s))
        if len(self.log) > 4 * self.TAIL:
            del self.log[:len(self.log) - self.TAIL]

    def fail(self, msg):
        tail = "\n    ".join(self.log[-self.TAIL:])
        raise DiffMismatch("differential mismatch (seed=%d, op #%d): %s\n  last ops:\n    %s"
                           % (self.seed, self.nops, msg, tail))

    def both(self, what, fn):
        """Run fn(side) on both sides; outcome (value or errno) must match."""
        res = []
        for side in (0, 1):
            try:
                res.append(("ok", fn(side)))
            except OSError as e:
                res.append(("errno", errno.errorcode.get(e.errno, e.errno)))
        if res[0] != res[1]:
            a, b = repr(res[0]), repr(res[1])
            self.fail("%s: kekfs gave %s, plain dir gave %s" % (what, a[:300], b[:300]))
        return res[1]

    def refresh(self):
        """Re-list files/dirs from the plain side (the reference)."""
        files, dirs = [], [""]
        root = self.roots[1]
        for dp, dn, fn in os.walk(root):
            rel = os.path.relpath(dp, root)
            rel = "" if rel == "." else rel
            for d in dn:
                path = os.path.join(rel, d) if rel else d
                if stat.S_ISDIR(os.lstat(os.path.join(root, path)).st_mode):
                    dirs.append(path)
            for f in fn:
                path = os.path.join(rel, f) if rel else f
                if stat.S_ISREG(os.lstat(os.path.join(root, path)).st_mode):
                    files.append(path)
        self.files = sorted(files)
        self.dirs = sorted(dirs)

    # ------------------------------------------------------------ generators

    def new_name(self):
        self.counter += 1
        d = self.rng.choice(self.dirs)
        n = self.rng.choice(["f", "file", "x", "data"]) + str(self.counter)
        return os.path.join(d, n) if d else n

    def pick_file(self, new_ok=0.15):
        if not self.files or self.rng.random() < new_ok:
            return self.new_name()
        return self.rng.choice(self.files)

    def offset(self, size):
        r = self.rng.random()
        C = self.C
        if r < 0.3:
            return self.rng.randint(0, max(0, size))
        if r < 0.6:
            k = self.rng.randint(0, size // C + 2)
            return max(0, k * C + self.rng.randint(-3, 3))
        if r < 0.93:
            return self.rng.randint(0, size + 3 * C)
        return self.rng.randint(0, self.big_offset)

    def length(self):
        C = self.C
        return self.rng.choice([1, 2, 3, self.rng.randint(1, 100), self.rng.randint(1, C),
                                C, C - 1, C + 1, self.rng.randint(C, 3 * C + 17),
                                self.rng.randint(1, 2 * C)])

    def data(self, n):
        if self.rng.random() < 0.1:
            return b"\0" * n
        return self.rng.randbytes(n)

    def size_of(self, rel):
        try:
            return os.lstat(self.p(1, rel)).st_size
        except OSError:
            return 0

    # ------------------------------------------------------------ checks

    def check_file(self, rel, around=None):
        """Compare size and contents (windows, or whole when small)."""
        st = self.both("stat(%r)" % rel,
                       lambda s: (lambda x: (stat.S_IFMT(x.st_mode), x.st_size, x.st_nlink))(
                           os.lstat(self.p(s, rel))))
        if st[0] != "ok" or not stat.S_ISREG(st[1][0]):
            return
        size = st[1][1]
        self.compare_ranges("file %r" % rel, lambda s: os.open(self.p(s, rel), os.O_RDONLY),
                            size, around, close=True)

    def compare_ranges(self, label, opener, size, around, close):
        C = self.C
        if size <= 256 * 1024:
            ranges = [(0, size + 10)]
        else:
            ranges = [(max(0, size - 2 * C - 5), 2 * C + 20), (0, C + 1)]
            if around is not None:
                ranges.append((max(0, around[0] - C), around[1] + 2 * C))
            o = self.rng.randint(0, size)
            ranges.append((o, self.rng.randint(1, 3 * C)))
        fds = [opener(0), opener(1)]
        try:
            for off, n in ranges:
                a = os.pread(fds[0], n, off) if True else None
                b = os.pread(fds[1], n, off)
                if a != b:
                    i = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                             min(len(a), len(b)))
                    self.fail("%s: pread(off=%d, len=%d) differs at +%d (abs %d): "
                              "kekfs %d bytes %r..., plain %d bytes %r..."
                              % (label, off, n, i, off + i, len(a), a[i:i + 8], len(b), b[i:i + 8]))
        except OSError as e:
            self.fail("%s: read error %s" % (label, e))
        finally:
            if close:
                for fd in fds:
                    os.close(fd)

    def check_handle(self, h, around=None):
        sz = [os.fstat(h[0]).st_size, os.fstat(h[1]).st_size]
        if sz[0] != sz[1]:
            self.fail("handle %s: fstat size kekfs %d != plain %d" % (h[2], sz[0], sz[1]))
        self.compare_ranges("handle %s" % h[2], lambda s: h[s], sz[1], around, close=False)

    def full_check(self, what="full check"):
        self.refresh()
        try:
            compare_trees(self.roots[1], self.roots[0], check_mtime=False, check_xattrs=False)
        except AssertionError as e:
            self.fail("%s: %s" % (what, e))
        for h in self.handles:
            self.check_handle(h)

    # ------------------------------------------------------------ ops

    def op_pwrite(self):
        rel = self.pick_file()
        off = self.offset(self.size_of(rel))
        d = self.data(self.length())
        self.note("pwrite(%r, off=%d, len=%d)" % (rel, off, len(d)))

        def f(s):
            fd = os.open(self.p(s, rel), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                return os.pwrite(fd, d, off)
            finally:
                os.close(fd)
        self.both("pwrite", f)
        self.refresh()
        self.check_file(rel, (off, len(d)))

    def op_handle_write(self):
        if not self.handles:
            return self.op_open()
        h = self.rng.choice(self.handles)
        size = os.fstat(h[1]).st_size
        off = self.offset(size)
        d = self.data(self.length())
        self.note("handle_pwrite(%s, off=%d, len=%d)" % (h[2], off, len(d)))
        self.both("handle pwrite", lambda s: os.pwrite(h[s], d, off))
        self.check_handle(h, (off, len(d)))

    def op_append(self):
        rel = self.pick_file()
        d = self.data(self.length())
        self.note("append(%r, len=%d)" % (rel, len(d)))

        def f(s):
            fd = os.open(self.p(s, rel), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                return os.write(fd, d)
            finally:
                os.close(fd)
        self.both("append", f)
        self.refresh()
        self.check_file(rel, (self.size_of(rel) - len(d), len(d)))

    def op_truncate(self):
        rel = self.pick_file(new_ok=0.05)
        size = self.size_of(rel)
        C = self.C
        n = self.rng.choice([0, max(0, size - self.rng.randint(1, 2 * C)), size + self.rng.randint(1, 3 * C),
                             (size // C) * C, (size // C + 1) * C + self.rng.randint(-1, 1),
                             self.rng.randint(0, 3 * C), self.rng.randint(0, self.big_offset // 2)])
        n = max(0, n)
        self.note("truncate(%r, %d) [was %d]" % (rel, n, size))
        self.both("truncate", lambda s: os.truncate(self.p(s, rel), n))
        self.check_file(rel, (max(0, n - C), 2 * C))

    def op_handle_truncate(self):
        if not self.handles:
            return self.op_open()
        h = self.rng.choice(self.handles)
        size = os.fstat(h[1]).st_size
        n = max(0, self.rng.choice([0, size // 2, size + self.rng.randint(1, 2 * self.C),
                                    size - self.rng.randint(1, self.C)]))
        self.note("ftruncate(%s, %d) [was %d]" % (h[2], n, size))
        self.both("ftruncate", lambda s: os.ftruncate(h[s], n))
        self.check_handle(h, (max(0, n - self.C), 2 * self.C))

    def op_rename(self):
        if self.rng.random() < 0.2 and len(self.dirs) > 1:
            src = self.rng.choice(self.dirs[1:])
        elif self.files:
            src = self.rng.choice(self.files)
        else:
            return self.op_pwrite()
        r = self.rng.random()
        if r < 0.4 and self.files:
            dst = self.rng.choice(self.files)
        elif r < 0.5 and len(self.dirs) > 1:
            dst = self.rng.choice(self.dirs[1:])
        else:
            dst = self.new_name()
        self.note("rename(%r, %r)" % (src, dst))
        self.both("rename(%r,%r)" % (src, dst),
                  lambda s: os.rename(self.p(s, src), self.p(s, dst)))
        self.refresh()
        if dst in self.files:
            self.check_file(dst)

    def op_rename2(self):
        """renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE."""
        cands = self.files + self.dirs[1:]
        if len(cands) < 2:
            return self.op_pwrite()
        src = self.rng.choice(cands)
        dst = self.rng.choice(cands) if self.rng.random() < 0.8 else self.new_name()
        flags = self.rng.choice([RENAME_NOREPLACE, RENAME_EXCHANGE])
        fname = "NOREPLACE" if flags == RENAME_NOREPLACE else "EXCHANGE"
        self.note("renameat2(%r, %r, %s)" % (src, dst, fname))
        self.both("renameat2(%r,%r,%s)" % (src, dst, fname),
                  lambda s: renameat2(self.p(s, src), self.p(s, dst), flags))
        self.refresh()
        for rel in (src, dst):
            if rel in self.files:
                self.check_file(rel)

    def op_symlink(self):
        target = self.rng.choice(self.files + ["dangling/target", "../up", "x" * 200] or ["t"])
        rel = self.new_name()
        self.note("symlink(%r -> %r)" % (rel, target))
        self.both("symlink", lambda s: os.symlink(target, self.p(s, rel)))
        self.both("readlink", lambda s: os.readlink(self.p(s, rel)))
        self.refresh()

    def op_link(self):
        if not self.files:
            return self.op_pwrite()
        src = self.rng.choice(self.files)
        dst = self.rng.choice(self.files) if self.rng.random() < 0.1 else self.new_name()
        self.note("link(%r, %r)" % (src, dst))
        self.both("link", lambda s: os.link(self.p(s, src), self.p(s, dst)))
        self.refresh()
        self.check_file(dst)
        self.check_file(src)

    def op_unlink(self):
        if not self.files:
            return self.op_pwrite()
        rel = self.rng.choice(self.files)
        self.note("unlink(%r)" % rel)
        self.both("unlink", lambda s: os.unlink(self.p(s, rel)))
        self.refresh()
        self.both("lstat after unlink", lambda s: os.lstat(self.p(s, rel)).st_size)

    def op_mkdir(self):
        d = self.rng.choice(self.dirs)
        self.counter += 1
        rel = os.path.join(d, "d%d" % self.counter) if d else "d%d" % self.counter
        if self.rng.random() < 0.05 and len(self.dirs) > 1:
            rel = self.rng.choice(self.dirs[1:])  # EEXIST
        self.note("mkdir(%r)" % rel)
        self.both("mkdir", lambda s: os.mkdir(self.p(s, rel)))
        self.refresh()

    def op_rmdir(self):
        if len(self.dirs) < 2:
            return self.op_mkdir()
        rel = self.rng.choice(self.dirs[1:])
        self.note("rmdir(%r)" % rel)
        self.both("rmdir", lambda s: os.rmdir(self.p(s, rel)))
        self.refresh()

    def op_open(self):
        if len(self.handles) >= self.MAX_HANDLES or not self.files:
            return self.op_close()
        rel = self.rng.choice(self.files)
        flags = os.O_RDWR | (os.O_TRUNC if self.rng.random() < 0.1 else 0)
        self.note("open(%r, %s)" % (rel, "O_RDWR|O_TRUNC" if flags & os.O_TRUNC else "O_RDWR"))
        fds = []
        for s in (0, 1):
            try:
                fds.append(os.open(self.p(s, rel), flags))
            except OSError as e:
                fds.append(e)
        if any(isinstance(x, OSError) for x in fds):
            for x in fds:
                if not isinstance(x, OSError):
                    os.close(x)
            ea = [getattr(x, "errno", None) for x in fds]
            if ea[0] != ea[1]:
                self.fail("open(%r): kekfs %r, plain %r" % (rel, fds[0], fds[1]))
            return
        self.counter += 1
        h = [fds[0], fds[1], "h%d:%s" % (self.counter, rel)]
        self.handles.append(h)
        self.check_handle(h)

    def op_close(self):
        if not self.handles:
            return self.op_open() if self.files else None
        h = self.handles.pop(self.rng.randrange(len(self.handles)))
        self.note("close(%s)" % h[2])
        self.check_handle(h)
        os.close(h[0])
        os.close(h[1])

    def op_read(self):
        if self.handles and self.rng.random() < 0.3:
            h = self.rng.choice(self.handles)
            size = os.fstat(h[1]).st_size
            off = self.offset(size)
            n = self.length() * self.rng.choice([1, 1, 4])
            self.note("handle_pread(%s, off=%d, len=%d)" % (h[2], off, n))
            self.both("handle pread", lambda s: os.pread(h[s], n, off))
            return
        if not self.files:
            return
        rel = self.rng.choice(self.files)
        off = self.offset(self.size_of(rel))
        n = self.length() * self.rng.choice([1, 1, 4])
        self.note("pread(%r, off=%d, len=%d)" % (rel, off, n))

        def f(s):
            fd = os.open(self.p(s, rel), os.O_RDONLY)
            try:
                return os.pread(fd, n, off)
            finally:
                os.close(fd)
        self.both("pread", f)

    def op_fsync(self):
        if not self.handles:
            return self.op_open()
        h = self.rng.choice(self.handles)
        self.note("fsync(%s)" % h[2])
        self.both("fsync", lambda s: os.fsync(h[s]))

    def op_fallocate(self):
        if not self.handles:
            return self.op_open()
        h = self.rng.choice(self.handles)
        size = os.fstat(h[1]).st_size
        off = self.offset(size)
        n = self.length() * self.rng.choice([1, 3])
        mode = self.rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE])
        self.note("fallocate(%s, mode=%d, off=%d, len=%d) [size %d]" % (h[2], mode, off, n, size))
        self.both("fallocate", lambda s: fallocate(h[s], mode, off, n))
        self.both("size after fallocate", lambda s: os.fstat(h[s]).st_size)
        self.check_handle(h, (off, n))

    def op_copy_range(self):
        """copy_file_range between two open handles (or within one), compared byte for byte."""
        if len(self.handles) < 1:
            return self.op_open()
        src, dst = self.rng.choice(self.handles), self.rng.choice(self.handles)
        size = os.fstat(src[1]).st_size
        off_in = self.offset(size)
        off_out = self.offset(os.fstat(dst[1]).st_size)
        n = self.length() * self.rng.choice([1, 4])
        if src is dst and abs(off_in - off_out) < n:
            off_out = off_in + n  # overlapping ranges in one file are EINVAL
        self.note("copy_file_range(%s@%d -> %s@%d, len=%d)" % (src[2], off_in, dst[2],
                                                                off_out, n))
        self.both("copy_file_range",
                  lambda s: os.copy_file_range(src[s], dst[s], n, off_in, off_out))
        self.check_handle(dst, (off_out, n))

    def op_seek(self):
        """SEEK_DATA / SEEK_HOLE: ENXIO at and past the end on both sides; below it, the
        block granularity of holes differs (ext4 4 KiB, kekfs a whole stored chunk), so kekfs's
        answer is checked, not compared: never before the offset, never past the end, and what
        it skips as hole reads as zeros on the plain side too."""
        if not self.handles:
            return self.op_open()
        h = self.rng.choice(self.handles)
        size = os.fstat(h[1]).st_size
        off = self.rng.choice([self.offset(size), size, size + self.C])
        whence = self.rng.choice([os.SEEK_DATA, os.SEEK_HOLE])
        self.note("lseek(%s, %d, %s) [size %d]" % (
            h[2], off, "SEEK_DATA" if whence == os.SEEK_DATA else "SEEK_HOLE", size))
        if off >= size:
            self.both("lseek past the end", lambda s: os.lseek(h[s], off, whence))
            return
        got = os.lseek(h[0], off, whence)
        if not off <= got <= size or (whence == os.SEEK_DATA and got == size):
            self.fail("lseek(%d, %d) gave %d on a file of %d bytes" % (off, whence, got, size))
        skipped = (off, got) if whence == os.SEEK_DATA else (
            got, os.lseek(h[0], got, os.SEEK_DATA) if got < size else size)
        zeros = os.pread(h[1], skipped[1] - skipped[0], skipped[0])
        if zeros.count(0) != len(zeros):
            self.fail("lseek skipped [%d, %d) as a hole; the plain file has data there"
                      % skipped)

    def op_chmod(self):
        if not self.files:
            return
        rel = self.rng.choice(self.files)
        mode = self.rng.choice([0o600, 0o644, 0o755, 0o400, 0o751, 0o666])
        self.note("chmod(%r, %o)" % (rel, mode))
        self.both("chmod", lambda s: os.chmod(self.p(s, rel), mode))
        self.both("mode after chmod", lambda s: stat.S_IMODE(os.stat(self.p(s, rel)).st_mode))

    def op_utime(self):
        if not self.files:
            return
        rel = self.rng.choice(self.files)
        t = self.rng.randint(0, 4 * 10**18)
        self.note("utime(%r, ns=%d)" % (rel, t))
        self.both("utime", lambda s: os.utime(self.p(s, rel), ns=(t, t)))
        self.both("mtime after utime", lambda s: os.stat(self.p(s, rel)).st_mtime_ns)

    def remount(self):
        for h in self.handles:
            self.check_handle(h)
            os.close(h[0])
            os.close(h[1])
        self.handles = []
        self.note("remount")
        if self.remount_cb:
            self.remount_cb()
        self.full_check("after remount")

    OPS = [("op_pwrite", 22), ("op_handle_write", 12), ("op_append", 7), ("op_truncate", 8),
           ("op_handle_truncate", 4), ("op_rename", 7), ("op_link", 4), ("op_unlink", 4),
           ("op_mkdir", 3), ("op_rmdir", 2), ("op_open", 5), ("op_close", 4), ("op_read", 12),
           ("op_fsync", 2), ("op_chmod", 2), ("op_utime", 2), ("op_fallocate", 4),
           ("op_rename2", 3), ("op_symlink", 1), ("op_seek", 3), ("op_copy_range", 3)]

    def run(self, nops, remount_midway=True):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        self.refresh()
        for i in range(nops):
            self.nops = i + 1
            op = self.rng.choices(names, weights)[0]
            self.counts[op] = self.counts.get(op, 0) + 1
            try:
                getattr(self, op)()
            except DiffMismatch:
                raise
            except OSError as e:
                self.fail("unexpected OSError in %s: %s" % (op, e))
            if self.full_every and self.nops % self.full_every == 0:
                self.full_check()
            if remount_midway and self.nops == nops // 2:
                self.remount()
        self.remount()
        return self.nops


def run_differential(seed, nops, cipher=None, chunk_size=None, verbose=False, names=None):
    plain_base = make_tempdir("plain")
    try:
        with Volume(cipher=cipher, chunk_size=chunk_size, names=names) as v:
            t = DiffTester(os.path.join(v.mnt, "w"), os.path.join(plain_base, "w"), seed,
                           chunk=chunk_size or 4096, remount=v.remount)
            t0 = time.monotonic()
            n = t.run(nops)
            if verbose:
                print("differential: %d ops, seed %d: OK (%.1fs)" % (n, seed, time.monotonic() - t0))
                print("  ops: " + ", ".join("%s %d" % (k[3:], c) for k, c in sorted(t.counts.items())))
            return n
    finally:
        rmtree(plain_base)


def _ops():
    return int(os.environ.get("KEKFS_DIFF_OPS", "1000"))


def test_differential_seed_1():
    run_differential(1, _ops())


def test_differential_seed_2():
    run_differential(20240601, _ops())


def test_differential_aes_gcm_chunk_16k():
    run_differential(3, max(1, _ops() // 2), cipher="aes-256-gcm", chunk_size=16384)


test_differential_seed_1.timeout = 300
test_differential_seed_2.timeout = 300
test_differential_aes_gcm_chunk_16k.timeout = 300


def _size(s):
    mult = {"k": 1024, "m": 1024 * 1024}.get(s[-1:].lower(), 1)
    return int(s[:-1] if mult > 1 else s) * mult


def main():
    import argparse
    import kekfs_harness
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--kekfs", default=None, help="kekfs binary (default build/kekfs)")
    ap.add_argument("--cipher", default=None)
    ap.add_argument("--chunk-size", type=_size, default=None, help="e.g. 4096, 16K, 1M")
    ap.add_argument("--names", choices=("plaintext", "encrypted"), default=None,
                    help="name mode (default: KEKFS_TEST_NAMES, else plaintext)")
    a = ap.parse_args()
    if a.kekfs:
        os.environ["KEKFS_BIN"] = os.path.abspath(a.kekfs)
    seed = a.seed if a.seed is not None else random.SystemRandom().randint(0, 2**31)
    print("differential: ops=%d seed=%d" % (a.ops, seed), flush=True)
    rc = 0
    try:
        run_differential(seed, a.ops, a.cipher, a.chunk_size, verbose=True, names=a.names)
    except kekfs_harness.Skip as e:
        print("skipped: %s" % e)
    except AssertionError as e:
        print("FAILED: %s" % e)
        print("reproduce: python3 %s --ops %d --seed %d%s%s" % (
            sys.argv[0], a.ops, seed, " --kekfs " + a.kekfs if a.kekfs else "",
            " --names " + a.names if a.names else ""))
        rc = 1
    finally:
        if not os.environ.get("KEKFS_TEST_TMPDIR"):
            rmtree(kekfs_harness.tmp_root())
    return rc


if __name__ == "__main__":
    sys.exit(main())
