"""KMS plugin slots: the shipped Vault Transit plugin against a local stand-in of its two
endpoints, the clevis plugin against a real tang server on 127.0.0.1, the environment and
stdin a plugin gets, and one clear line for each failure: plugin missing, non-zero exit
(with its stderr), timeout, malformed output, bad command line."""

import base64
import os
import socket
import subprocess
import sys
import threading

from kekfs_harness import (Volume, REPO_ROOT, HERE, make_tempdir, run_kekfs, write_file,
                           read_file, assert_eq, wait_mounted, find_daemon_pids, require_tools)
from test_rotation import wait_rewrap_finished

HELPERS = os.path.join(REPO_ROOT, "mount-helpers")
VAULT = os.path.join(HELPERS, "kekfs-kms-vault")
CLEVIS = os.path.join(HELPERS, "kekfs-kms-clevis")
TANGD = "/usr/libexec/tangd"


def ok(*args, env=None):
    r = run_kekfs(*args, env=env)
    assert_eq(r.returncode, 0, "kekfs %s: %r" % (" ".join(args), r))
    return r.stdout.decode()


def fails(*args, env=None):
    r = run_kekfs(*args, env=env)
    assert r.returncode != 0, "kekfs %s succeeded: %r" % (" ".join(args), r)
    lines = r.err_lines()
    assert len(lines) == 1 and lines[0].startswith("kekfs: "), "want one line: %r" % r
    return lines[0]


def kms_only(v, command, *extra, env=None):
    """Adds a KMS slot to the unmounted volume v and removes its key-file slot; `keys slots`
    shows it with the names of the variables it passes on (--kms-env), never their values."""
    ok("keys", "add-slot", "--kms-command", command, *extra, *v.key_args(), v.backing, env=env)
    ok("keys", "remove-slot", "1", "--kms-unlock", v.backing, env=env)
    out = ok("keys", "slots", "--kms-unlock", v.backing, env=env)
    assert out.startswith("slot 1: KMS plugin: ") and out.count("\n") == 1, out
    names = [extra[i + 1] for i in range(len(extra) - 1) if extra[i] == "--kms-env"]
    if names:
        assert out.rstrip("\n").endswith(" (environment: %s)" % ", ".join(names)), out
    assert not env or "VAULT_TOKEN" not in env or env["VAULT_TOKEN"] not in out, out


class Server(object):
    """A local server process that prints its port first; stopped on exit."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), "server did not start: %r" % line
        self.port = int(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def test_vault_plugin_against_the_transit_stand_in():
    require_tools("curl", "jq")
    with Server([sys.executable, os.path.join(HERE, "vault_standin.py"), "t0ken"]) as vault, \
            Volume(do_mount=False) as v:
        env = dict(os.environ, VAULT_ADDR="http://127.0.0.1:%d" % vault.port,
                   VAULT_TOKEN="t0ken")
        kms_only(v, VAULT + " kekfs-volume", "--kms-env", "VAULT_ADDR", "--kms-env",
                 "VAULT_TOKEN", env=env)
        slot = open(v.keyring, "rb").read()
        assert b"vault:v1:" in slot and b"t0ken" not in slot, "slot holds the token"
        r = run_kekfs("mount", "--kms-unlock=" + VAULT, v.backing, v.mnt, env=env)
        assert_eq(r.returncode, 0, "mount: %r" % r)
        assert wait_mounted(v.mnt)
        v.daemon_pids = find_daemon_pids(v.mnt)
        write_file(v.path("f"), b"sealed by vault")
        ok("rotate", v.mnt, env=env)
        wait_rewrap_finished(v)
        v.umount()
        msg = fails("mount", "--kms-unlock=" + VAULT, v.backing, v.mnt,
                    env=dict(env, VAULT_TOKEN="wrong"))
        assert "exit status 1" in msg and "403" in msg and "permission denied" in msg, msg
        no_token = dict(env)
        del no_token["VAULT_TOKEN"]
        msg = fails("keys", "list", "--kms-unlock", v.backing, env=no_token)
        assert "VAULT_TOKEN is not set" in msg, msg
        r = run_kekfs("mount", "-o", "kms=%s,kms-timeout=20" % VAULT, v.backing, v.mnt, env=env)
        assert_eq(r.returncode, 0, "mount -o kms=PROGRAM: %r" % r)
        assert wait_mounted(v.mnt)
        v.daemon_pids = find_daemon_pids(v.mnt)
        assert_eq(read_file(v.path("f")), b"sealed by vault", "after remount")


class Tang(object):
    """tangd answers one connection on its stdin and stdout (it is socket-activated): a
    listener on 127.0.0.1 starts one tangd per connection, as systemd's tangd.socket does."""

    def __init__(self):
        require_tools("clevis", "jose")
        assert os.access(TANGD, os.X_OK), "tangd not installed (tools/install-deps.sh)"
        self.db = make_tempdir("tang")
        subprocess.run(["/usr/libexec/tangd-keygen", self.db], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                p = subprocess.Popen([TANGD, self.db], stdin=conn, stdout=conn,
                                     stderr=subprocess.DEVNULL)
            p.wait(timeout=30)

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in serve()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=10)


