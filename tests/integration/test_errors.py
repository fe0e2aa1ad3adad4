"""CLI error handling: every failure exits non-zero with exactly one line on
stderr starting "kekfs: ", leaves nothing mounted, changes nothing in the
volume, and the volume still mounts fine with the right key afterwards."""

import hashlib
import os

from kekfs_harness import (Volume, run_kekfs, make_key_file, make_passphrase_file, write_file,
                           read_file, assert_eq, is_mounted, mount_entries, mounts_under,
                           find_daemon_pids, wait_for, pid_alive)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

SENTINEL = b"sentinel data that must survive every failed attempt\n" * 100


# A failed unlock is recorded for the audit log (issue 4): the one change a refused command
# may make, besides naming itself in the volume's lock file (.kekfs/lock, issue 15) while it
# runs. Everything else must stay byte for byte.
AUDIT_FILES = ("audit.log", "audit.pending", "lock")


def snapshot(*roots):
    """{path: sha256} of every file/link/dir below the given roots (audit files aside)."""
    snap = {}
    for root in roots:
        if not os.path.lexists(root):
            snap[root] = None
            continue
        if not os.path.isdir(root) or os.path.islink(root):
            snap[root] = _digest(root)
            continue
        for dp, dns, fns in os.walk(root):
            snap[dp] = "dir %o" % os.lstat(dp).st_mode
            for n in fns:
                if n in AUDIT_FILES and os.path.basename(dp) == ".kekfs":
                    continue
                p = os.path.join(dp, n)
                snap[p] = _digest(p)
    return snap


def _digest(p):
    st = os.lstat(p)
    if os.path.islink(p):
        return "link " + os.readlink(p)
    if not os.path.isfile(p):
        return "special %o" % st.st_mode
    with open(p, "rb") as f:
        return "%o %s" % (st.st_mode, hashlib.sha256(f.read()).hexdigest())


def check_one_error_line(r, label):
    assert r.returncode != 0, "%s: exited 0 (expected failure); stderr=%r" % (label, r.stderr)
    text = r.stderr.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert len(lines) == 1, "%s: expected exactly one stderr line, got %d: %r" % (
        label, len(lines), text[:600])
    assert lines[0].startswith("kekfs: "), "%s: stderr line does not start with 'kekfs: ': %r" % (
        label, lines[0])
    assert len(lines[0]) > len("kekfs: "), "%s: empty error message" % label


def expect_failure(v, argv, label, watch=(), mountpoint=None, allowed_mounts=0):
    """Run kekfs argv; assert the error contract and that nothing under
    `watch` changed."""
    watch = list(watch) or [v.backing] + ([v.keyring] if v.keyring_outside else [])
    before = snapshot(*watch)
    mounts_before = mounts_under(v.base)
    r = run_kekfs(*argv)
    check_one_error_line(r, label)
    mp = mountpoint or v.mnt
    assert_eq(len(mount_entries(mp)), allowed_mounts, "%s: mount entries at %s" % (label, mp))
    assert_eq(sorted(mounts_under(v.base)), sorted(mounts_before),
              "%s: mounts under the test dir" % label)
    if not allowed_mounts:
        assert wait_for(lambda: not find_daemon_pids(mp), 3), \
            "%s: a kekfs daemon for %s is still running: %r" % (label, mp, find_daemon_pids(mp))
    after = snapshot(*watch)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, "%s: failed command modified files: %r" % (label, changed[:10])
    return r


def still_works(v, label):
    """The volume mounts with the right key and nothing is lost."""
    try:
        v.mount()
    except AssertionError as e:
        raise AssertionError("%s: volume no longer mounts with the right key: %s" % (label, e))
    try:
        assert_eq(read_file(v.path("sentinel")), SENTINEL, "%s: sentinel after failures" % label)
        assert_eq(sorted(os.listdir(v.mnt)), ["sentinel", "sub"], "%s: root listing" % label)
    finally:
        v.umount()


def _setup(v):
    write_file(v.path("sentinel"), SENTINEL)
    os.mkdir(v.path("sub"))
    v.umount()


def _mount_with(v, *keyargs, backing=None, mnt=None):
    return ["mount"] + list(keyargs) + [backing or v.backing, mnt or v.mnt]


