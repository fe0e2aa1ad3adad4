"""The limits THREAT-MODEL.md names, tested as exactly what they are: someone who can
write the backing directory can roll back a whole file, or one chunk of a file, to an
older copy, and kekfs cannot tell. These tests pin that behaviour down so the document
stays true (and fail, to be updated, the day kekfs starts detecting it)."""

import shutil

from kekfs_harness import Volume, write_file, read_file, pattern, assert_bytes_eq

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def test_rollback_whole_file():
    """An older copy of the whole backing file (header and chunks) reads as the old data."""
    with Volume() as v:
        old = pattern(3 * v.effective_chunk + 100, 1)
        write_file(v.path("f"), old)
        bf, copy = v.backing_path("f"), v.bpath("..", "f.old")
        v.umount()
        shutil.copyfile(bf, copy)
        v.mount()
        write_file(v.path("f"), pattern(5 * v.effective_chunk, 2))
        v.umount()
        shutil.copyfile(copy, bf)
        v.mount()
        assert_bytes_eq(read_file(v.path("f")), old, "rolled-back file")


def test_rollback_single_chunk():
    """An older version of one chunk of the same file is accepted: chunks carry no version."""
    with Volume() as v:
        C, O = v.effective_chunk, v.overhead
        first = pattern(4 * C, 3)
        write_file(v.path("f"), first)
        bf = v.backing_path("f")
        v.umount()
        with open(bf, "rb") as f:
            f.seek(256 + 1 * (C + O))
            old_chunk1 = f.read(C + O)
        v.mount()
        second = pattern(4 * C, 4)
        with open(v.path("f"), "r+b") as f:
            f.write(second)
        v.umount()
        with open(bf, "r+b") as f:
            f.seek(256 + 1 * (C + O))
            f.write(old_chunk1)
        v.mount()
        expect = second[:C] + first[C:2 * C] + second[2 * C:]
        assert_bytes_eq(read_file(v.path("f")), expect, "file with chunk 1 rolled back")