def test_clevis_plugin_with_a_tang_server():
    tang = Tang()
    try:
        with Volume(do_mount=False) as v:
            config = '{"url":"http://127.0.0.1:%d"}' % tang.port
            kms_only(v, "%s tang %s" % (CLEVIS, config))
            assert "KEK v1: active" in ok("keys", "list", "--kms-unlock=" + CLEVIS, v.backing)
            r = run_kekfs("mount", "--kms-unlock", v.backing, v.mnt)
            assert_eq(r.returncode, 0, "mount: %r" % r)
            assert wait_mounted(v.mnt)
            v.daemon_pids = find_daemon_pids(v.mnt)
            write_file(v.path("f"), b"bound to tang")
            v.umount()
            tang.stop()  # the server is gone: the volume stays locked
            msg = fails("keys", "list", "--kms-unlock", v.backing)
            assert "clevis decrypt failed" in msg, msg
    finally:
        tang.stop()



def _argvs_under_strace(base, argv, stdin, env):
    """Runs argv under strace -f and returns (its stdout, the argv of every program it and
    its children executed)."""
    log = os.path.join(base, "execve.%d" % len(os.listdir(base)))
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-s", "65536", "-o", log]
                       + argv, input=stdin, env=env, capture_output=True, timeout=60)
    assert_eq(r.returncode, 0, "%s: %r" % (argv, r.stderr))
    with open(log) as f:
        calls = [ln for ln in f if "execve(" in ln]
    assert len(calls) >= 2, "strace saw no child at all: %r" % calls
    return r.stdout, calls


def test_plugins_put_no_secret_on_any_command_line():
    """Any local user can read every process's argv in /proc: neither the Vault token nor
    the key (wrapped or unwrapped) may appear in the argv of the plugin or of any program it
    runs. jq, curl, clevis and jose are all traced."""
    require_tools("curl", "jq", "strace")
    base = make_tempdir("argv")
    key = base64.b64encode(os.urandom(32))
    with Server([sys.executable, os.path.join(HERE, "vault_standin.py"), "t0kenSECRET"]) as vault:
        env = dict(os.environ, VAULT_ADDR="http://127.0.0.1:%d" % vault.port,
                   VAULT_TOKEN="t0kenSECRET")
        wrapped, wrap_calls = _argvs_under_strace(base, [VAULT, "k", "wrap"], key + b"\n", env)
        assert wrapped.startswith(b"vault:v1:"), wrapped
        plain, unwrap_calls = _argvs_under_strace(base, [VAULT, "k", "unwrap"], wrapped, env)
        assert_eq(plain.strip(), key, "vault plugin round trip")
    tang = Tang()
    try:
        config = '{"url":"http://127.0.0.1:%d"}' % tang.port
        jwe, c_wrap = _argvs_under_strace(base, [CLEVIS, "tang", config, "wrap"], key + b"\n",
                                          dict(os.environ))
        plain, c_unwrap = _argvs_under_strace(base, [CLEVIS, "tang", config, "unwrap"], jwe,
                                              dict(os.environ))
        assert_eq(plain.strip(), key, "clevis plugin round trip")
    finally:
        tang.stop()
    for label, calls in (("vault wrap", wrap_calls), ("vault unwrap", unwrap_calls),
                         ("clevis wrap", c_wrap), ("clevis unwrap", c_unwrap)):
        progs = sorted({c.split('execve("', 1)[1].split('"', 1)[0] for c in calls})
        for c in calls:
            for secret in (b"t0kenSECRET", key, key.rstrip(b"=")):
                assert secret.decode() not in c, "%s: a secret on a command line: %s" % (
                    label, c[:300])
        if label.startswith("vault"):
            assert any(p.endswith("/jq") for p in progs) and any(
                p.endswith("/curl") for p in progs), "%s ran %r" % (label, progs)

