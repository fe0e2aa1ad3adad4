"""KEK states after a rotation: retire, restore, destroy now or later, cancel. Each change
that would strand a file is refused with the files named, unless --force; a destroyed KEK
leaves a tombstone, so a file still wrapped by it says "destroyed", never "unknown"."""

import errno
import os
import shutil

from kekfs_harness import (kekfs_fails, Volume, write_file, read_file, pattern, assert_eq,
                           assert_bytes_eq,
                           run_kekfs, make_key_file, find_daemon_pids)
from test_rotation import kekfs_ok, wait_rewrap_finished

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def test_destroy_refused_while_in_use_allowed_after_rewrap():
    """The active KEK cannot go; after re-wraps the old ones can, and a copy of a file wrapped
    only by destroyed KEKs no longer opens, while the live file does."""
    with Volume() as v:
        write_file(v.path("a"), pattern(5000, 1))
        msg = kekfs_fails("keys", "destroy", "1", "--now", v.mnt)
        assert "active KEK" in msg, msg
        ba, copy = v.backing_path("a"), os.path.join(v.base, "a.v1")
        v.umount()
        shutil.copyfile(ba, copy)
        v.mount()
        for _ in range(2):
            kekfs_ok("rotate", v.mnt)
            wait_rewrap_finished(v)
        for version in ("1", "2"):
            kekfs_ok("keys", "destroy", version, "--now", v.mnt)
        out = kekfs_ok("keys", "list", v.mnt)
        assert "KEK v1: destroyed" in out and "KEK v2: destroyed" in out, out
        assert "KEK v3: active" in out, out
        assert_bytes_eq(read_file(v.path("a")), pattern(5000, 1), "file after the destroys")
        v.umount()
        shutil.copyfile(copy, ba)  # an old copy comes back
        v.mount()
        try:
            read_file(v.path("a"))
        except OSError as e:
            assert_eq(e.errno, errno.EIO, "reading a file wrapped by a destroyed KEK")
        else:
            raise AssertionError("a file wrapped by a destroyed KEK opened")
        msg = kekfs_fails("keys", "destroy", "3", "--now", v.mnt)
        assert "active" in msg, msg


def test_retire_with_census_and_force_then_restore():
    """Retire is refused while a file uses the version (it is named); --force makes it
    unreadable; restore makes it readable again."""
    with Volume() as v:
        write_file(v.path("old"), b"old contents")
        write_file(v.path("keep"), b"keep me")
        bold = v.backing_path("old")
        v.umount()
        with open(bold, "rb") as f:
            v1_copy = f.read()
        v.mount()
        kekfs_ok("rotate", v.mnt)
        wait_rewrap_finished(v)
        v.umount()
        with open(bold, "wb") as f:  # a copy wrapped by v1 alone comes back
            f.write(v1_copy)
        v.mount()
        msg = kekfs_fails("keys", "retire", "1", v.mnt)
        assert "needed by 1 file" in msg and "/old" in msg, msg
        out = kekfs_ok("keys", "retire", "1", "--force", v.mnt)
        assert "FORCED" in out, out
        try:
            read_file(v.path("old"))
        except OSError as e:
            assert_eq(e.errno, errno.EIO, "reading a file of a retired KEK")
        else:
            raise AssertionError("a file wrapped by a retired KEK opened")
        assert_eq(read_file(v.path("keep")), b"keep me", "a file on the active KEK")
        kekfs_ok("keys", "restore", "1", v.mnt)
        assert_eq(read_file(v.path("old")), b"old contents", "file after restore")


def test_pending_destruction_cancel_and_expiry():
    """destroy --after puts a KEK in pending destruction (refused), cancel undoes it, and once
    the date has passed the next mount destroys it."""
    with Volume() as v:
        kekfs_ok("rotate", v.mnt)
        wait_rewrap_finished(v)
        out = kekfs_ok("keys", "destroy", "1", "--after", "7d", v.mnt)
        assert "pending destruction" in out, out
        assert "KEK v1: pending destruction" in kekfs_ok("keys", "list", v.mnt)
        kekfs_ok("keys", "cancel", "1", v.mnt)
        assert "KEK v1: decrypt-only" in kekfs_ok("keys", "list", v.mnt)
        msg = kekfs_fails("keys", "destroy", "1", "--after", "soon", v.mnt)
        assert "duration" in msg, msg
        kekfs_ok("keys", "destroy", "1", "--after", "1s", v.mnt)
        v.umount()
        import time
        time.sleep(1.1)  # the destruction date must pass; this waits for a clock, not a mount
        v.mount()
        assert "KEK v1: destroyed" in kekfs_ok("keys", "list", v.mnt)


