"""Errors that come from the machine rather than the volume: a full backing filesystem
and a missing /dev/fuse. Each is a clear error, and nothing already written is lost."""

import errno
import os
import subprocess

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           run, kekfs_bin, make_tempdir, make_key_file)
from test_errors import check_one_error_line

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def test_disk_full_is_enospc_and_loses_nothing():
    """On a full backing filesystem writes fail with ENOSPC; earlier files stay intact and
    the volume works again once space is freed."""
    with Volume(do_mount=False) as v:
        small = os.path.join(v.base, "small")
        os.mkdir(small)
        run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small])
        try:
            backing = os.path.join(small, "backing")
            run(["cp", "-a", v.backing, backing])
            v.backing = backing
            v.mount()
            keep = pattern(300000, 7)
            write_file(v.path("keep"), keep)
            got = None
            try:
                with open(v.path("filler"), "wb") as f:
                    for _ in range(64):
                        f.write(pattern(65536, 8))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                got = e.errno
            assert_eq(got, errno.ENOSPC, "errno when the backing filesystem is full")
            assert_bytes_eq(read_file(v.path("keep")), keep, "file written before the disk filled")
            os.unlink(v.path("filler"))
            write_file(v.path("after"), b"space again")
            v.remount()
            assert_bytes_eq(read_file(v.path("keep")), keep, "file after remount")
            assert_eq(read_file(v.path("after")), b"space again", "file written after freeing")
        finally:
            v.umount(check=False)
            run(["umount", "-l", small], check=False)


def test_missing_dev_fuse_is_one_clear_error():
    """Without /dev/fuse (an empty /dev in a private mount namespace) mount says so."""
    base = make_tempdir("nofuse")
    key = make_key_file(base)
    backing, mnt = os.path.join(base, "b"), os.path.join(base, "m")
    os.mkdir(mnt)
    r = subprocess.run([kekfs_bin(), "init", "--key-file", key, backing], capture_output=True)
    assert_eq(r.returncode, 0, "init")
    script = 'mount -t tmpfs none /dev && exec "$0" mount --key-file "$1" "$2" "$3"'
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                        kekfs_bin(), key, backing, mnt], capture_output=True)
    check_one_error_line(r, "mount without /dev/fuse")
    assert b"/dev/fuse" in r.stderr, "message does not name /dev/fuse: %r" % r.stderr
    assert not os.path.ismount(mnt), "something was mounted"
