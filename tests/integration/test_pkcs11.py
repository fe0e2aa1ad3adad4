"""PKCS#11 unlock slots against a real SoftHSM2 token made in a temporary directory: the key
created in the token, a volume whose only slot is the token (mount, online rotation, shred
and seal), the PIN from a file, a credential or mount -o, and one clear line for each
mistake: module not found, token absent, wrong PIN, key missing, key extractable."""

import json
import os
import subprocess

from kekfs_harness import (Volume, make_tempdir, run_kekfs, write_file, read_file, assert_eq,
                           wait_mounted, find_daemon_pids, is_mounted, require_tools)
from test_rotation import wait_rewrap_finished

PIN = "4711-kekfs"
MODULES = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]


class Token(object):
    """A SoftHSM2 token in its own directory; env is what kekfs needs to see it."""

    def __init__(self, label="kekfs-it"):
        require_tools("softhsm2-util", "pkcs11-tool")
        self.module = next((m for m in MODULES if os.path.exists(m)), None)
        assert self.module, "libsofthsm2.so not found (tools/install-deps.sh installs softhsm2)"
        self.dir = make_tempdir("hsm")
        os.mkdir(os.path.join(self.dir, "tokens"))
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % self.dir)
        self.env = dict(os.environ, SOFTHSM2_CONF=self.conf)
        self.label = label
        self.tool("softhsm2-util", "--init-token", "--free", "--label", label,
                  "--so-pin", "so-" + PIN, "--pin", PIN)
        self.pin_file = os.path.join(self.dir, "pin")
        write_file(self.pin_file, (PIN + "\n").encode(), 0o600)

    def tool(self, *argv):
        r = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        assert_eq(r.returncode, 0, "%s: %s" % (argv[0], r.stdout.decode()[-500:]))
        return r.stdout.decode()

    def p11tool(self, *args):
        return self.tool("pkcs11-tool", "--module", self.module, "--token-label", self.label,
                         "--login", "--pin", PIN, *args)

    def spec(self, key="kekfs-root", token=None, module=None):
        return "module=%s;token=%s;key=%s" % (module or self.module, token or self.label, key)

    def kekfs(self, *args, env=None):
        return run_kekfs(*args, env=env or self.env)

    def ok(self, *args, env=None):
        r = self.kekfs(*args, env=env)
        assert_eq(r.returncode, 0, "kekfs %s: %r" % (" ".join(args), r))
        return r.stdout.decode()

    def fails(self, *args, env=None):
        r = self.kekfs(*args, env=env)
        assert r.returncode != 0, "kekfs %s succeeded: %r" % (" ".join(args), r)
        lines = r.err_lines()
        assert len(lines) == 1 and lines[0].startswith("kekfs: "), "want one line: %r" % r
        return lines[0]


def kr_copies(path):
    """Offsets of the keyring file's two copies: 0, and the 4 KiB block where copy 2 starts."""
    b = read_file(path)
    return [0] + [o for o in range(4096, len(b), 4096) if b[o:o + 8] == b"KEKFSKR1"][:1]


def token_only_volume(t, v):
    """Adds a token slot to the unmounted volume v, then removes its key-file slot."""
    t.ok("keys", "create-token-key", "--pkcs11", t.spec(), "--pin-file", t.pin_file)
    out = t.ok("keys", "add-slot", "--pkcs11", t.spec(), "--pin-file", t.pin_file,
               *v.key_args(), v.backing)
    assert "2 unlock slots" in out, out
    t.ok("keys", "remove-slot", "1", "--pin-file", t.pin_file, v.backing)
    out = t.ok("keys", "slots", "--pin-file", t.pin_file, v.backing)
    assert_eq(out.strip(), "slot 1: PKCS#11 token key: " + t.spec(), "slots of a token volume")


def mount_with(t, v, *args):
    r = t.kekfs("mount", *args, v.backing, v.mnt)
    assert_eq(r.returncode, 0, "mount: %r" % r)
    assert wait_mounted(v.mnt), "not mounted"
    v.daemon_pids = find_daemon_pids(v.mnt)


