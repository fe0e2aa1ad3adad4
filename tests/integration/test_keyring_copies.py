"""The keyring and the volume config survive a damaged byte or sector (issue 15): each file
holds two copies, 4 KiB apart; the good copy is used, fsck reports the bad one, and a
read-write mount rewrites it. `kekfs keys backup` / `restore` bring a lost keyring back, with
rules about generations, and `kekfs init --recovery-key` adds a recovery key-file slot."""

import errno
import os
import re

from kekfs_harness import (Volume, run_kekfs, write_file, read_file, assert_eq, pattern,
                           make_tempdir, make_key_file, kekfs_bin, wait_for, force_unmount,
                           find_daemon_pids)
from test_audit import records
from test_fsck import flip
from test_prompt import run_on_tty
from test_rotation import kekfs_ok, wait_rewrap_finished

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

DATA = pattern(10000, 7)


def fsck(v, *extra):
    return run_kekfs("fsck", *(v.key_args() + list(extra) + [v.backing]), timeout=120)


def output(r):
    return r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


def zero_sector(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\0" * 4096)


# Where copy 2 starts: the first 4 KiB block past copy 1 (both files are smaller than that).
COPY2 = 4096

DAMAGE = [
    ("a byte of copy 1 flipped", 1, lambda p: flip(p, 60)),
    ("a byte of copy 2 flipped", 2, lambda p: flip(p, COPY2 + 60)),
    ("the sector of copy 1 zeroed", 1, lambda p: zero_sector(p, 0)),
    ("the sector of copy 2 zeroed", 2, lambda p: zero_sector(p, COPY2)),
]


def _damage_round(v, path, what, label, copy, damage):
    """One damage: fsck names the bad copy and writes nothing, a mount works and reads the
    data, and leaves the file as it was before the damage; fsck is then clean."""
    before = read_file(path)
    if copy == 2:
        assert len(before) > COPY2 and before[COPY2:COPY2 + 8] in (b"KEKFSKR1", b"KEKFSVOL"), \
            "%s has no second copy at 4 KiB (%d bytes)" % (what, len(before))
    damage(path)
    damaged = read_file(path)
    r = fsck(v)
    assert_eq(r.returncode, 1, "%s, %s: fsck exit status (%s)" % (what, label, output(r)))
    assert "copy %d of the %s is damaged" % (copy, what) in output(r), output(r)
    assert_eq(read_file(path), damaged, "%s after fsck without --repair" % what)
    v.mount()
    try:
        assert_eq(read_file(v.path("f")), DATA, "%s, %s: data" % (what, label))
    finally:
        v.umount()
    assert_eq(read_file(path), before, "%s, %s: rewritten by the mount" % (what, label))
    r = fsck(v)
    assert_eq(r.returncode, 0, "%s, %s: fsck after the mount (%s)" % (what, label, output(r)))


def _damage_all(keyring_outside=False):
    with Volume(keyring_outside=keyring_outside) as v:
        write_file(v.path("f"), DATA)
        v.umount()
        for path, what in ((v.keyring, "keyring"), (v.bpath(".kekfs", "volume"),
                                                     "volume config")):
            for label, copy, damage in DAMAGE:
                _damage_round(v, path, what, label, copy, damage)


def test_one_damaged_copy_of_keyring_or_config_is_survived():
    _damage_all()


def test_one_damaged_copy_of_an_outside_keyring_is_survived():
    _damage_all(keyring_outside=True)


def test_fsck_repair_rewrites_the_bad_copy():
    """fsck --repair rewrites the bad copy and says so: the problem counts as repaired."""
    with Volume() as v:
        write_file(v.path("f"), DATA)
        v.umount()
        before = read_file(v.keyring)
        flip(v.keyring, 4096 + 100)
        r = fsck(v, "--repair")
        assert_eq(r.returncode, 0, "fsck --repair (%s)" % output(r))
        assert "copy 2 of the keyring is damaged; copy 1 is good (repaired)" in output(r), \
            output(r)
        assert_eq(read_file(v.keyring), before, "keyring after fsck --repair")


def test_both_copies_damaged_is_one_clear_error():
    with Volume() as v:
        v.umount()
        for path, what in ((v.keyring, "keyring"), (v.bpath(".kekfs", "volume"),
                                                     "volume config")):
            before = read_file(path)
            flip(path, 60)
            flip(path, 4096 + 60)
            r = run_kekfs(*v.mount_argv())
            lines = r.stderr.decode().strip().splitlines()
            assert r.returncode != 0 and len(lines) == 1, "mount with both copies bad: %r" % r
            assert "damaged or truncated" in lines[0], lines
            with open(path, "wb") as f:
                f.write(before)


def test_volume_of_one_copy_opens_and_gains_the_second():
    """A volume written before there were two copies (one copy, no padding) still opens, is
    not reported as damaged, and gains copy 2 at its next save."""
    with Volume() as v:
        write_file(v.path("f"), DATA)
        v.umount()
        kr, vol = read_file(v.keyring), read_file(v.bpath(".kekfs", "volume"))
        n = len(kr) - 4096
        assert kr[:n] == kr[4096:], "the two keyring copies differ"
        write_file(v.keyring, kr[:n], 0o600)
        write_file(v.bpath(".kekfs", "volume"), vol[:256], 0o600)
        r = fsck(v)
        assert_eq(r.returncode, 0, "fsck of a one-copy volume (%s)" % output(r))
        v.mount()
        assert_eq(read_file(v.path("f")), DATA, "data of a one-copy volume")
        r = run_kekfs("rotate", v.mnt)
        assert_eq(r.returncode, 0, "rotate: %r" % r)
        v.umount()
        kr = read_file(v.keyring)
        n = len(kr) - 4096
        assert n > 0 and kr[:n] == kr[4096:], "keyring has no second copy after a save"


def backup(v, path, target=None):
    return run_kekfs("keys", "backup", path, *(v.key_args() + [target or v.backing]))


def restore(v, path, *extra):
    return run_kekfs("keys", "restore", path, *(v.key_args() + list(extra) + [v.backing]))


def restores_logged(v):
    return [rec for rec in records(v) if rec.get("op") == "keyring-restore"]


def test_backup_brings_back_a_lost_keyring():
    """keys backup (online, from the mount point), the keyring lost, keys restore: the volume
    mounts and reads, the restore is in the audit log, and the chain still verifies."""
    with Volume() as v:
        write_file(v.path("f"), DATA)
        copy = os.path.join(v.base, "keyring.backup")
        r = backup(v, copy, v.mnt)
        assert_eq(r.returncode, 0, "keys backup: %s" % output(r))
        assert_eq(os.stat(copy).st_mode & 0o777, 0o600, "mode of the backup")
        r = backup(v, copy, v.mnt)
        assert r.returncode != 0 and "exists" in output(r), "backup over a file: %r" % r
        r = restore(v, copy)
        assert r.returncode != 0 and "unmount it first" in output(r), \
            "restore while mounted: %s" % output(r)
        v.umount()
        os.unlink(v.keyring)
        r = run_kekfs(*v.mount_argv())
        assert r.returncode != 0, "mount without a keyring"
        r = restore(v, copy)
        assert_eq(r.returncode, 0, "keys restore: %s" % output(r))
        assert "0 files cannot be opened" in output(r), output(r)
        assert_eq(len(restores_logged(v)), 1, "keyring-restore events in the audit log")
        v.mount()
        assert_eq(read_file(v.path("f")), DATA, "data after the restore")
        kekfs_ok("audit", "verify", v.mnt)


def test_restoring_an_older_backup_needs_older_and_counts_what_it_cannot_open():
    """A backup from before a rotation and a seal: refused without --older, with the count of
    files it cannot open; with --older it restores, and exactly that many files fail to open
    while the others read as before."""
    with Volume() as v:
        write_file(v.path("f"), DATA)
        copy = os.path.join(v.base, "keyring.backup")
        assert_eq(backup(v, copy, v.mnt).returncode, 0, "keys backup")
        kekfs_ok("rotate", v.mnt)
        wait_rewrap_finished(v)
        kekfs_ok("shred", "--seal", v.mnt)
        later = {"g%d" % i: pattern(5000 + i, 30 + i) for i in range(3)}
        for name, data in later.items():
            write_file(v.path(name), data)
        v.umount()
        before = read_file(v.keyring)
        r = restore(v, copy)
        assert r.returncode != 0 and "--older" in output(r), "older restore: %s" % output(r)
        m = re.search(r"(\d+) files? cannot be opened with it", output(r))
        assert m, output(r)
        assert_eq(read_file(v.keyring), before, "keyring after a refused restore")
        assert_eq(restores_logged(v), [], "audit log after a refused restore")
        r = restore(v, copy, "--older")
        assert_eq(r.returncode, 0, "restore --older: %s" % output(r))
        assert "%s file" % m.group(1) in output(r), output(r)
        assert_eq(len(restores_logged(v)), 1, "keyring-restore events in the audit log")
        v.mount()  # the restored keyring is saved past every generation: no rollback refusal
        unreadable = 0
        for name, data in [("f", DATA)] + sorted(later.items()):
            try:
                assert_eq(read_file(v.path(name)), data, name)
            except OSError as e:
                assert_eq(e.errno, errno.EIO, "error reading %s" % name)
                unreadable += 1
        assert_eq(unreadable, int(m.group(1)), "files the restored keyring cannot open")
        assert unreadable > 0, "the seal left files the old backup opens"


def test_restore_refuses_a_damaged_or_foreign_backup():
    with Volume() as v, Volume() as other:
        v.umount()
        copy = os.path.join(v.base, "keyring.backup")
        assert_eq(backup(v, copy).returncode, 0, "keys backup")
        data = read_file(copy)
        flip(copy, len(data) // 2)
        r = restore(v, copy)
        assert r.returncode != 0 and "damaged" in output(r), "damaged backup: %s" % output(r)
        assert_eq(len(output(r).strip().splitlines()), 1, "one line: %s" % output(r))
        other.umount()
        theirs = os.path.join(other.base, "keyring.backup")
        assert_eq(backup(other, theirs).returncode, 0, "keys backup of the other volume")
        r = run_kekfs("keys", "restore", theirs, *(other.key_args() + [v.backing]))
        assert r.returncode != 0 and "another volume" in output(r), \
            "foreign backup: %s" % output(r)
        r = run_kekfs("keys", "restore", copy[:-1] + "missing", *(v.key_args() + [v.backing]))
        assert r.returncode != 0 and "cannot read the backup" in output(r), output(r)


def test_init_recovery_key_file_unlocks():
    """init --recovery-key FILE writes a new 0600 key file that mounts the volume; init
    refuses a FILE that exists, before it creates anything."""
    base = make_tempdir("recovery")
    backing, mnt, rk = (os.path.join(base, n) for n in ("b", "m", "recovery.key"))
    os.mkdir(mnt)
    key = make_key_file(base)
    try:
        r = run_kekfs("init", "--key-file", key, "--recovery-key", rk, backing)
        assert_eq(r.returncode, 0, "init --recovery-key: %s" % output(r))
        assert_eq(os.stat(rk).st_mode & 0o777, 0o600, "mode of the recovery key")
        assert_eq(len(read_file(rk)), 32, "size of the recovery key")
        assert read_file(rk) != read_file(key), "the recovery key is the unlock key"
        r = run_kekfs("mount", "--key-file", rk, backing, mnt)
        assert_eq(r.returncode, 0, "mount with the recovery key: %s" % output(r))
        assert wait_for(lambda: os.path.ismount(mnt), 10), "not mounted"
        write_file(os.path.join(mnt, "f"), DATA)
        assert_eq(run_kekfs("umount", mnt).returncode, 0, "umount")
        r = run_kekfs("init", "--key-file", key, "--recovery-key", rk,
                      os.path.join(base, "b2"))
        assert r.returncode != 0 and "exists" in output(r), "over a recovery key: %r" % r
        assert not os.path.exists(os.path.join(base, "b2")), "a refused init left a volume"
    finally:
        force_unmount(mnt, find_daemon_pids(mnt))


def test_init_recovery_key_on_a_terminal_is_shown_once_and_typed_back():
    """init --recovery-key - shows the key on the terminal, once; typed back at mount's
    passphrase prompt, it mounts. Off a terminal, init refuses before it creates anything."""
    base = make_tempdir("recovery")
    backing, mnt = os.path.join(base, "b"), os.path.join(base, "m")
    os.mkdir(mnt)
    key = make_key_file(base)
    r = run_kekfs("init", "--key-file", key, "--recovery-key", "-", backing)
    assert r.returncode != 0 and "not one" in output(r), "off a terminal: %s" % output(r)
    assert not os.path.exists(backing), "a refused init left a volume"
    rc, screen = run_on_tty([kekfs_bin(), "init", "--key-file", key, "--recovery-key", "-",
                             backing], [])
    assert_eq(rc, 0, "init --recovery-key - on a terminal: %r" % screen)
    found = re.findall(rb"\b[0-9a-f]{8}(?:-[0-9a-f]{8}){7}\b", screen)
    assert_eq(len(found), 1, "the recovery key shown once: %r" % screen)
    try:
        rc, screen = run_on_tty([kekfs_bin(), "mount", backing, mnt], ["0" * 71])
        assert rc != 0, "a wrong recovery key mounted: %r" % screen
        rc, screen = run_on_tty([kekfs_bin(), "mount", backing, mnt], [found[0].decode()])
        assert_eq(rc, 0, "mount with the typed recovery key: %r" % screen)
        assert wait_for(lambda: os.path.ismount(mnt), 10), "not mounted"
        assert found[0] not in screen, "the recovery key was echoed at the prompt"
    finally:
        force_unmount(mnt, find_daemon_pids(mnt))
