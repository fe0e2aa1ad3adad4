"""Concurrency soak, bounded in time: six threads create, write, append, truncate, rename
(over each other's targets too), hard-link, unlink, set xattrs and make and remove
directories in one tree while a reader walks and reads it. Then the tree is compared, file by
file and link by link, with what the threads did, through the mount and through a read-only
mount of a copy of the backing directory. No deadlock (a
stuck thread fails the test with the daemon's stacks), no file descriptor leaked by the
daemon. KEKFS_SOAK_SECONDS sets the length (default 20, 6 under the sanitizers)."""

import errno
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time

from kekfs_harness import (Volume, Skip, read_file, write_file, assert_eq, wait_for,
                           wait_mounted, find_daemon_pids, kekfs_bin, run, saved_cwd,
                           run_kekfs, force_unmount)
from test_faults import full_volume

SHARED = ["d0", "d1", "d2/sub"]
WORKERS = 6


def _seconds():
    default = "6" if os.environ.get("KEKFS_SANITIZER_LOGS") else "20"
    return float(os.environ.get("KEKFS_SOAK_SECONDS", default))


class Worker(object):
    """One thread's names (tN-...), in shared and own directories, and its model of them:
    path -> inode key, inode key -> [content, xattrs]."""

    def __init__(self, n, root, seed):
        self.n, self.root, self.rng = n, root, random.Random(seed)
        self.paths, self.inodes, self.dirs = {}, {}, []
        self.count = 0
        self.ops = 0

    def new_name(self):
        self.count += 1
        d = self.rng.choice(SHARED + self.dirs)
        return os.path.join(d, "t%d-%d" % (self.n, self.count))

    def p(self, rel):
        return os.path.join(self.root, rel)

    def pick(self):
        return self.rng.choice(sorted(self.paths)) if self.paths else None

    # ---- operations, each on the tree and then on the model
    def create(self):
        rel, data = self.new_name(), self.rng.randbytes(self.rng.choice((0, 100, 5000, 70000)))
        with open(self.p(rel), "wb") as f:
            f.write(data)
        self.paths[rel] = rel
        self.inodes[rel] = [bytearray(data), {}]

    def write(self, rel):
        content = self.inodes[self.paths[rel]][0]
        off = self.rng.randint(0, len(content) + 9000)
        data = self.rng.randbytes(self.rng.randint(1, 20000))
        mode = self.rng.choice(("pwrite", "append"))
        fd = os.open(self.p(rel), os.O_WRONLY | (os.O_APPEND if mode == "append" else 0))
        try:
            os.pwrite(fd, data, off) if mode == "pwrite" else os.write(fd, data)
            if self.rng.random() < 0.2:
                os.fsync(fd)
        finally:
            os.close(fd)
        off = len(content) if mode == "append" else off
        content.extend(bytes(max(0, off - len(content))))
        content[off:off + len(data)] = data

    def truncate(self, rel):
        content = self.inodes[self.paths[rel]][0]
        size = self.rng.choice((0, len(content) // 2, len(content) + 5000))
        os.truncate(self.p(rel), size)
        del content[size:]
        content.extend(bytes(size - len(content)))

    def rename(self, rel):
        dst = self.pick() if self.rng.random() < 0.3 else self.new_name()
        os.rename(self.p(rel), self.p(dst))
        if self.paths.get(dst) == self.paths[rel]:
            return  # two names of one inode: rename does nothing
        self.drop(dst)
        self.paths[dst] = self.paths.pop(rel)

    def link(self, rel):
        dst = self.new_name()
        os.link(self.p(rel), self.p(dst))
        self.paths[dst] = self.paths[rel]

    def unlink(self, rel):
        os.unlink(self.p(rel))
        self.drop(rel)

    def drop(self, rel):
        key = self.paths.pop(rel, None)
        if key is not None and key not in self.paths.values():
            del self.inodes[key]

    def xattr(self, rel):
        val = self.rng.randbytes(self.rng.randint(0, 200))
        os.setxattr(self.p(rel), "user.soak", val)
        self.inodes[self.paths[rel]][1]["user.soak"] = val

    def mkdir_rmdir(self):
        empty = [d for d in self.dirs if not any(p.startswith(d + "/") for p in self.paths)]
        if empty and self.rng.random() < 0.5:
            d = self.rng.choice(empty)
            os.rmdir(self.p(d))
            self.dirs.remove(d)
        else:
            self.count += 1
            d = os.path.join(self.rng.choice(SHARED), "t%d-dir%d" % (self.n, self.count))
            os.mkdir(self.p(d))
            self.dirs.append(d)

    def step(self):
        rel = self.pick()
        r = self.rng.random()
        if rel is None or r < 0.15:
            op = self.create
        else:
            op = [(0.45, self.write), (0.55, self.truncate), (0.68, self.rename),
                  (0.75, self.link), (0.85, self.unlink), (0.93, self.xattr),
                  (1.0, lambda rel: self.mkdir_rmdir())]
            op = next(fn for lim, fn in op if r < lim)
        self.last = "%s %s" % (getattr(op, "__name__", "mkdir_rmdir"), rel)
        op() if op == self.create else op(rel)
        self.ops += 1

    def run(self, stop, errors):
        try:
            while not stop.is_set():
                self.step()
        except Exception as e:  # noqa: the test reports it
            errors.append("worker %d, op %d (%s): %r" % (self.n, self.ops, self.last, e))


def _reader(root, stop, errors, counts):
    """Walks and reads everything; names vanish under it (ENOENT), nothing else may fail."""
    while not stop.is_set():
        for dp, dns, fns in os.walk(root):
            for name in fns:
                try:
                    read_file(os.path.join(dp, name))
                    os.listxattr(os.path.join(dp, name))
                    counts["reads"] += 1
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        errors.append("reader: %s: %s" % (os.path.join(dp, name), e))
                        return
            if stop.is_set():
                return


def _compare(root, workers):
    """The tree holds exactly the threads' names, contents, xattrs and link groups."""
    want_dirs = {d for w in workers for d in w.dirs} | set(SHARED) | {"d2"}
    want = {rel: w for w in workers for rel in w.paths}
    seen, groups = set(), {}
    for dp, dns, fns in os.walk(root):
        for name in dns:
            rel = os.path.relpath(os.path.join(dp, name), root)
            assert rel in want_dirs, "unexpected directory %s" % rel
            seen.add(rel)
        for name in fns:
            rel = os.path.relpath(os.path.join(dp, name), root)
            assert rel in want, "unexpected file %s" % rel
            w = want[rel]
            content, xattrs = w.inodes[w.paths[rel]]
            full = os.path.join(dp, name)
            got = read_file(full)
            assert got == bytes(content), "%s: %d bytes, want %d (or differ)" % (
                rel, len(got), len(content))
            for k, val in xattrs.items():
                assert_eq(os.getxattr(full, k), val, "%s xattr %s" % (rel, k))
            st = os.lstat(full)
            assert stat.S_ISREG(st.st_mode), rel
            groups.setdefault((id(w), w.paths[rel]), set()).add(st.st_ino)
            assert_eq(st.st_nlink, list(w.paths.values()).count(w.paths[rel]), "%s nlink" % rel)
            seen.add(rel)
    missing = (set(want) | want_dirs) - seen
    assert not missing, "missing after the soak: %s" % sorted(missing)[:10]
    assert all(len(g) == 1 for g in groups.values()), "a hard-link group split up"


def _fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _stacks(pid):
    try:
        return subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                              capture_output=True, text=True, timeout=60).stdout[-6000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(no stacks: %s)" % e


def test_soak():
    seconds = _seconds()
    with Volume(names="encrypted") as v:
        pid = v.daemon_pids[0]
        before = _fds(pid)
        for d in SHARED:
            os.makedirs(v.path(d))
        workers = [Worker(i, v.mnt, random.randrange(1 << 30)) for i in range(WORKERS)]
        stop, errors, counts = threading.Event(), [], {"reads": 0}
        threads = [threading.Thread(target=w.run, args=(stop, errors)) for w in workers]
        threads.append(threading.Thread(target=_reader, args=(v.mnt, stop, errors, counts)))
        for t in threads:
            t.start()
        stop.wait(seconds)
        stop.set()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            stacks = _stacks(pid)
            v.cleanup()  # aborts the mount: the stuck threads return
            raise AssertionError("deadlock: threads stuck 60 s after the soak ended; daemon "
                                 "stacks:\n%s" % stacks)
        assert not errors, "errors during the soak: %s" % errors[:5]
        ops = sum(w.ops for w in workers)
        assert ops > 100 * WORKERS * min(seconds, 1) and counts["reads"] > 0, \
            "the soak did too little: %d ops, %d reads" % (ops, counts["reads"])
        _compare(v.mnt, workers)
        # what reached the backing directory, through a read-only mount of a copy of it (the
        # volume itself has one daemon: a second mount of it is refused)
        second, copy = os.path.join(v.base, "second"), os.path.join(v.base, "copy")
        os.mkdir(second)
        run(["cp", "-a", v.backing, copy])
        r = run_kekfs("mount", "-o", "ro", *v.key_args(), copy, second)
        assert r.returncode == 0, "second mount: %r" % (r,)
        try:
            _compare(second, workers)
        finally:
            force_unmount(second)
        # the daemon holds an fd per cached inode (within a budget) and per open file: once
        # the tree is gone and no file is open, it must be back to where it started
        shutil.rmtree(v.path("d0"))
        shutil.rmtree(v.path("d1"))
        shutil.rmtree(v.path("d2"))
        assert wait_for(lambda: _fds(pid) <= before, 10), \
            "daemon fds: %d before the soak, %d after it and rm -rf" % (before, _fds(pid))
        sys.stderr.write("soak: %.0f s, %d operations, %d reads, daemon fds %d before, %d "
                         "after\n" % (seconds, ops, counts["reads"], before, _fds(pid)))


test_soak.timeout = max(600, _seconds() + 300)


def test_reused_inode_number_is_a_new_inode():
    """A directory removed while the kernel still holds it (a process's cwd), after its
    backing fd was closed (fd budget), and a new directory that gets its backing inode
    number: the new one must be a new inode. Before, the daemon handed the old one back
    (its stale file handle: ENOENT on the first create inside; its directory id: names
    sealed under the wrong one)."""
    if not shutil.which("prlimit"):
        raise Skip("prlimit not installed")
    with full_volume(size_mb=16, names="encrypted") as fv:
        v = fv.v
        v.umount()
        # a small fd limit makes a small fd budget (half of it), so a few hundred names evict
        run(["prlimit", "--nofile=1024:1024", kekfs_bin()] + v.mount_argv())
        assert wait_mounted(v.mnt), "not mounted"
        v.daemon_pids = find_daemon_pids(v.mnt)
        os.mkdir(v.path("many"))
        for i in range(700):
            write_file(v.path("many", "m%d" % i), b"")
        reused = 0
        for rnd in range(5):
            a, b = v.path("a%d" % rnd), v.path("b%d" % rnd)
            os.mkdir(a)
            write_file(os.path.join(a, "f"), b"x")  # the daemon learns a's directory id
            os.unlink(os.path.join(a, "f"))
            number = os.stat(a).st_ino
            with saved_cwd():
                os.chdir(a)  # the kernel keeps a's inode
                for i in range(700):
                    os.stat(v.path("many", "m%d" % i))  # evicts a's backing fd
                os.rmdir(a)
                os.mkdir(b)
                reused += os.stat(b).st_ino == number
                write_file(os.path.join(b, "x"), b"data")
        if not reused:
            raise Skip("the backing file system gave no inode number out again")
        v.remount()
        for rnd in range(5):
            assert_eq(os.listdir(v.path("b%d" % rnd)), ["x"], "b%d after a remount" % rnd)