def test_token_only_volume_mounts_rotates_and_shreds():
    t = Token()
    with Volume(do_mount=False) as v:
        token_only_volume(t, v)
        msg = t.fails("keys", "list", *v.key_args(), v.backing)
        assert "no unlock slot of that kind; it has: PKCS#11 token key" in msg, msg
        mount_with(t, v, "--pin-file", t.pin_file)
        write_file(v.path("keep"), b"kept through rotation")
        write_file(v.path("gone"), b"shredded")
        t.ok("rotate", v.mnt)
        status = wait_rewrap_finished(v)
        assert "KEK v2: active" in status, status
        t.ok("shred", v.path("gone"))
        assert not os.path.exists(v.path("gone")), "shredded file still listed"
        out = t.ok("shred", "--seal", v.mnt)
        assert "Every unlock slot is a key in a PKCS#11 token" in out, out
        v.umount()
        # passwd moves the slot to another key of the token; the old key no longer matters
        t.ok("keys", "create-token-key", "--pkcs11", t.spec("second"), "--pin-file", t.pin_file)
        t.ok("keys", "passwd", "--pkcs11", t.spec("second"), "--pin-file", t.pin_file,
             v.backing)
        t.p11tool("--delete-object", "--type", "secrkey", "--label", "kekfs-root")
        # as mount.fuse3 runs the helper for an fstab line: kekfs SOURCE MOUNTPOINT -o OPTS
        r = t.kekfs(v.backing, os.path.abspath(v.mnt), "-o", "pkcs11,pinfile=" + t.pin_file)
        assert_eq(r.returncode, 0, "mount helper: %r" % r)
        assert wait_mounted(v.mnt), "not mounted by the helper"
        v.daemon_pids = find_daemon_pids(v.mnt)
        assert_eq(read_file(v.path("keep")), b"kept through rotation", "after remount")
        v.umount()
        with open(v.bpath(".kekfs", "audit.log")) as f:
            log = [json.loads(l) for l in f]
        added = [e for e in log if e["op"] == "add-slot"]
        assert_eq([e["detail"] for e in added], ["PKCS#11 token key"], "add-slot audit")
        assert_eq([e["detail"] for e in log if e["op"] in ("remove-slot", "passwd")],
                  ["key file", "PKCS#11 token key"], "remove-slot and passwd audit")
        assert PIN not in open(v.bpath(".kekfs", "audit.log")).read(), "PIN in the audit log"


def test_pin_from_credential_and_named_token_module():
    """The keyring has only a token slot and the PIN is kekfs.pin: with no option the slot is
    not used (its module is loaded only when asked for); -o pkcs11=MODULE uses it."""
    t = Token()
    with Volume(do_mount=False) as v:
        token_only_volume(t, v)
        creds = make_tempdir("creds")
        write_file(os.path.join(creds, "kekfs.pin"), PIN.encode(), 0o600)
        env = dict(t.env, CREDENTIALS_DIRECTORY=creds)
        msg = t.fails("keys", "list", v.backing, env=env)
        assert "--pkcs11-unlock=MODULE" in msg, msg
        assert "KEK v1: active" in t.ok("keys", "list", "--pkcs11-unlock=" + t.module, v.backing,
                                        env=env)
        msg = t.fails("keys", "list", "--pkcs11-unlock", v.backing)  # no PIN, no terminal
        assert "needs its PIN" in msg and "--pin-file" in msg, msg


def test_token_key_is_sensitive_and_not_extractable():
    t = Token()
    t.ok("keys", "create-token-key", "--pkcs11", t.spec("made"), "--pin-file", t.pin_file)
    objects = t.p11tool("--list-objects", "--type", "secrkey")
    entry = objects[objects.index("label:      made"):]
    access = entry[entry.index("Access:"):].split("\n")[0]
    assert "sensitive" in access and "extractable" not in access.replace(
        "never extractable", ""), access
    msg = t.fails("keys", "create-token-key", "--pkcs11", t.spec("made"),
                  "--pin-file", t.pin_file)
    assert "already has a key labelled 'made'" in msg, msg


