"""Documented limits and re-keying: truncation to
zero giving a new file id and DEK while user.* xattrs survive, and the log line a
damaged file produces (names the file, says what failed, holds no key)."""

import errno
import os

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, run_kekfs,
                           wait_mounted, find_daemon_pids)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

def test_truncate_to_zero_rekeys_and_keeps_xattrs():
    """O_TRUNC gives the file a new file id; its user.* xattr still reads back."""
    with Volume() as v:
        write_file(v.path("f"), pattern(9000, 1))
        os.setxattr(v.path("f"), "user.colour", b"blue")
        bf = v.backing_path("f")
        with open(bf, "rb") as f:
            old_id = f.read(24)[8:24]
        with open(v.path("f"), "wb") as f:
            f.write(b"new contents")
        with open(bf, "rb") as f:
            new_id = f.read(24)[8:24]
        assert old_id != new_id, "truncate to 0 kept the file id"
        assert_eq(os.getxattr(v.path("f"), "user.colour"), b"blue", "xattr after re-key")
        v.remount()
        assert_eq(read_file(v.path("f")), b"new contents", "contents after re-key")
        assert_eq(os.getxattr(v.path("f"), "user.colour"), b"blue", "xattr after remount")


def test_damaged_chunk_logs_one_line_naming_the_file():
    """A failing chunk is EIO, and the log names the backing file and chunk, no key bytes."""
    with Volume() as v:
        log = os.path.join(v.base, "daemon.log")
        write_file(v.path("victim"), pattern(3 * v.effective_chunk, 9))
        bvictim = v.backing_path("victim")  # what the log names: the backing path
        v.umount()
        with open(bvictim, "r+b") as f:
            f.seek(256 + v.effective_chunk + v.overhead + 30)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 1]))
        r = run_kekfs(*v.mount_argv(extra=("--log-file", log)))
        assert_eq(r.returncode, 0, "mount with --log-file")
        assert wait_mounted(v.mnt), "mount did not appear"
        v.daemon_pids = find_daemon_pids(v.mnt)  # so cleanup waits for this daemon too
        try:
            read_file(v.path("victim"))
        except OSError as e:
            assert_eq(e.errno, errno.EIO, "errno of a damaged chunk")
        else:
            raise AssertionError("damaged chunk read without error")
        text = read_file(log).decode()
        lines = [ln for ln in text.splitlines() if bvictim in ln]
        assert lines, "no log line names the damaged file"
        assert "chunk 1 " in lines[0], "log line does not say which chunk: %r" % lines[0]
        assert read_file(v.key_file).hex() not in text, "key bytes in the log"
