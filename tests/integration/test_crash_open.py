"""After kill -9 every file that has a name opens (issue 15): a 0-byte backing file (a crash
between create, or a cut to 0, and the header) opens as an empty file, and a growing write
cut to a tail shorter than a chunk's overhead opens with the whole chunks before it. fsck
reports both and --repair mends them. At 0daec58 both refused to open (EIO).

The states are made here as the crash leaves them, by cutting the backing file of an
unmounted volume; test_crash.py makes them with real kill -9s."""

import errno
import os

from kekfs_harness import Volume, write_file, read_file, assert_eq, pattern, run_kekfs

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

HEADER = 256


def fsck(v, *extra):
    r = run_kekfs("fsck", *(v.key_args() + list(extra) + [v.backing]), timeout=120)
    return r, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def cut(path, size):
    os.truncate(path, size)
    assert_eq(os.stat(path).st_size, size, "backing size after the cut")


def test_zero_byte_file_opens_empty_and_is_mended():
    """A 0-byte backing file: listed with size 0, opens and reads as empty on a read-only
    mount without being written, is given its header by fsck --repair or by a read-write
    open, and then takes writes that survive a remount."""
    with Volume() as v:
        write_file(v.path("caught"), b"gone in the crash")
        write_file(v.path("other"), b"kept")
        backing = v.backing_path("caught")
        v.umount()
        cut(backing, 0)
        r, out = fsck(v)
        assert_eq(r.returncode, 1, "fsck exit status: %s" % out)
        assert "0 bytes on disk" in out, out
        v.mount("ro")
        try:
            assert_eq(os.stat(v.path("caught")).st_size, 0, "size of the 0-byte file")
            assert_eq(read_file(v.path("caught")), b"", "the 0-byte file on a read-only mount")
        finally:
            v.umount()
        assert_eq(os.stat(backing).st_size, 0, "a read-only mount wrote the 0-byte file")
        r, out = fsck(v, "--repair")
        assert_eq(r.returncode, 0, "fsck --repair: %s" % out)
        assert "0 bytes on disk" in out and "(repaired)" in out, out
        assert_eq(os.stat(backing).st_size, HEADER + v.overhead, "backing after --repair")
        cut(backing, 0)
        v.mount()
        assert_eq(read_file(v.path("caught")), b"", "the 0-byte file, read-write mount")
        write_file(v.path("caught"), b"written after the crash")
        assert_eq(read_file(v.path("other")), b"kept", "the file beside it")
        v.umount()
        v.mount()
        assert_eq(read_file(v.path("caught")), b"written after the crash", "after a remount")
        v.umount()
        r, out = fsck(v)
        assert_eq(r.returncode, 0, "fsck at the end: %s" % out)


def test_torn_tail_opens_with_its_whole_chunks_and_is_trimmed():
    """A backing file cut a few bytes (fewer than a chunk's overhead) past a whole chunk:
    it opens, reads as its whole chunks (the first exactly; the last whole one may be EIO,
    never other bytes), fsck reports the torn tail and --repair trims it."""
    with Volume() as v:
        c, stored = v.effective_chunk, v.effective_chunk + v.overhead
        data = pattern(3 * c + 100, 5)
        write_file(v.path("grown"), data)
        backing = v.backing_path("grown")
        v.umount()
        for tail in (1, v.overhead - 1):
            cut(backing, HEADER + 2 * stored + tail)
            r, out = fsck(v)
            assert_eq(r.returncode, 1, "fsck exit status: %s" % out)
            assert "%d bytes after its last whole chunk" % tail in out, out
        v.mount("ro")
        try:
            assert_eq(os.stat(v.path("grown")).st_size, 2 * c, "size with a torn tail")
            fd = os.open(v.path("grown"), os.O_RDONLY)
            try:
                assert_eq(os.pread(fd, c, 0), data[:c], "the first whole chunk")
                try:
                    got = os.pread(fd, c, c)
                    assert_eq(got, data[c:2 * c], "the last whole chunk")
                except OSError as e:
                    assert_eq(e.errno, errno.EIO, "reading the last whole chunk")
            finally:
                os.close(fd)
        finally:
            v.umount()
        r, out = fsck(v, "--repair")
        assert "after its last whole chunk" in out and "(repaired)" in out, out
        assert_eq(os.stat(backing).st_size, HEADER + 2 * stored, "backing after --repair")


def test_torn_tail_is_trimmed_by_a_writer():
    """A read-write open trims the torn tail, so the file grows again from its whole chunks
    and reads back exactly after a remount."""
    with Volume() as v:
        c, stored = v.effective_chunk, v.effective_chunk + v.overhead
        write_file(v.path("grown"), pattern(2 * c, 9))
        backing = v.backing_path("grown")
        v.umount()
        cut(backing, HEADER + stored + 3)  # one whole chunk, then a torn tail of 3 bytes
        v.mount()
        with open(v.path("grown"), "r+b") as f:
            f.seek(0, os.SEEK_END)
            assert_eq(f.tell(), c, "size seen by the writer")
            f.write(pattern(c, 10))
        v.umount()
        v.mount()
        got = read_file(v.path("grown"))
        assert_eq(len(got), 2 * c, "size after the write")
        assert_eq(got[c:], pattern(c, 10), "the bytes written after the trim")
