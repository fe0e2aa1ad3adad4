"""The daemon under valgrind memcheck for a short mixed workload: no invalid access, no
uninitialised use, no definite leak, including handles still open at unmount."""

import os
import shutil
import subprocess

from kekfs_harness import (Skip, make_tempdir, make_key_file, kekfs_bin, wait_for, write_file,
                           read_file, pattern, assert_bytes_eq, force_unmount)


def _workload(mnt):
    data = pattern(3 * 4096 + 123, 11)
    write_file(os.path.join(mnt, "a"), data)
    assert_bytes_eq(read_file(os.path.join(mnt, "a")), data, "file under valgrind")
    os.symlink("a", os.path.join(mnt, "l"))
    os.setxattr(os.path.join(mnt, "a"), "user.k", b"v")
    assert os.getxattr(os.path.join(mnt, "a"), "user.k") == b"v"
    os.mkdir(os.path.join(mnt, "d"))
    os.link(os.path.join(mnt, "a"), os.path.join(mnt, "d", "hard"))
    os.rename(os.path.join(mnt, "l"), os.path.join(mnt, "d", "l2"))
    os.truncate(os.path.join(mnt, "a"), 5000)
    with open(os.path.join(mnt, "a"), "r+b") as f:
        f.seek(100000)
        f.write(b"tail")
    assert sorted(os.listdir(mnt)) == ["a", "d"]


def test_daemon_clean_under_valgrind():
    """valgrind reports zero errors for the daemon's whole life."""
    if not shutil.which("valgrind"):
        raise Skip("valgrind not installed")
    if os.environ.get("KEKFS_SANITIZER_LOGS"):
        raise Skip("the daemon is built with AddressSanitizer, which valgrind cannot run")
    base = make_tempdir("vg")
    key = make_key_file(base)
    backing, mnt, log = (os.path.join(base, n) for n in ("b", "m", "vg.log"))
    os.mkdir(mnt)
    subprocess.run([kekfs_bin(), "init", "--key-file", key, backing], check=True,
                   capture_output=True)
    proc = subprocess.Popen(["valgrind", "--error-exitcode=99", "--leak-check=full",
                             "--errors-for-leak-kinds=definite", "--log-file=" + log,
                             kekfs_bin(), "mount", "-f", "--key-file", key, backing, mnt],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.ismount(mnt), 60), "mount under valgrind did not appear"
        _workload(mnt)
        # A file and a directory still open when SIGTERM ends the daemon: it frees them itself.
        keep_dir = os.open(os.path.join(mnt, "d"), os.O_RDONLY | os.O_DIRECTORY)
        keep_file = os.open(os.path.join(mnt, "a"), os.O_RDONLY)
        proc.terminate()
        rc = proc.wait(timeout=120)
        for fd in (keep_dir, keep_file):
            try:
                os.close(fd)
            except OSError:
                pass
        assert not os.path.ismount(mnt), "SIGTERM left the mount behind"
    finally:
        if proc.poll() is None:
            force_unmount(mnt)
            proc.kill()
            proc.wait()
    text = open(log).read()
    assert "ERROR SUMMARY: 0 errors" in text, "valgrind found errors:\n" + text[-3000:]
    assert rc == 0, "daemon under valgrind exited %d" % rc
