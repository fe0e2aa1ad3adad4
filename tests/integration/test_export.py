"""File handles through a mount outlive the kernel's inode cache (issue 19): what an NFS
server re-exporting a kekfs mount, or open_by_handle_at, needs. kekfs answers lookups of
"." and ".." (FUSE_CAP_EXPORT_SUPPORT) and keeps forgotten inodes (up to 8,192) that it can
reopen from their backing handle. At c2bb781 every handle was ESTALE once the kernel had
dropped its inode."""

import errno
import os
import shutil

from kekfs_harness import Volume, assert_eq, assert_raises_errno, tmp_root
from fhandle import name_to_handle, open_by_handle, drop_caches

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def read_by_handle(mnt_fd, fh):
    fd = open_by_handle(mnt_fd, fh)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_handles_survive_dropped_caches():
    """Handles of a nested file, its directory and a hard link open after the kernel forgot
    them, and after a rename; a handle of a deleted file is ESTALE."""
    with Volume() as v:
        os.makedirs(v.path("a", "b", "c"))
        with open(v.path("a", "b", "c", "f"), "wb") as f:
            f.write(b"nested")
        os.link(v.path("a", "b", "c", "f"), v.path("hard"))
        with open(v.path("gone"), "wb") as f:
            f.write(b"x")
        handles = {n: name_to_handle(v.path(*p)) for n, p in (
            ("f", ("a", "b", "c", "f")), ("dir", ("a", "b", "c")), ("hard", ("hard",)),
            ("gone", ("gone",)))}
        os.unlink(v.path("gone"))
        mnt_fd = os.open(v.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for round_ in ("first", "after a rename"):
                drop_caches()
                assert_eq(read_by_handle(mnt_fd, handles["f"]), b"nested", "file, " + round_)
                assert_eq(read_by_handle(mnt_fd, handles["hard"]), b"nested",
                          "hard link, " + round_)
                fd = open_by_handle(mnt_fd, handles["dir"], os.O_RDONLY | os.O_DIRECTORY)
                try:
                    assert_eq(os.listdir(fd), ["f"] if round_ == "first" else [],
                              "directory, " + round_)
                finally:
                    os.close(fd)
                assert_raises_errno(errno.ESTALE, open_by_handle, mnt_fd, handles["gone"])
                if round_ == "first":
                    os.rename(v.path("a", "b", "c", "f"), v.path("a", "moved"))
        finally:
            os.close(mnt_fd)


def test_directory_moved_out_of_the_backing_directory_is_not_reached():
    """Someone who writes the backing directory moves a directory out of it: decoding a
    handle of a directory inside it must not hand out what is now outside (ESTALE)."""
    with Volume(names="plaintext") as v:
        os.makedirs(v.path("top", "inner"))
        os.makedirs(v.path("stays", "inner"))
        fh = name_to_handle(v.path("top", "inner"))
        control = name_to_handle(v.path("stays", "inner"))
        outside = os.path.join(tmp_root(), "moved-out-%d" % os.getpid())
        mnt_fd = os.open(v.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.rename(v.bpath("top"), outside)
            drop_caches()
            os.close(open_by_handle(mnt_fd, control, os.O_RDONLY | os.O_DIRECTORY))
            assert_raises_errno(errno.ESTALE, open_by_handle, mnt_fd, fh,
                                os.O_RDONLY | os.O_DIRECTORY)
        finally:
            os.close(mnt_fd)
            shutil.rmtree(outside, ignore_errors=True)


def test_handles_of_an_earlier_mount_are_stale_not_wrong():
    """Node ids live as long as the daemon: a handle from before a remount is ESTALE, never
    another file (docs/DECISIONS.md says why)."""
    with Volume() as v:
        for n in ("one", "two"):
            with open(v.path(n), "wb") as f:
                f.write(n.encode())
        fh = name_to_handle(v.path("one"))
        v.remount()
        mnt_fd = os.open(v.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                got = read_by_handle(mnt_fd, fh)
            except OSError as e:
                assert_eq(e.errno, errno.ESTALE, "errno of a handle from before the remount")
            else:
                assert_eq(got, b"one", "a handle from before the remount opened")
        finally:
            os.close(mnt_fd)
