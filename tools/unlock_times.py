#!/usr/bin/env python3
"""Unlock time per slot type: the median of N runs of `kekfs keys list` (load the keyring,
open one slot, unwrap the KEKs, unwrap the name key) on a volume whose only slot is of that
type. Uses the same SoftHSM2 token, tang server and Vault stand-in as the tests.

    python3 tools/unlock_times.py [build/kekfs] [N]
"""

import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("KEKFS_BIN", os.path.abspath(sys.argv[1] if len(sys.argv) > 1
                                                   else os.path.join(HERE, "..", "build",
                                                                     "kekfs")))

import kekfs_harness as h  # noqa: E402
from test_pkcs11 import Token  # noqa: E402
from test_kms import Server, Tang, VAULT, CLEVIS  # noqa: E402

RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 7


def median_unlock(args, env=None):
    times = []
    for _ in range(RUNS):
        t0 = time.monotonic()
        r = subprocess.run([h.kekfs_bin(), "keys", "list"] + args, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, start_new_session=True)
        times.append(time.monotonic() - t0)
        assert r.returncode == 0, r.stderr
    return statistics.median(times) * 1000


def only_slot(v, add_args, unlock_args, env=None):
    """Adds a slot with add_args, then removes the key-file slot."""
    for argv in (["keys", "add-slot"] + add_args + v.key_args() + [v.backing],
                 ["keys", "remove-slot", "1"] + unlock_args + [v.backing]):
        r = h.run_kekfs(*argv, env=env)
        assert r.returncode == 0, r


def main():
    rows = []
    with h.Volume(do_mount=False, passphrase="correct horse battery staple") as v:
        rows.append(("passphrase (Argon2id, 3 passes, 64 MiB)",
                     median_unlock(["--passphrase-file", v.pass_file, v.backing])))
    with h.Volume(do_mount=False) as v:
        rows.append(("key file", median_unlock(["--key-file", v.key_file, v.backing])))
        pem = os.path.join(v.base, "rsa.pem")
        pub = os.path.join(v.base, "rsa.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:4096", "-out", pem], check=True,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-out", pub], check=True)
        only_slot(v, ["--rsa-public", pub], ["--rsa-private", pem])
        rows.append(("RSA-4096 key pair", median_unlock(["--rsa-private", pem, v.backing])))
    t = Token()
    with h.Volume(do_mount=False) as v:
        t.ok("keys", "create-token-key", "--pkcs11", t.spec(), "--pin-file", t.pin_file)
        only_slot(v, ["--pkcs11", t.spec(), "--pin-file", t.pin_file],
                  ["--pin-file", t.pin_file], env=t.env)
        rows.append(("PKCS#11 (SoftHSM2, AES-GCM in the token)",
                     median_unlock(["--pin-file", t.pin_file, v.backing], env=t.env)))
    tang = Tang()
    with h.Volume(do_mount=False) as v:
        only_slot(v, ["--kms-command", '%s tang {"url":"http://127.0.0.1:%d"}' % (
            CLEVIS, tang.port)], ["--kms-unlock"])
        rows.append(("KMS plugin: clevis + tang (127.0.0.1)", median_unlock([v.backing])))
    tang.stop()
    with Server([sys.executable, os.path.join(HERE, "..", "tests", "integration",
                                              "vault_standin.py"), "tok"]) as vault, \
            h.Volume(do_mount=False) as v:
        env = dict(os.environ, VAULT_ADDR="http://127.0.0.1:%d" % vault.port, VAULT_TOKEN="tok")
        only_slot(v, ["--kms-command", VAULT + " vol", "--kms-env", "VAULT_ADDR",
                      "--kms-env", "VAULT_TOKEN"], ["--kms-unlock"], env=env)
        rows.append(("KMS plugin: Vault Transit stand-in (curl + jq)",
                     median_unlock([v.backing], env=env)))
    print("| slot type | median unlock (ms, %d runs) |\n|---|---:|" % RUNS)
    for name, ms in rows:
        print("| %s | %.0f |" % (name, ms))
    h.rmtree(h.tmp_root())


if __name__ == "__main__":
    main()