def test_wrong_key_and_bad_key_files():
    with Volume() as v:
        _setup(v)
        d = v.base
        wrong = make_key_file(d, name="wrongkey")
        short = make_key_file(d, os.urandom(31), name="k31")
        long_ = make_key_file(d, v.key + b"\n", name="k33")  # right key + newline = 33 bytes
        long2 = make_key_file(d, os.urandom(33), name="k33b")
        empty = make_key_file(d, b"", name="k0")
        os.mkdir(os.path.join(d, "keydir"))
        os.symlink(os.path.join(d, "nowhere"), os.path.join(d, "dangling"))
        pw = make_passphrase_file(d, "not the key")
        cases = [
            ("wrong key file", ["--key-file", wrong]),
            ("key file missing", ["--key-file", os.path.join(d, "missing-key")]),
            ("key file is a directory", ["--key-file", os.path.join(d, "keydir")]),
            ("key file is a dangling symlink", ["--key-file", os.path.join(d, "dangling")]),
            ("key file of 31 bytes", ["--key-file", short]),
            ("key file of 33 bytes (right key + newline)", ["--key-file", long_]),
            ("key file of 33 random bytes", ["--key-file", long2]),
            ("key file empty", ["--key-file", empty]),
            ("passphrase given for a key-file volume", ["--passphrase-file", pw]),
            ("no key option at all", []),
        ]
        for label, ka in cases:
            expect_failure(v, _mount_with(v, *ka), label)
        still_works(v, "after bad key files")


def test_wrong_passphrase():
    with Volume(passphrase="the right passphrase") as v:
        _setup(v)
        d = v.base
        cases = [
            ("wrong passphrase", ["--passphrase-file", make_passphrase_file(d, "the wrong passphrase", "w1")]),
            ("passphrase prefix", ["--passphrase-file", make_passphrase_file(d, "the right passphras", "w2")]),
            ("passphrase with extra char", ["--passphrase-file", make_passphrase_file(d, "the right passphrase!", "w3")]),
            ("empty passphrase", ["--passphrase-file", make_passphrase_file(d, "", "w4")]),
            ("key file for a passphrase volume", ["--key-file", v.key_file]),
            ("passphrase file missing", ["--passphrase-file", os.path.join(d, "nope")]),
        ]
        for label, ka in cases:
            expect_failure(v, _mount_with(v, *ka), label)
        # only the first line of the passphrase file counts
        p2 = os.path.join(d, "twolines")
        with open(p2, "w") as f:
            f.write("the right passphrase\nsecond line ignored\n")
        r = run_kekfs(*_mount_with(v, "--passphrase-file", p2))
        assert r.returncode == 0, "passphrase file with a second line rejected: %r" % r
        v.daemon_pids = find_daemon_pids(v.mnt)
        v.umount()
        still_works(v, "after wrong passphrases")


def _both_copies(fn):
    """The same damage to each of the file's two copies (the second starts at 4 KiB): one bad
    copy is survived by design (test_keyring_copies), two must be refused."""
    def damage(b):
        n = len(b) - 4096
        return fn(b[:n]) + b[n:4096] + fn(b[4096:])
    return damage