def plugin(base, name, body):
    p = os.path.join(base, name)
    with open(p, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(p, 0o755)
    return p


# A toy plugin: "wrap" prints the key reversed, "unwrap" reverses it back. It records its
# arguments, stdin and environment so the test can see exactly what a plugin is given.
TOY = r"""log=$1; shift
for verb in "$@"; do :; done
{ echo "argv: $*"; env | sort; } > "$log.$verb"
case $verb in
wrap) read -r k; printf '%s\n' "$k" > "$log.stdin"; printf 'toy:%s\n' "$k" | rev ;;
unwrap) cat | rev | sed 's/^toy://' ;;
esac
"""


def test_plugin_gets_key_on_stdin_and_a_small_environment():
    base = make_tempdir("kms")
    toy = plugin(base, "toy", TOY)
    log = os.path.join(base, "log")
    env = dict(os.environ, PASSED_ON="yes", NOT_PASSED="secret-env")
    with Volume(do_mount=False) as v:
        kms_only(v, "%s %s 'an arg with spaces'" % (toy, log), "--kms-env", "PASSED_ON",
                 env=env)
        ok("keys", "list", "--kms-unlock=" + toy, v.backing, env=env)
        wrap_env = open(log + ".wrap").read()
        unwrap_env = open(log + ".unwrap").read()
        for seen in (wrap_env, unwrap_env):
            assert "PASSED_ON=yes" in seen and "KEKFS_KMS_PROTOCOL=1" in seen, seen
            assert "NOT_PASSED" not in seen and "secret-env" not in seen, seen
            assert "argv: an arg with spaces " in seen, seen
        names = sorted(l.split("=")[0] for l in unwrap_env.splitlines()[1:])
        assert set(names) <= {"PATH", "HOME", "LANG", "KEKFS_KMS_PROTOCOL", "PASSED_ON", "PWD",
                              "SHLVL", "_", "OLDPWD"}, names
        key_b64 = open(log + ".stdin").read().strip()
        assert len(key_b64) == 44 and key_b64 not in wrap_env, "key on stdin, not in argv/env"


def test_each_plugin_failure_is_one_clear_line():
    base = make_tempdir("kms")
    good = plugin(base, "good", TOY)
    log = os.path.join(base, "log")
    failing = plugin(base, "failing", 'echo "first line" >&2\necho "the KMS said no" >&2\n'
                     'exit 3\n')
    slow = plugin(base, "slow", "sleep 30\n")
    empty = plugin(base, "empty", "cat > /dev/null\n")
    with Volume(do_mount=False) as v:
        kf = v.key_args() + [v.backing]
        cases = [
            (["--kms-command", "/nonexistent/plugin"], "KMS plugin /nonexistent/plugin not found"),
            (["--kms-command", "no-such-kekfs-plugin"], "no-such-kekfs-plugin not found"),
            (["--kms-command", failing], "failed (exit status 3): the KMS said no"),
            (["--kms-command", slow, "--kms-timeout", "1"], "did not finish within 1 s"),
            (["--kms-command", empty], "printed nothing"),
            (["--kms-command", good + " 'unterminated"], "is not a command line"),
            (["--kms-command", good, "--kms-env", "NOT-A-NAME"], "not the name of"),
        ]
        for args, want in cases:
            msg = fails("keys", "add-slot", *args, *kf)
            assert want in msg, "%s: %r lacks %r" % (args, msg, want)
        assert_eq(ok("keys", "slots", *kf).strip(), "slot 1: key file", "nothing was added")
        # the plugin breaks after the slot exists: unwrap prints garbage, then it is gone
        kms_only(v, "%s %s" % (good, log))
        with open(good, "w") as f:
            f.write("#!/bin/sh\necho not-a-key\n")
        msg = fails("keys", "list", "--kms-unlock", v.backing)
        assert "is not a 32-byte key in base64" in msg, msg
        os.unlink(good)
        msg = fails("mount", "--kms-unlock", v.backing, v.mnt)
        assert "KMS plugin %s not found or not executable" % good in msg, msg


def test_init_with_a_plugin():
    base = make_tempdir("kms")
    toy = plugin(base, "toy", TOY)
    backing = os.path.join(base, "backing")
    ok("init", "--kms-command", "%s %s" % (toy, os.path.join(base, "log")), backing)
    msg = fails("keys", "list", backing)  # the only slot, but runs only when asked for
    assert "give --kms-unlock=PROGRAM" in msg, msg
    assert "KEK v1: active" in ok("keys", "list", "--kms-unlock=" + toy, backing)
    failing = plugin(base, "failing", "echo 'no such key' >&2\nexit 1\n")
    msg = fails("init", "--kms-command", failing, os.path.join(base, "refused"))
    assert "cannot create keyring" in msg and "no such key" in msg, msg
    assert not os.path.exists(os.path.join(base, "refused")), "a refused init left a directory"
