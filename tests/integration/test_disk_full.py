"""A full backing disk with the kernel's writeback cache and no fsync: dd, cp, rsync and tar
get ENOSPC from write(2) itself, stop within what the disk holds, leave files whose size in
the mount is the size stored and that read back as a clean prefix, keep earlier files exact,
and work again once space is freed. Each runs on a disk smaller than what the kernel may hold
dirty for a mount (every writable open is direct I/O) and, where memory allows, on one larger
than that (the writer opens with the cache and is turned away as the disk nears full)."""

import hashlib
import os
import re
import subprocess

from kekfs_harness import (write_file, read_file, pattern, assert_bytes_eq, assert_eq,
                           make_tempdir, rmtree, require_tools)
from test_faults import full_volume

MIB = 1 << 20
SMALL_MB = 20


def _dirty_limit(mnt):
    """Bytes the kernel may hold dirty for the mount at mnt (its bdi's max_bytes), or None."""
    st = os.stat(mnt)
    try:
        with open("/sys/class/bdi/%d:%d/max_bytes" % (os.major(st.st_dev),
                                                      os.minor(st.st_dev))) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _estimated_dirty_limit():
    """FUSE's bdi cap before there is a mount to ask: 1% of the global dirty threshold."""
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("nr_dirty_threshold "):
                return int(line.split()[1]) * os.sysconf("SC_PAGESIZE") // 100
    return None


def _disk_sizes():
    """A disk all-direct, and one with room for the cache first, if it stays small."""
    limit = _estimated_dirty_limit()
    big = (limit or 1 << 40) // MIB + 64
    return [SMALL_MB] + ([big] if big <= 512 else [])


def _sha(path):
    return hashlib.sha256(read_file(path)).hexdigest()


def _with_earlier(v):
    """Files written before the disk fills, and their hashes."""
    os.mkdir(v.path("keep"))
    sums = {}
    for i, n in enumerate((100, 5 * 4096 + 7, MIB + 3)):
        write_file(v.path("keep", "k%d" % i), pattern(n, 40 + i))
        sums["k%d" % i] = _sha(v.path("keep", "k%d" % i))
    return sums


def _check_after(fv, sums, files):
    """files maps a mount path to the bytes its writer meant: each reads back, before and
    after a remount, as the same clean prefix of them (its size in the mount is what is
    stored); earlier files are exact; once the files are gone, a new file writes whole."""
    v = fv.v
    seen = {}
    for p, want in files.items():
        got = read_file(p)  # no EIO
        assert_eq(os.stat(p).st_size, len(got), "%s: size and bytes read" % p)
        assert_bytes_eq(got, want[:len(got)], "%s is a prefix of what was written" % p)
        seen[p] = len(got)
    v.remount()
    for p, n in seen.items():
        assert_eq(os.stat(p).st_size, n, "%s: size in the mount before and after a remount "
                  "(the stored size)" % p)
        assert_bytes_eq(read_file(p), files[p][:n], "%s after a remount" % p)
    for name, h in sums.items():
        assert_eq(_sha(v.path("keep", name)), h, "earlier file %s after ENOSPC" % name)
    for p in files:
        os.unlink(p)
    data = pattern(3 * MIB + 11, 77)
    write_file(v.path("after"), data)
    assert_bytes_eq(read_file(v.path("after")), data, "a file written after freeing space")
    return seen