def _damage_cases(size):
    return [
        ("missing", None),
        ("truncated to half of its first copy", lambda b: b[:(len(b) - 4096) // 2]),
        ("truncated to 0 bytes", lambda b: b""),
        ("first byte of both copies flipped", _both_copies(lambda b: bytes([b[0] ^ 0xFF]) + b[1:])),
        ("middle byte of both copies flipped", _both_copies(
            lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0x01]) + b[len(b) // 2 + 1:])),
        ("last byte of both copies flipped", _both_copies(lambda b: b[:-1] + bytes([b[-1] ^ 0x80]))),
    ]


def _damage_file_cases(v, path, what):
    orig = read_file(path)
    assert orig, "%s is empty after init" % path
    for label, fn in _damage_cases(len(orig)):
        label = "%s %s" % (what, label)
        try:
            if fn is None:
                os.rename(path, path + ".away")
            else:
                with open(path, "r+b") as f:
                    f.truncate(0)
                    f.write(fn(orig))
            expect_failure(v, v.mount_argv(), label)
        finally:
            if fn is None:
                if os.path.lexists(path + ".away"):
                    os.rename(path + ".away", path)
            else:
                with open(path, "r+b") as f:
                    f.truncate(0)
                    f.write(orig)
        still_works(v, label)


def test_damaged_keyring():
    with Volume() as v:
        _setup(v)
        _damage_file_cases(v, v.keyring, "keyring")


def test_damaged_volume_config():
    with Volume() as v:
        _setup(v)
        _damage_file_cases(v, v.bpath(".kekfs", "volume"), "volume config")


def test_damaged_outside_keyring():
    with Volume(keyring_outside=True) as v:
        _setup(v)
        expect_failure(v, ["mount", "--key-file", v.key_file, v.backing, v.mnt],
                       "outside-keyring volume mounted without --keyring")
        expect_failure(v, ["mount", "--key-file", v.key_file, "--keyring",
                           os.path.join(v.base, "no-such-keyring"), v.backing, v.mnt],
                       "--keyring pointing to a missing file")
        os.mkdir(os.path.join(v.base, "kdir"))
        expect_failure(v, ["mount", "--key-file", v.key_file, "--keyring",
                           os.path.join(v.base, "kdir"), v.backing, v.mnt],
                       "--keyring pointing to a directory")
        # the keyring of another volume does not open this one
        with Volume(do_mount=False) as other:
            expect_failure(v, ["mount", "--key-file", v.key_file, "--keyring", other.keyring,
                               v.backing, v.mnt], "--keyring of another volume")
            expect_failure(v, ["mount", "--key-file", other.key_file, "--keyring", other.keyring,
                               v.backing, v.mnt], "another volume's keyring and key")
        _damage_file_cases(v, v.keyring, "outside keyring")


def test_not_a_volume():
    with Volume(do_init=False, do_mount=False) as v:
        os.mkdir(v.backing)
        expect_failure(v, v.mount_argv(), "empty dir as backing")
        write_file(os.path.join(v.backing, "plain.txt"), b"hello")
        os.mkdir(os.path.join(v.backing, "somedir"))
        expect_failure(v, v.mount_argv(), "non-empty plain dir as backing")
        os.mkdir(os.path.join(v.backing, ".kekfs"))
        expect_failure(v, v.mount_argv(), "backing with an empty .kekfs dir")
        missing = os.path.join(v.base, "does-not-exist")
        expect_failure(v, _mount_with(v, "--key-file", v.key_file, backing=missing),
                       "backing does not exist", watch=[v.backing, missing])
        f = os.path.join(v.base, "afile")
        write_file(f, b"x")
        expect_failure(v, _mount_with(v, "--key-file", v.key_file, backing=f),
                       "backing is a regular file", watch=[v.backing, f])
        assert not os.path.exists(missing), "failed mount created the backing dir"


def test_bad_mountpoints():
    with Volume() as v:
        _setup(v)
        missing = os.path.join(v.base, "no-such-mnt")
        expect_failure(v, _mount_with(v, "--key-file", v.key_file, mnt=missing),
                       "mount point missing", mountpoint=missing)
        assert not os.path.exists(missing), "failed mount created the mount point"
        afile = os.path.join(v.base, "file-mnt")
        write_file(afile, b"x")
        expect_failure(v, _mount_with(v, "--key-file", v.key_file, mnt=afile),
                       "mount point is a regular file", mountpoint=afile)
        write_file(os.path.join(v.mnt, "occupant"), b"here first")
        expect_failure(v, v.mount_argv(), "mount point not empty")
        assert_eq(read_file(os.path.join(v.mnt, "occupant")), b"here first", "occupant intact")
        os.unlink(os.path.join(v.mnt, "occupant"))
        # already mounted
        v.mount()
        pids = list(v.daemon_pids)
        expect_failure(v, v.mount_argv(), "mount point already mounted (same volume)",
                       allowed_mounts=1)
        with Volume(do_mount=False) as other:
            expect_failure(v, other.mount_argv()[:-1] + [v.mnt],
                           "mount point already mounted (another volume)", allowed_mounts=1,
                           watch=[v.backing, other.backing])
        assert all(pid_alive(p) for p in pids), "first daemon died"
        assert_eq(read_file(v.path("sentinel")), SENTINEL, "first mount still serves data")
        v.umount()
        still_works(v, "after bad mount points")


def test_init_errors():
    with Volume(do_init=False, do_mount=False) as v:
        d = v.base
        # non-empty directory
        os.mkdir(v.backing)
        write_file(os.path.join(v.backing, "existing"), b"keep me")
        expect_failure(v, v.init_argv(), "init into a non-empty dir")
        assert not os.path.exists(os.path.join(v.backing, ".kekfs")), \
            "failed init left .kekfs behind"
        assert_eq(sorted(os.listdir(v.backing)), ["existing"])
        os.unlink(os.path.join(v.backing, "existing"))
        # bad key material / options: nothing created, retry works
        bad_inits = [
            ("init with 31-byte key", ["init", "--key-file", make_key_file(d, os.urandom(31), "s"),
                                       v.backing]),
            ("init with 33-byte key", ["init", "--key-file", make_key_file(d, os.urandom(33), "l"),
                                       v.backing]),
            ("init with missing key file", ["init", "--key-file", os.path.join(d, "nokey"),
                                            v.backing]),
            ("init with key file a directory", ["init", "--key-file", d, v.backing]),
            ("init with unknown cipher", ["init", "--key-file", v.key_file, "--cipher", "rot13",
                                          v.backing]),
            ("init with chunk size 0", ["init", "--key-file", v.key_file, "--chunk-size", "0",
                                        v.backing]),
            ("init with chunk size abc", ["init", "--key-file", v.key_file, "--chunk-size", "abc",
                                          v.backing]),
            ("init with negative chunk size", ["init", "--key-file", v.key_file, "--chunk-size",
                                               "-4096", v.backing]),
            ("init without key", ["init", v.backing]),
        ]
        for label, argv in bad_inits:
            expect_failure(v, argv, label)
            assert_eq(os.listdir(v.backing), [], "%s: left files in backing" % label)
        # init into a path whose parent is a file
        f = os.path.join(d, "plainfile")
        write_file(f, b"x")
        expect_failure(v, ["init", "--key-file", v.key_file, os.path.join(f, "sub")],
                       "init below a regular file", watch=[v.backing, f])
        # a good init now works, in the dir that saw the failures
        v.init()
        v.mount()
        write_file(v.path("sentinel"), SENTINEL)
        os.mkdir(v.path("sub"))
        v.umount()
        # init over an existing volume (same key, other key, passphrase)
        other = make_key_file(d, name="otherkey")
        for label, argv in [
                ("init over existing volume (same key)", v.init_argv()),
                ("init over existing volume (other key)", ["init", "--key-file", other, v.backing]),
                ("init over existing volume (passphrase)",
                 ["init", "--passphrase-file", make_passphrase_file(d, "pw"), v.backing])]:
            expect_failure(v, argv, label)
            still_works(v, label)
        # init while mounted, into the mount point itself (non-empty, FUSE)
        v.mount()
        expect_failure(v, ["init", "--key-file", other, v.mnt], "init into a mounted kekfs",
                       allowed_mounts=1, watch=[v.backing])
        v.umount()
        still_works(v, "after init errors")


def test_errors_do_not_leave_daemons():
    """A burst of failing mounts leaves no kekfs process behind."""
    with Volume() as v:
        _setup(v)
        bad = make_key_file(v.base, name="bad")
        for i in range(5):
            r = run_kekfs(*_mount_with(v, "--key-file", bad))
            assert r.returncode != 0
        assert wait_for(lambda: not find_daemon_pids(v.mnt), 3), find_daemon_pids(v.mnt)
        assert not is_mounted(v.mnt)
        still_works(v, "after burst")


# Every subcommand's getopt path, and the operand checks of those that exit 1 before.
USAGE_ERRORS = (
    ("init", "--bogus"), ("init",), ("init", "a", "b"), ("init", "--cipher"),
    ("init", "--cipher", "rot13", "x"), ("init", "--chunk-size", "3", "x"),
    ("mount", "--bogus"), ("umount", "--bogus"), ("path", "--bogus"),
    ("rotate", "--bogus"), ("rotate", "--data", "--bogus"), ("rotate", "--data"),
    ("status", "--bogus"), ("keys", "--bogus"), ("keys", "list", "--bogus"),
    ("keys", "add-slot", "--bogus"), ("shred", "--bogus"), ("shred",),
    ("shred", "--seal", "a", "b"), ("audit", "--bogus"), ("audit", "verify", "--bogus"),
    ("fsck", "--bogus"), ("fsck",), ("init", "--recovery-key"), ("keys", "backup"),
    ("keys", "backup", "f"), ("keys", "restore", "f"),
)


def test_usage_errors_exit_2_with_one_line():
    """A usage error (unknown option, missing value, bad value, wrong operands) of any
    subcommand exits 2 with one line "kekfs: ..." naming what is wrong, as the man page says;
    never getopt's own bare "init:" line (init, shred and rotate --data exited 1 before)."""
    for argv in USAGE_ERRORS:
        r = run_kekfs(*argv)
        assert_eq(r.returncode, 2, "exit status of kekfs %s" % " ".join(argv))
        lines = r.stderr.decode(errors="replace").splitlines()
        assert len(lines) == 1 and lines[0].startswith("kekfs: "), (argv, lines)
        assert lines[0] != "kekfs: ", (argv, lines)
