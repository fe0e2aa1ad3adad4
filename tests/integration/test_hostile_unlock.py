"""Issue 14, attacks 3 and 6: someone who can write only the backing directory.

Attack 3: a keyring forged with only a KMS-plugin or PKCS#11 slot, swapped into .kekfs/, must
not make an ordinary mount run its program or load its module (both happen before any MAC can
be checked); naming the plugin (--kms-unlock=PROGRAM, -o kms=PROGRAM) keeps the genuine flow.
Attack 6: an old copy of .kekfs/ (keyring and config) put back, with the old backing file of a
file shredded and sealed since, is refused by the generation this host recorded outside the
backing directory; --allow-rollback accepts it, says what it re-opens and audits it."""

import json
import os
import pwd
import shutil
import subprocess

from kekfs_harness import (Volume, make_tempdir, run_kekfs, write_file, read_file, assert_eq,
                           is_mounted, wait_mounted, find_daemon_pids, require_tools,
                           kekfs_bin_copy, HOST_STATE_DIR)
from test_fsck import xxh64
from test_rotation import wait_rewrap_finished

TOY_PLUGIN = """#!/bin/sh
case $1 in
wrap) read -r k; printf 'toy:%s\\n' "$k" | rev ;;
unwrap) cat | rev | sed 's/^toy://' ;;
esac
"""
EVIL_SO = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void loaded(void)
{
	int fd = open("%s", O_WRONLY | O_CREAT, 0600);
	if (fd >= 0)
		close(fd);
}
"""


def state_file(v):
    return os.path.join(HOST_STATE_DIR, v.volume_id.hex())


def forge_keyring(vid, slot_type, spec):
    """A keyring an attacker writes: one token or KMS slot with this spec, one KEK, a MAC of
    random bytes (never checked before the slot is used) and a valid checksum."""
    spec = spec.encode()
    blob = b"\x01" + os.urandom(60)  # PKCS#11: mechanism 1 (AES-GCM), IV, sealed key
    tail = len(spec).to_bytes(2, "little") + spec + len(blob).to_bytes(2, "little") + blob
    head = (b"KEKFSKR1" + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") +
            (1).to_bytes(2, "little") + bytes(2) + vid + (1).to_bytes(8, "little") + bytes(8))
    slot = (bytes([slot_type, 0, 0, 0]) + len(tail).to_bytes(4, "little") + bytes(16) +
            os.urandom(16) + os.urandom(72) + bytes(16))
    kek = (1).to_bytes(4, "little") + b"\x01" + bytes(3) + bytes(8) + os.urandom(72) + bytes(8)
    body = head + slot + tail + kek + os.urandom(32)
    return body + xxh64(body).to_bytes(8, "little")


def plugin(base, name, text):
    path = os.path.join(base, name)
    write_file(path, text.encode(), 0o755)
    return path


def one_line_failure(r, mnt, what):
    assert r.returncode != 0, "%s succeeded: %r" % (what, r)
    lines = r.err_lines()
    assert len(lines) == 1 and lines[0].startswith("kekfs: "), "%s: want one line: %r" % (what, r)
    assert not is_mounted(mnt), "%s: mounted anyway" % what
    return lines[0]


def swap_in(v, forged):
    with open(v.keyring, "wb") as f:
        f.write(forged)


def test_forged_kms_slot_runs_nothing_without_being_asked():
    """The exact attack: a keyring whose only slot is a KMS plugin that writes a marker. A
    plain mount, its helper form and an offline command run nothing; --kms-unlock naming
    another program runs nothing either."""
    base = make_tempdir("hostile")
    marker = os.path.join(base, "ran-as-root")
    evil = plugin(base, "evil", "#!/bin/sh\ntouch %s\nexit 1\n" % marker)
    with Volume(do_mount=False) as v:
        swap_in(v, forge_keyring(v.volume_id, 5, evil))
        r = run_kekfs("mount", v.backing, v.mnt, stdin=subprocess.DEVNULL)
        line = one_line_failure(r, v.mnt, "plain mount")
        assert not os.path.exists(marker), "the keyring's KMS command ran: %s" % line
        assert "--kms-unlock=PROGRAM" in line and "-o kms=PROGRAM" in line, line
        r = run_kekfs(v.backing, os.path.abspath(v.mnt), "-o", "nosuid",
                      stdin=subprocess.DEVNULL)  # as mount.fuse3 runs the helper
        one_line_failure(r, v.mnt, "mount helper")
        r = run_kekfs("keys", "list", v.backing, stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and len(r.err_lines()) == 1, r
        genuine = plugin(base, "kekfs-kms-genuine", TOY_PLUGIN)
        r = run_kekfs("mount", "--kms-unlock=" + genuine, v.backing, v.mnt)
        line = one_line_failure(r, v.mnt, "mount --kms-unlock=other")
        assert "names a plugin other than " + genuine in line, line
        r = run_kekfs("mount", "-o", "kms=" + genuine, v.backing, v.mnt)
        one_line_failure(r, v.mnt, "mount -o kms=other")
        assert not os.path.exists(marker), "the keyring's KMS command ran"
        r = run_kekfs("mount", "--kms-unlock=kekfs-kms-genuine", v.backing, v.mnt)
        assert r.returncode != 0 and b"absolute path" in r.stderr, r


def test_forged_pkcs11_slot_loads_no_module_without_being_asked():
    """A keyring whose only slot is a PKCS#11 token naming a module that writes a marker when
    loaded: a plain mount with the PIN at hand (a systemd credential) does not load it."""
    require_tools("gcc")
    base = make_tempdir("hostile")
    marker = os.path.join(base, "module-loaded")
    src, so = os.path.join(base, "evil.c"), os.path.join(base, "evil.so")
    write_file(src, (EVIL_SO % marker).encode())
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", so, src], check=True, timeout=120)
    creds = os.path.join(base, "creds")
    os.mkdir(creds, 0o700)
    write_file(os.path.join(creds, "kekfs.pin"), b"1234\n", 0o600)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)
    with Volume(do_mount=False) as v:
        swap_in(v, forge_keyring(v.volume_id, 4, "module=%s;token=t;key=k" % so))
        r = run_kekfs("mount", v.backing, v.mnt, env=env, stdin=subprocess.DEVNULL)
        line = one_line_failure(r, v.mnt, "plain mount")
        assert not os.path.exists(marker), "the keyring's PKCS#11 module was loaded: " + line
        assert "--pkcs11-unlock=MODULE" in line and "-o pkcs11=MODULE" in line, line
        r = run_kekfs("mount", "-o", "pkcs11=/usr/lib/softhsm/libsofthsm2.so", v.backing,
                      v.mnt, env=env)
        line = one_line_failure(r, v.mnt, "mount -o pkcs11=other")
        assert "names a PKCS#11 module other than" in line, line
        assert not os.path.exists(marker), "the keyring's PKCS#11 module was loaded"


def test_named_kms_plugin_still_unlocks():
    """The genuine flow: a KMS-only volume mounts with --kms-unlock=PROGRAM, with the mount
    helper's -o kms=PROGRAM, and with the bare --kms-unlock (trusting the slot's program)."""
    base = make_tempdir("hostile")
    toy = plugin(base, "kekfs-kms-toy", TOY_PLUGIN)
    with Volume(do_mount=False) as v:
        assert_eq(run_kekfs("keys", "add-slot", "--kms-command", toy, *v.key_args(),
                            v.backing).returncode, 0, "add-slot")
        r = run_kekfs("keys", "remove-slot", "1", "--kms-unlock=" + toy, v.backing)
        assert_eq(r.returncode, 0, "remove-slot with --kms-unlock=PROGRAM: %r" % r)
        for argv in (["mount", "--kms-unlock=" + toy, v.backing, v.mnt],
                     [v.backing, os.path.abspath(v.mnt), "-o", "kms=" + toy],
                     ["mount", "--kms-unlock", v.backing, v.mnt]):
            r = run_kekfs(*argv)
            assert_eq(r.returncode, 0, "%s: %r" % (argv, r))
            assert wait_mounted(v.mnt), "not mounted: %s" % argv
            v.daemon_pids = find_daemon_pids(v.mnt)
            write_file(v.path("f"), b"kms")
            assert_eq(read_file(v.path("f")), b"kms", "read back")
            v.umount()


def recorded(v):
    """The generation this host recorded for v, 0 if none."""
    try:
        with open(state_file(v)) as f:
            return int(f.read())
    except FileNotFoundError:
        return 0


def audit_ops(v):
    with open(v.bpath(".kekfs", "audit.log")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_restored_kekfs_dir_cannot_undo_a_seal():
    """init, keep .kekfs/, rotate, shred --seal a file (keeping its backing file), put back the
    old .kekfs/ and the old backing file: the mount is refused naming both generations; with
    --allow-rollback it mounts, says what it re-opens (the file reads again) and audits it."""
    with Volume() as v:
        write_file(v.path("keep"), b"kept")
        write_file(v.path("secret"), b"shredded contents" * 100)
        v.umount()
        old_dir, old_file = os.path.join(v.base, "old.kekfs"), os.path.join(v.base, "old")
        shutil.copytree(v.bpath(".kekfs"), old_dir)
        secret_backing = v.backing_path("secret")
        shutil.copyfile(secret_backing, old_file)
        v.mount()
        assert_eq(run_kekfs("rotate", v.mnt).returncode, 0, "rotate")
        wait_rewrap_finished(v)
        assert_eq(run_kekfs("shred", v.path("secret")).returncode, 0, "shred")
        r = run_kekfs("shred", "--seal", v.mnt)
        assert_eq(r.returncode, 0, "seal: %r" % r)
        seal_out = r.stdout.decode()
        v.umount()
        seen = recorded(v)
        shutil.rmtree(v.bpath(".kekfs"))
        shutil.copytree(old_dir, v.bpath(".kekfs"))
        shutil.copyfile(old_file, secret_backing)
        r = run_kekfs("mount", *v.key_args(), v.backing, v.mnt)
        line = one_line_failure(r, v.mnt, "mount with the old .kekfs/")
        assert seen > 1, "host state after the seal: %d" % seen
        assert "generation 1" in line and "generation %d" % seen in line, line
        assert "--allow-rollback" in line, line
        r = run_kekfs("mount", "--allow-rollback", *v.key_args(), v.backing, v.mnt)
        assert_eq(r.returncode, 0, "mount --allow-rollback: %r" % r)
        assert wait_mounted(v.mnt)
        v.daemon_pids = find_daemon_pids(v.mnt)
        err = r.stderr.decode()
        assert "shredded and sealed" in err and "destroyed" in err, err
        assert_eq(read_file(v.path("secret")), b"shredded contents" * 100, "re-opened")
        ops = [e for e in audit_ops(v) if e["op"] == "rollback"]
        assert len(ops) == 1 and "--allow-rollback" in ops[0]["detail"], ops
        assert_eq(recorded(v), 1, "the override records the generation it accepted")
        v.umount()
        v.mount()  # accepted once: the next mount needs no override
        assert "inside the backing directory" in seal_out, seal_out
        assert "recorded keyring generation %d in %s" % (seen, HOST_STATE_DIR) in seal_out, \
            seal_out


def test_offline_commands_and_outside_keyring_are_checked_too():
    """An offline command refuses the old keyring as mount does; a keyring kept outside the
    backing directory is checked the same way, and the seal says where it is."""
    with Volume(do_mount=False, keyring_outside=True) as v:
        config = v.bpath(".kekfs", "volume")
        shutil.copyfile(v.keyring, v.keyring + ".old")
        shutil.copyfile(config, config + ".old")
        assert_eq(run_kekfs("rotate", *v.key_args(), v.backing).returncode, 0, "rotate")
        r = run_kekfs("shred", "--seal", *v.key_args(), v.backing)
        assert_eq(r.returncode, 0, "offline seal: %r" % r)
        seal_out = r.stdout.decode()
        shutil.copyfile(v.keyring + ".old", v.keyring)
        shutil.copyfile(config + ".old", config)
        r = run_kekfs("keys", "list", *v.key_args(), v.backing)
        assert r.returncode != 0 and len(r.err_lines()) == 1, r
        line = r.err_lines()[0]
        assert "older (generation 1) than this host has seen" in line, line
        assert "outside the backing directory (%s)" % v.keyring in seal_out, seal_out


def test_a_host_without_state_cannot_tell():
    """The limit THREAT-MODEL.md names: with this host's state gone (a new host, a wiped
    /var/lib), an old .kekfs/ put back together with its config mounts."""
    with Volume(do_mount=False) as v:
        old = os.path.join(v.base, "old.kekfs")
        shutil.copytree(v.bpath(".kekfs"), old)
        assert_eq(run_kekfs("rotate", *v.key_args(), v.backing).returncode, 0, "rotate")
        shutil.rmtree(v.bpath(".kekfs"))
        shutil.copytree(old, v.bpath(".kekfs"))
        if os.path.exists(state_file(v)):  # this host forgets the volume
            os.unlink(state_file(v))
        v.mount()


def test_user_state_directory_is_the_users_own():
    """A user other than root keeps its generations in ~/.local/state/kekfs (0700, its own),
    or in $XDG_STATE_HOME/kekfs; an old keyring is refused there too, and a state directory
    others could write, or a symlink in its place, refuses the unlock in one line."""
    require_tools("useradd", "userdel", "runuser")
    name = "unlock" + os.urandom(3).hex()
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, timeout=60)
    try:
        user = pwd.getpwnam(name)
        home = user.pw_dir

        def as_user(*argv, xdg=None):
            env = ["env", "-i", "HOME=" + home, "PATH=/usr/bin:/bin"]
            env += ["XDG_STATE_HOME=" + xdg] if xdg else []
            return subprocess.run(["runuser", "-u", name, "--"] + env + list(argv),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)

        def kekfs(*args, xdg=None):
            return as_user(kekfs_bin_copy(home), *args, xdg=xdg)

        key, backing = os.path.join(home, "key"), os.path.join(home, "b")
        write_file(key, os.urandom(32), 0o600)
        os.chown(key, user.pw_uid, user.pw_gid)
        assert_eq(kekfs("init", "--key-file", key, backing).returncode, 0, "init as the user")
        state = os.path.join(home, ".local", "state", "kekfs")
        st = os.stat(state)
        assert_eq((st.st_uid, st.st_mode & 0o777), (user.pw_uid, 0o700), "state directory")
        assert_eq(as_user("cp", "-a", backing + "/.kekfs", home + "/old").returncode, 0, "cp")
        assert_eq(kekfs("rotate", "--key-file", key, backing).returncode, 0, "rotate")
        (vid,) = os.listdir(state)
        assert_eq(open(os.path.join(state, vid)).read(), "2\n", "recorded generation")
        as_user("rm", "-rf", backing + "/.kekfs")
        assert_eq(as_user("cp", "-a", home + "/old", backing + "/.kekfs").returncode, 0, "cp")
        r = kekfs("keys", "list", "--key-file", key, backing)
        assert r.returncode != 0 and b"than this host has seen (generation 2)" in r.stderr, r
        os.chmod(state, 0o755)
        r = kekfs("keys", "list", "--key-file", key, backing)
        lines = r.stderr.decode().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and "mode 0700" in lines[0], r
        os.chmod(state, 0o700)
        xdg = os.path.join(home, "xdg")
        r = kekfs("keys", "list", "--key-file", key, backing, xdg=xdg)
        assert_eq(r.returncode, 0, "a state directory that never saw the volume: %r" % r)
        assert os.listdir(os.path.join(xdg, "kekfs")) == [vid], "not in $XDG_STATE_HOME/kekfs"
        as_user("rm", "-rf", xdg + "/kekfs")
        as_user("ln", "-s", state, xdg + "/kekfs")
        r = kekfs("keys", "list", "--key-file", key, backing, xdg=xdg)
        assert r.returncode != 0 and b"not a symlink" in r.stderr, r
    finally:
        subprocess.run(["userdel", "-r", name], timeout=60, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