def test_each_token_mistake_is_one_clear_line():
    t = Token()
    t.ok("keys", "create-token-key", "--pkcs11", t.spec(), "--pin-file", t.pin_file)
    t.p11tool("--keygen", "--key-type", "AES:32", "--label", "loose", "--extractable")
    bad_pin = os.path.join(t.dir, "bad-pin")
    write_file(bad_pin, b"0000\n", 0o600)
    with Volume(do_mount=False) as v:
        cases = [
            (t.spec(module="/nonexistent/libpkcs11.so"), t.pin_file,
             "module /nonexistent/libpkcs11.so cannot be loaded"),
            (t.spec(token="absent"), t.pin_file, "no token labelled 'absent' is present"),
            (t.spec(), bad_pin, "wrong PIN for token 'kekfs-it'"),
            (t.spec(key="missing"), t.pin_file, "has no secret key labelled 'missing'"),
            (t.spec(key="loose"), t.pin_file, "key 'loose' in token 'kekfs-it' is extractable"),
            ("module=libsofthsm2.so;token=x;key=y", t.pin_file, "must be 'module=/ABSOLUTE"),
        ]
        for spec, pin, want in cases:
            msg = t.fails("keys", "add-slot", "--pkcs11", spec, "--pin-file", pin,
                          *v.key_args(), v.backing)
            assert want in msg, "%s: %r lacks %r" % (spec, msg, want)
        out = t.ok("keys", "slots", *v.key_args(), v.backing)
        assert_eq(out.strip(), "slot 1: key file", "slots after the refusals")


def test_unlock_errors_on_a_token_only_volume():
    """The token moves away, the PIN is wrong, the key is deleted: one line each, no mount."""
    t = Token()
    with Volume(do_mount=False) as v:
        token_only_volume(t, v)
        bad_pin = os.path.join(t.dir, "bad-pin")
        write_file(bad_pin, b"0000\n", 0o600)
        msg = t.fails("mount", "--pin-file", bad_pin, v.backing, v.mnt)
        assert "wrong PIN" in msg, msg
        other = Token(label="other")  # the module sees only this one: ours is not plugged in
        msg = t.fails("keys", "list", "--pin-file", t.pin_file, v.backing, env=other.env)
        assert "no token labelled 'kekfs-it' is present" in msg, msg
        with open(v.keyring, "r+b") as f:  # the slot's tail length (bytes 4..7 of slot 1)
            f.seek(48 + 4)
            good = f.read(4)
            for copy in kr_copies(v.keyring):  # both: one bad copy is survived
                f.seek(copy + 48 + 4)
                f.write(b"\xff\xff\x00\x00")
        msg = t.fails("keys", "list", "--pin-file", t.pin_file, v.backing)
        assert "damaged or truncated" in msg, msg
        with open(v.keyring, "r+b") as f:
            for copy in kr_copies(v.keyring):
                f.seek(copy + 48 + 4)
                f.write(good)
        t.p11tool("--delete-object", "--type", "secrkey", "--label", "kekfs-root")
        msg = t.fails("mount", "--pin-file", t.pin_file, v.backing, v.mnt)
        assert "has no secret key labelled 'kekfs-root'" in msg, msg
        assert not is_mounted(v.mnt), "mounted after a failed unlock"


def test_pin_wiped_from_daemon_memory():
    """The PIN is read into locked memory and wiped after the unlock, token library included."""
    from test_keys_memory import readable_memory
    t = Token()
    with Volume(do_mount=False) as v:
        token_only_volume(t, v)
        mount_with(t, v, "--pin-file", t.pin_file)
        assert_eq(len(v.daemon_pids), 1, "one daemon")
        memory = list(readable_memory(v.daemon_pids[0]))
        assert any(v.backing.encode() in chunk for chunk in memory), "memory scan saw nothing"
        hits = sum(chunk.count(PIN.encode()) for chunk in memory)
        assert_eq(hits, 0, "copies of the PIN in the daemon's memory")
        for what in ("cmdline", "environ"):
            assert PIN.encode() not in read_file("/proc/%d/%s" % (v.daemon_pids[0], what))


def test_init_straight_onto_the_token():
    """kekfs init --pkcs11: the token is the volume's first and only slot; a missing key
    leaves nothing behind."""
    t = Token()
    base = make_tempdir("p11init")
    backing, refused = os.path.join(base, "backing"), os.path.join(base, "refused")
    msg = t.fails("init", "--pkcs11", t.spec(), "--pin-file", t.pin_file, refused)
    assert "has no secret key labelled 'kekfs-root'" in msg, msg
    assert not os.path.exists(refused), "a refused init left a directory"
    t.ok("keys", "create-token-key", "--pkcs11", t.spec(), "--pin-file", t.pin_file)
    t.ok("init", "--pkcs11", t.spec(), "--pin-file", t.pin_file, backing)
    out = t.ok("keys", "slots", "--pin-file", t.pin_file, backing)
    assert_eq(out.strip(), "slot 1: PKCS#11 token key: " + t.spec(), "slots after init")
