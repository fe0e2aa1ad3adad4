"""passphrase-command: a program prints the passphrase (gocryptfs -extpass; pass,
secret-tool). Run without a shell with its arguments split on spaces, as key-command is; the
first line of its stdout is the passphrase; a failing program or an empty output is refused
in one line with nothing mounted; the passphrase is never in the program's argv or env."""

import os

from kekfs_harness import (make_tempdir, make_passphrase_file, run_kekfs, is_mounted,
                           force_unmount, read_file, write_file, assert_eq, rmtree)
from test_key_sources import script, mounted_ok, failed_cleanly

PASSPHRASE = "correct horse battery staple"


def printer(base, name="print-pass"):
    """A program that prints PASSPHRASE when called with 'secret' and 'tool' as arguments,
    and records its arguments and environment next to itself."""
    return script(base, name,
                  'echo "$#:$1:$2" > "$0.args"\nenv > "$0.env"\n'
                  '[ "$1" = secret ] && [ "$2" = tool ] || exit 9\n'
                  "printf '%s\\n'\n" % PASSPHRASE)


def test_init_and_mount_with_a_passphrase_command():
    base = make_tempdir("pc")
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    prog = printer(base)
    cmd = prog + " secret tool"
    try:
        r = run_kekfs("init", "--passphrase-command", cmd, backing)
        assert_eq(r.returncode, 0, "init --passphrase-command: %r" % r)
        assert_eq(read_file(prog + ".args"), b"2:secret:tool\n", "arguments not split")
        env = read_file(prog + ".env")
        assert PASSPHRASE.encode() not in env, "the passphrase is in the program's env"
        r = run_kekfs("mount", "-o", "passphrase-command=" + cmd, backing, mnt)
        mounted_ok(r, mnt)
        r = run_kekfs("mount", "--passphrase-command", cmd, backing, mnt)
        mounted_ok(r, mnt)
        # the same passphrase as from a file: one line, its newline not part of it
        r = run_kekfs("mount", "--passphrase-file", make_passphrase_file(base, PASSPHRASE),
                      backing, mnt)
        mounted_ok(r, mnt)
        r = run_kekfs("path", "encrypt", "--passphrase-command", cmd, backing, "probe")
        assert_eq(r.returncode, 0, "path encrypt --passphrase-command: %r" % r)
    finally:
        force_unmount(mnt)
        rmtree(base)


def test_passphrase_command_failures_are_one_line():
    base = make_tempdir("pc")
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    try:
        r = run_kekfs("init", "--passphrase-file", make_passphrase_file(base, PASSPHRASE),
                      backing)
        assert_eq(r.returncode, 0, "init: %r" % r)
        cases = [
            (script(base, "fails", "echo 'pass: not found' >&2\nexit 3\n"),
             "failed (exit status 3)"),
            (script(base, "empty", "exit 0\n"), "is empty"),
            (script(base, "newline", "echo\n"), "is empty"),
            (script(base, "wrong", "echo wrong passphrase\n"), "cannot unlock"),
            (script(base, "long", "head -c 5000 /dev/zero | tr '\\0' x\n"), "more than"),
            (os.path.join(base, "missing"), "cannot run passphrase-command"),
            ("sh -c true", "passphrase-command must start with an absolute path"),
        ]
        for cmd, want in cases:
            failed_cleanly(run_kekfs("mount", "-o", "passphrase-command=" + cmd, backing,
                                     mnt), mnt, want)
            failed_cleanly(run_kekfs("mount", "--passphrase-command", cmd, backing, mnt),
                           mnt, want)
        r = run_kekfs("mount", "--passphrase-command", printer(base), "--passphrase-file",
                      make_passphrase_file(base, PASSPHRASE), backing, mnt)
        failed_cleanly(r, mnt, "give one key source")
        r = run_kekfs("init", "--passphrase-command", cases[1][0],
                      os.path.join(base, "other"))
        assert r.returncode != 0 and not os.path.exists(os.path.join(base, "other", ".kekfs")), \
            "init with an empty passphrase-command made a volume: %r" % r
    finally:
        force_unmount(mnt)
        rmtree(base)
