"""The passphrase prompt on a terminal: init asks twice (and refuses a mismatch), mount asks
once; echo is off, and the passphrase never shows on the screen."""

import os
import pty
import select
import time

from kekfs_harness import (make_tempdir, kekfs_bin, wait_for, force_unmount, assert_eq,
                           find_daemon_pids)


def run_on_tty(argv, answers, timeout=60):
    """Runs argv on a new pseudo-terminal, answering each prompt; returns (status, screen)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    screen, pending, deadline = b"", list(answers), time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            screen += data
            # a fresh prompt ("...: "), not the newline echoed after the previous answer
            if pending and screen.rstrip(b" ").endswith(b":"):
                os.write(fd, pending.pop(0).encode() + b"\n")
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen


def test_passphrase_prompt_init_and_mount():
    """init asks twice; a mismatch is refused; mount asks once and mounts."""
    base = make_tempdir("tty")
    backing, mnt = os.path.join(base, "b"), os.path.join(base, "m")
    os.mkdir(mnt)
    secret = "tty passphrase 31337"
    rc, screen = run_on_tty([kekfs_bin(), "init", backing], [secret, secret + "x"])
    assert rc != 0, "init accepted two different passphrases"
    assert b"do not match" in screen, "no clear message on mismatch: %r" % screen
    assert not os.path.exists(backing), "a refused init left %s behind" % backing
    rc, screen = run_on_tty([kekfs_bin(), "init", backing], [secret, secret])
    assert_eq(rc, 0, "init with a typed passphrase: %r" % screen)
    assert secret.encode() not in screen, "the passphrase was echoed"
    try:
        rc, screen = run_on_tty([kekfs_bin(), "mount", backing, mnt], ["wrong one"])
        assert rc != 0 and b"wrong passphrase" in screen, "wrong passphrase: %r" % screen
        rc, screen = run_on_tty([kekfs_bin(), "mount", backing, mnt], [secret])
        assert_eq(rc, 0, "mount with a typed passphrase: %r" % screen)
        assert wait_for(lambda: os.path.ismount(mnt), 10), "not mounted"
    finally:
        force_unmount(mnt, find_daemon_pids(mnt))