def _assert_enospc(r, tool, at_write):
    out = r.stdout + r.stderr
    assert r.returncode != 0, "%s on a full disk exited 0: %r" % (tool, out)
    assert "No space left on device" in out, "%s: no ENOSPC in %r" % (tool, out)
    assert at_write in out, "%s: ENOSPC not at a write (want %r): %r" % (tool, at_write, out)


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_dd_stops_at_enospc():
    """dd bs=1M, no fsync: write(2) fails with ENOSPC, what dd reports written is at most
    the disk's size, and the file in the mount is that size, stored, all zeros."""
    for size_mb in _disk_sizes():
        with full_volume(size_mb=size_mb) as fv:
            v = fv.v
            sums = _with_earlier(v)
            bound = _dirty_limit(v.mnt) or 0
            r = _run(["dd", "if=/dev/zero", "of=" + v.path("f"), "bs=1M",
                      "count=%d" % (2 * size_mb)])
            _assert_enospc(r, "dd on %d MiB" % size_mb, "error writing")
            m = re.search(r"(\d+) bytes", r.stderr)
            assert m, "dd printed no byte count: %r" % r.stderr
            written = int(m.group(1))
            assert written <= size_mb * MIB + bound, "dd wrote %d bytes on %d MiB" % (
                written, size_mb)
            seen = _check_after(fv, sums, {v.path("f"): bytes(2 * size_mb * MIB)})
            assert_eq(seen[v.path("f")], written, "stored size and what dd says it wrote")


test_dd_stops_at_enospc.timeout = 600


def test_cp_stops_at_enospc():
    """cp of a file larger than the disk: ENOSPC at a write, the copy a stored prefix."""
    src_dir = make_tempdir("cpsrc")
    try:
        for size_mb in _disk_sizes():
            src = os.path.join(src_dir, "big")
            data = pattern((size_mb + 16) * MIB + 5, size_mb)
            write_file(src, data)
            with full_volume(size_mb=size_mb) as fv:
                v = fv.v
                sums = _with_earlier(v)
                r = _run(["cp", src, v.path("copy")])
                _assert_enospc(r, "cp on %d MiB" % size_mb, "error writing")
                _check_after(fv, sums, {v.path("copy"): data})
    finally:
        rmtree(src_dir)


test_cp_stops_at_enospc.timeout = 600


def _tree(base, size_mb):
    """Six files that together take about twice the disk."""
    files = {}
    os.mkdir(base)
    for i in range(6):
        files["f%d" % i] = pattern(size_mb * MIB // 3 + 1000 * i, 60 + i)
        write_file(os.path.join(base, "f%d" % i), files["f%d" % i])
    return files


def _tree_copy_stops(tool, copy, at_write):
    """copy(src, dst) copies a tree about twice the disk's size into the mount: a write
    fails with ENOSPC, and every file it leaves reads back exact or as a stored prefix."""
    src_dir = make_tempdir(tool)
    try:
        for size_mb in _disk_sizes():
            src = os.path.join(src_dir, "t%d" % size_mb)
            files = _tree(src, size_mb)
            with full_volume(size_mb=size_mb) as fv:
                v = fv.v
                sums = _with_earlier(v)
                os.mkdir(v.path("dst"))
                r = copy(src, v.path("dst"))
                _assert_enospc(r, "%s on %d MiB" % (tool, size_mb), at_write)
                left = {v.path("dst", n): files[n] for n in os.listdir(v.path("dst"))}
                assert left, "%s left no file at all" % tool
                _check_after(fv, sums, left)
    finally:
        rmtree(src_dir)


def test_rsync_stops_at_enospc():
    """rsync -a: the receiver's write fails (rsync then drops its temporary file)."""
    require_tools("rsync")
    _tree_copy_stops("rsync", lambda src, dst: _run(["rsync", "-a", src + "/", dst + "/"]),
                     "write failed")


test_rsync_stops_at_enospc.timeout = 600


def test_tar_stops_at_enospc():
    """tar -x of an archive: the write of the file that meets the full disk fails."""
    require_tools("tar")

    def untar(src, dst):
        subprocess.run(["tar", "-cf", src + ".tar", "-C", src, "."], check=True)
        try:
            return _run(["tar", "-xf", src + ".tar", "-C", dst])
        finally:
            os.unlink(src + ".tar")

    _tree_copy_stops("tar", untar, "Cannot write")


test_tar_stops_at_enospc.timeout = 600