def test_restored_old_keyring_is_refused():
    """A keyring copy from before a key change (which could bring a destroyed KEK back) is
    refused at mount with one clear line; the current one still mounts."""
    with Volume() as v:
        write_file(v.path("f"), b"data")
        v.umount()
        kr = v.bpath(".kekfs", "keyring")
        shutil.copyfile(kr, kr + ".old")
        v.mount()
        kekfs_ok("rotate", v.mnt)
        wait_rewrap_finished(v)
        kekfs_ok("keys", "destroy", "1", "--now", v.mnt)
        v.umount()
        shutil.copyfile(kr, kr + ".current")
        shutil.copyfile(kr + ".old", kr)
        r = run_kekfs("mount", *v.key_args(), v.backing, v.mnt)
        assert r.returncode != 0, "an old keyring copy was accepted"
        assert b"older (generation 1)" in r.stderr, r.stderr
        assert not os.path.ismount(v.mnt)
        shutil.copyfile(kr + ".current", kr)
        v.mount()
        assert_eq(read_file(v.path("f")), b"data", "file with the current keyring")


def test_unlock_slots_add_remove_passwd():
    """A second key file unlocks once added; the last slot cannot go; removing a slot locks
    its secret out; passwd changes a passphrase without touching any file; all offline."""
    from kekfs_harness import make_passphrase_file
    with Volume(passphrase="first pass phrase") as v:
        write_file(v.path("f"), b"slots")
        assert "unmount it first" in kekfs_fails("keys", "slots", *v.key_args(), v.backing)
        bf = v.backing_path("f")  # (before the passphrase changes)
        v.umount()
        before = read_file(bf)
        second = make_key_file(v.base, name="second")
        out = kekfs_ok("keys", "add-slot", "--new-key-file", second, *v.key_args(), v.backing)
        assert "2 unlock slots" in out, out
        out = kekfs_ok("keys", "slots", *v.key_args(), v.backing)
        assert "slot 1: passphrase" in out and "slot 2: key file" in out, out
        kekfs_ok("mount", "--key-file", second, v.backing, v.mnt)
        assert_eq(read_file(v.path("f")), b"slots", "file through the added slot")
        v.daemon_pids = find_daemon_pids(v.mnt)
        v.umount()
        newpass = make_passphrase_file(v.base, "second pass phrase", name="newpass")
        kekfs_ok("keys", "passwd", "--new-passphrase-file", newpass, *v.key_args(), v.backing)
        assert "wrong passphrase" in kekfs_fails("mount", *v.key_args(), v.backing, v.mnt)
        kekfs_ok("keys", "remove-slot", "1", "--key-file", second, v.backing)
        assert "last unlock slot" in kekfs_fails("keys", "remove-slot", "1", "--key-file",
                                                 second, v.backing)
        assert "no unlock slot of that kind" in kekfs_fails(
            "mount", "--passphrase-file", newpass, v.backing, v.mnt)
        assert_eq(read_file(bf), before, "slot changes touched a file")
        kekfs_ok("mount", "--key-file", second, v.backing, v.mnt)
        v.daemon_pids = find_daemon_pids(v.mnt)
        assert_eq(read_file(v.path("f")), b"slots", "file after the slot changes")


def test_byok_import_and_bad_material():
    """32 bytes of customer material become KEK v2 and every file is re-wrapped under it;
    wrong lengths and unreadable files give one clear line and change nothing."""
    with Volume() as v:
        write_file(v.path("f"), pattern(20000, 3))
        v.umount()
        kr_before = read_file(v.bpath(".kekfs", "keyring"))
        bad = {"31": os.urandom(31), "33": os.urandom(33), "0": b""}
        for name, data in bad.items():
            p = os.path.join(v.base, "kek%s.bin" % name)
            with open(p, "wb") as f:
                f.write(data)
            msg = kekfs_fails("keys", "import", "--file", p, *v.key_args(), v.backing)
            assert "invalid key material" in msg, msg
        msg = kekfs_fails("keys", "import", "--file", v.base, *v.key_args(), v.backing)
        assert "invalid key material" in msg, msg
        assert_eq(read_file(v.bpath(".kekfs", "keyring")), kr_before, "keyring after bad input")
        good = os.path.join(v.base, "kek.bin")
        with open(good, "wb") as f:
            f.write(os.urandom(32))
        out = kekfs_ok("keys", "import", "--file", good, *v.key_args(), v.backing)
        assert "KEK v2 is active: 1 files, 1 re-wrapped, 0 failed" in out, out
        with open(v.bpath(".kekfs", "audit.log")) as f:
            assert '"op":"import","kek":2' in f.read(), "no audit record of the import"
        v.mount()
        assert_bytes_eq(read_file(v.path("f")), pattern(20000, 3), "file after the import")


