"""statfs reports what can be stored (issue 19): df's free space through the mount is the
backing filesystem's scaled for kekfs's header and per-chunk nonce and tag, so that a
program sizing its writes from df succeeds. The stated margin: what df shows is at most
1/512 of the free space plus 1 MiB below what the backing disk could take."""

import os

from kekfs_harness import assert_eq, pattern
from test_faults import full_volume

MIB = 1 << 20


def avail(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def backing_left_after(fill):
    """On a fresh small disk: fill(path, n) with n what df shows through the mount; returns
    (n, bytes the backing disk had before and has left after)."""
    with full_volume(size_mb=48) as fv:
        v = fv.v
        shown, before = avail(v.mnt), avail(v.backing)
        p = v.path("big")
        try:
            fill(p, shown)
        except OSError as e:
            raise AssertionError("storing the %d bytes df showed (the backing disk had %d): "
                                 "%s" % (shown, before, e))
        assert 0 < shown < before, "df through the mount %d, on the backing disk %d" % (
            shown, before)
        assert_eq(os.stat(p).st_size, shown, "size of the file that took what df showed")
        left = avail(v.backing)
        os.unlink(p)
        return shown, before, left


def check_margin(shown, before, left):
    assert left <= before // 512 + MIB, (
        "df through the mount showed %d bytes; after storing them the backing disk still "
        "had %d of %d free, more than the stated margin" % (shown, left, before))


def test_fallocate_of_what_df_shows_succeeds():
    """posix_fallocate of the free space df reports: at c2bb781 ENOSPC, because the headers
    and per-chunk overhead were not accounted for."""
    def fill(p, n):
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, n)
        finally:
            os.close(fd)
    check_margin(*backing_left_after(fill))


def test_writing_what_df_shows_succeeds():
    """Writing (and fsyncing) the free space df reports in 1 MiB pieces."""
    def fill(p, n):
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            done = 0
            while done < n:
                done += os.write(fd, pattern(min(MIB, n - done), done // MIB))
            os.fsync(fd)
        finally:
            os.close(fd)
    check_margin(*backing_left_after(fill))