def test_byok_import_online():
    """On a mount point the key file's fd goes to the daemon: KEK v2 from the customer's bytes,
    files re-wrapped while mounted, the key file readable by the caller only; bad material is
    refused by the daemon too, and nothing changes."""
    with Volume() as v:
        write_file(v.path("f"), pattern(20000, 4))
        kr_before = read_file(v.bpath(".kekfs", "keyring"))
        short = os.path.join(v.base, "short.bin")
        with open(short, "wb") as f:
            f.write(os.urandom(31))
        msg = kekfs_fails("keys", "import", "--file", short, v.mnt)
        assert "expected 32 bytes, got 31" in msg, msg
        assert_eq(read_file(v.bpath(".kekfs", "keyring")), kr_before, "keyring after bad input")
        good = os.path.join(v.base, "kek.bin")
        material = os.urandom(32)
        with open(good, "wb") as f:
            f.write(material)
        os.chmod(good, 0o400)
        out = kekfs_ok("keys", "import", "--file", good, v.mnt)
        assert "KEK v2 is active" in out, out
        wait_rewrap_finished(v)
        assert "v2" in kekfs_ok("status", v.mnt)
        with open(v.bpath(".kekfs", "audit.log")) as f:
            assert '"op":"import","kek":2' in f.read(), "no audit record of the import"
        assert material.hex() not in read_file(v.bpath(".kekfs", "audit.log")).decode()
        v.remount()
        assert_bytes_eq(read_file(v.path("f")), pattern(20000, 4), "file after the import")


def key_check(material):
    """The key check value FORMAT.md defines, computed as a customer would from their copy."""
    import hashlib
    return hashlib.blake2b(b"kekfs key check value v1", key=material,
                           digest_size=16).hexdigest()[:16]


def test_byok_key_identity_and_duplicate_imports():
    """keys list shows each version's origin and key check value (the customer's own copy
    gives the same value), the audit log records it, and importing a key equal to an
    existing version is refused, online and offline, changing nothing."""
    with Volume() as v:
        material, other = os.urandom(32), os.urandom(32)
        files = {}
        for name, m in (("a", material), ("b", other)):
            files[name] = os.path.join(v.base, "%s.key" % name)
            with open(files[name], "wb") as f:
                f.write(m)
        lines = [l for l in kekfs_ok("keys", "list", v.mnt).split("\n") if l.startswith("KEK v")]
        assert_eq(len(lines), 1, "KEK lines: %r" % lines)
        assert "v1: active" in lines[0] and ", generated, check " in lines[0], lines[0]
        kekfs_ok("keys", "import", "--file", files["a"], v.mnt)
        wait_rewrap_finished(v)
        listing = kekfs_ok("keys", "list", v.mnt)
        assert "KEK v2: active" in listing and \
            "imported, check %s" % key_check(material) in listing, listing
        with open(v.bpath(".kekfs", "audit.log")) as f:
            assert '"op":"import","kek":2,' in f.read() and key_check(material), "audit"
        assert ('"detail":"check %s"' % key_check(material)) in \
            read_file(v.bpath(".kekfs", "audit.log")).decode(), "no key check value audited"
        kr_before = read_file(v.bpath(".kekfs", "keyring"))
        msg = kekfs_fails("keys", "import", "--file", files["a"], v.mnt)
        assert "already KEK v2" in msg, msg
        v.umount()
        msg = kekfs_fails("keys", "import", "--file", files["a"], *v.key_args(), v.backing)
        assert "already KEK v2" in msg, msg
        assert_eq(read_file(v.bpath(".kekfs", "keyring")), kr_before, "keyring after refusals")
        out = kekfs_ok("keys", "import", "--file", files["b"], *v.key_args(), v.backing)
        assert "KEK v3 is active" in out, out
        listing = kekfs_ok("keys", "list", *v.key_args(), v.backing)
        assert "KEK v3: active" in listing and "check %s" % key_check(other) in listing, listing


def test_rsa_slot_unlocks_with_the_private_key_only():
    """An RSA-4096 slot is added with the public key alone and unlocks with the private key;
    a public key, a 2048-bit key or a non-PEM file where a key is expected is one clear line."""
    import subprocess
    with Volume() as v:
        write_file(v.path("f"), b"rsa")
        v.umount()
        priv, pub, small = (os.path.join(v.base, n) for n in ("rsa.pem", "rsa.pub", "rsa2k.pem"))
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:4096", "-out", priv], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", small], check=True, capture_output=True)
        assert "not 4096 bits" in kekfs_fails("keys", "add-slot", "--rsa-public", small,
                                              *v.key_args(), v.backing)
        kekfs_ok("keys", "add-slot", "--rsa-public", pub, *v.key_args(), v.backing)
        assert "RSA-4096 key pair" in kekfs_ok("keys", "slots", *v.key_args(), v.backing)
        assert "public key where the private" in kekfs_fails("mount", "--rsa-private", pub,
                                                             v.backing, v.mnt)
        assert "not a PEM key" in kekfs_fails("mount", "--rsa-private", v.key_file, v.backing,
                                              v.mnt)
        kekfs_ok("mount", "--rsa-private", priv, v.backing, v.mnt)
        v.daemon_pids = find_daemon_pids(v.mnt)
        assert_eq(read_file(v.path("f")), b"rsa", "file through the RSA slot")
