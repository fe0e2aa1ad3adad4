"""Key sources for unattended mounts: key-command (raw and hex output, failure, timeout,
wrong size, stderr passed through, no shell, minimal environment), systemd credentials, and
systemd-ask-password answered by a password agent played by the test."""

import glob
import os
import socket
import stat
import threading

from kekfs_harness import (make_tempdir, make_key_file, make_passphrase_file, run_kekfs,
                           is_mounted, wait_for, force_unmount, find_daemon_pids, pid_alive,
                           read_file, write_file, assert_eq, UMOUNT_TIMEOUT)


def volume(passphrase=None):
    """An initialised, unmounted volume: (base, backing, mnt, key bytes)."""
    base = make_tempdir("ks")
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    key = os.urandom(32)
    if passphrase is None:
        src = ["--key-file", make_key_file(base, key)]
    else:
        src = ["--passphrase-file", make_passphrase_file(base, passphrase)]
    r = run_kekfs("init", *src, backing)
    assert_eq(r.returncode, 0, "init: %r" % r)
    return base, backing, mnt, key


def script(base, name, body):
    p = os.path.join(base, name)
    with open(p, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(p, 0o755)
    return p


def mounted_ok(r, mnt):
    assert_eq(r.returncode, 0, "mount: %r" % r)
    assert is_mounted(mnt), "mount returned 0 but nothing is mounted"
    write_file(os.path.join(mnt, "probe"), b"ok")
    pids = find_daemon_pids(mnt)
    force_unmount(mnt)
    assert wait_for(lambda: all(not pid_alive(p) for p in pids), UMOUNT_TIMEOUT)


def failed_cleanly(r, mnt, want):
    assert r.returncode != 0, "mount succeeded: %r" % r
    kek = [l for l in r.err_lines() if l.startswith("kekfs: ")]
    assert_eq(len(kek), 1, "want one 'kekfs: ' line: %r" % r)
    assert want in kek[0], "message %r lacks %r" % (kek[0], want)
    assert not is_mounted(mnt), "left mounted"
    assert not find_daemon_pids(mnt), "left a daemon"


def test_key_command_raw_and_hex():
    base, backing, mnt, key = volume()
    raw = os.path.join(base, "raw.bin")
    write_file(raw, key)
    cmd = script(base, "raw", 'cat "$1"\n')
    try:
        mounted_ok(run_kekfs("mount", "-o", "key-command=%s %s" % (cmd, raw), backing, mnt),
                   mnt)
        hexcmd = script(base, "hex", "echo %s\n" % key.hex())
        mounted_ok(run_kekfs("mount", "-o", "key-command=" + hexcmd, backing, mnt), mnt)
        upper = script(base, "hexu", "printf %s\n" % key.hex().upper())
        mounted_ok(run_kekfs("mount", "-o", "key-command=" + upper, backing, mnt), mnt)
    finally:
        force_unmount(mnt)


def test_key_command_failures():
    base, backing, mnt, key = volume()
    cases = [
        (script(base, "fails", "echo 'vault: permission denied' >&2\nexit 3\n"),
         "failed (exit status 3)"),
        (script(base, "short", "printf 0123456789\n"), "gave 10 bytes"),
        (script(base, "long", "head -c 500 /dev/zero\n"), "more than"),
        (script(base, "nothex", "echo %s\n" % ("zz" * 32)), "not hex"),
        (script(base, "wrongkey", "echo %s\n" % os.urandom(32).hex()), "cannot unlock"),
        (script(base, "killed", "kill -9 $$\n"), "killed by signal 9"),
        (os.path.join(base, "missing"), "cannot run key-command"),
        ("sh -c true", "absolute path"),
    ]
    try:
        for cmd, want in cases:
            r = run_kekfs("mount", "-o", "key-command=" + cmd, backing, mnt)
            failed_cleanly(r, mnt, want)
        # its stderr passes through, next to kekfs's own one line
        r = run_kekfs("mount", "-o", "key-command=" + cases[0][0], backing, mnt)
        assert b"vault: permission denied" in r.stderr, "stderr not passed: %r" % r
    finally:
        force_unmount(mnt)


def test_key_command_timeout_kills_it_and_its_children():
    base, backing, mnt, key = volume()
    pidfile = os.path.join(base, "child.pid")
    cmd = script(base, "hang", "sleep 300 &\necho $! > %s\nwait\n" % pidfile)
    try:
        r = run_kekfs("mount", "-o", "key-command=%s,key-command-timeout=1" % cmd, backing,
                      mnt, timeout=20)
        failed_cleanly(r, mnt, "did not finish within 1 s")
        assert r.elapsed < 10, "the timeout took %.1fs" % r.elapsed
        child = int(open(pidfile).read())
        assert wait_for(lambda: not pid_alive(child), 5), "the key-command's child survived"
        r = run_kekfs("mount", "-o", "key-command-timeout=0,key-command=" + cmd, backing, mnt)
        failed_cleanly(r, mnt, "key-command-timeout must be")
    finally:
        force_unmount(mnt)


def test_key_command_has_no_shell_and_a_minimal_environment():
    """Arguments are split on spaces and never reach a shell; secrets in kekfs's own
    environment do not leak to the command; stdin is /dev/null."""
    base, backing, mnt, key = volume()
    out = os.path.join(base, "seen")
    keyf = os.path.join(base, "k.bin")
    write_file(keyf, key)
    cmd = script(base, "envdump",
                 'env > %s; printf "%%s\\n" "$@" >> %s; cat > /dev/null; cat %s\n'
                 % (out, out, keyf))
    env = dict(os.environ, VAULT_TOKEN="s3cr3t-token")
    try:
        r = run_kekfs("mount", "-o", "key-command=%s a;b $(touch%%20x) 'q'" % cmd, backing,
                      mnt, env=env)
        mounted_ok(r, mnt)
        seen = open(out).read()
        assert "s3cr3t-token" not in seen, "the environment leaked: %r" % seen
        assert "KEKFS_BACKING=%s" % os.path.realpath(backing) in seen, seen
        for arg in ("a;b", "$(touch%20x)", "'q'"):
            assert arg + "\n" in seen, "argument %r not passed verbatim: %r" % (arg, seen)
        assert not os.path.exists(os.path.join(base, "x")), "a shell ran"
    finally:
        force_unmount(mnt)


def test_systemd_credentials():
    """$CREDENTIALS_DIRECTORY/kekfs.key (raw or hex), kekfs.passphrase, credential=NAME."""
    base, backing, mnt, key = volume()
    creds = os.path.join(base, "creds")
    os.mkdir(creds, 0o700)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)
    try:
        write_file(os.path.join(creds, "kekfs.key"), key, 0o400)
        mounted_ok(run_kekfs("mount", backing, mnt, env=env), mnt)
        os.unlink(os.path.join(creds, "kekfs.key"))
        write_file(os.path.join(creds, "vault"), (key.hex() + "\n").encode(), 0o400)
        mounted_ok(run_kekfs("mount", "-o", "credential=vault", backing, mnt, env=env), mnt)
        failed_cleanly(run_kekfs("mount", "-o", "credential=nosuch", backing, mnt, env=env),
                       mnt, "cannot read credential")
        failed_cleanly(run_kekfs("mount", "-o", "credential=vault", backing, mnt), mnt,
                       "CREDENTIALS_DIRECTORY is not set")
        r = run_kekfs("mount", "-o", "credential=vault", "--key-file", creds + "/vault",
                      backing, mnt, env=env)
        failed_cleanly(r, mnt, "one key source")
    finally:
        force_unmount(mnt)
    pbase, pbacking, pmnt, _ = volume(passphrase="correct horse")
    pcreds = os.path.join(pbase, "creds")
    os.mkdir(pcreds, 0o700)
    write_file(os.path.join(pcreds, "kekfs.passphrase"), b"correct horse\n", 0o400)
    try:
        mounted_ok(run_kekfs("mount", pbacking, pmnt,
                             env=dict(os.environ, CREDENTIALS_DIRECTORY=pcreds)), pmnt)
    finally:
        force_unmount(pmnt)


ASK_DIR = "/run/systemd/ask-password"


def password_agent(backing, answer, stop, seen):
    """Plays systemd's password agent for kekfs's question only: reads the ask.* file whose
    Id names our volume and answers '+PASSWORD' on its socket."""
    want = "Id=kekfs:%s" % os.path.realpath(backing)
    while not stop.is_set():
        for ask in glob.glob(os.path.join(ASK_DIR, "ask.*")):
            try:
                text = open(ask).read()
            except OSError:
                continue
            if want not in text.split("\n") or ask in seen:
                continue
            seen.append(ask)
            sock = [l.split("=", 1)[1] for l in text.split("\n") if l.startswith("Socket=")][0]
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(b"+" + answer.encode(), sock)
            s.close()
        stop.wait(0.05)


def test_systemd_ask_password_without_a_terminal():
    """Under systemd (INVOCATION_ID) with no terminal and no other source, the passphrase
    comes from systemd-ask-password's agents."""
    if not os.access("/usr/bin/systemd-ask-password", os.X_OK):
        raise AssertionError("systemd-ask-password missing (tools/install-deps.sh installs "
                             "systemd)")
    os.makedirs(ASK_DIR, exist_ok=True)
    base, backing, mnt, _ = volume(passphrase="agent passphrase")
    stop, seen = threading.Event(), []
    agent = threading.Thread(target=password_agent,
                             args=(backing, "agent passphrase", stop, seen), daemon=True)
    agent.start()
    env = dict(os.environ, INVOCATION_ID="0123456789abcdef0123456789abcdef")
    env.pop("CREDENTIALS_DIRECTORY", None)
    try:
        mounted_ok(run_kekfs("mount", backing, mnt, env=env), mnt)
        assert seen, "mounted without asking the agent"
    finally:
        stop.set()
        agent.join()
        force_unmount(mnt)


def test_key_command_output_wiped_from_daemon_memory():
    """Neither the key-command's hex output nor the key it decodes to stays in the daemon's
    memory once the keyring is unlocked; a credential's bytes neither."""
    from test_keys_memory import readable_memory
    base, backing, mnt, key = volume()
    hexcmd = script(base, "hex", "echo %s\n" % key.hex())
    creds = os.path.join(base, "creds")
    os.mkdir(creds, 0o700)
    write_file(os.path.join(creds, "kekfs.key"), key, 0o400)
    try:
        for argv, env in ((["-o", "key-command=" + hexcmd], None),
                          ([], dict(os.environ, CREDENTIALS_DIRECTORY=creds))):
            r = run_kekfs("mount", *argv, backing, mnt, env=env)
            assert_eq(r.returncode, 0, "mount: %r" % r)
            write_file(os.path.join(mnt, "f"), b"x" * 10000)
            read_file(os.path.join(mnt, "f"))
            pids = find_daemon_pids(mnt)
            assert_eq(len(pids), 1, "daemons")
            memory = list(readable_memory(pids[0]))
            assert any(os.path.realpath(backing).encode() in c for c in memory), \
                "memory scan saw nothing"
            for secret, what in ((key, "key bytes"), (key.hex().encode(), "hex output")):
                hits = sum(c.count(secret) for c in memory)
                assert_eq(hits, 0, "%s found in daemon memory (%r)" % (what, argv))
            force_unmount(mnt)
            assert wait_for(lambda: all(not pid_alive(p) for p in pids), UMOUNT_TIMEOUT)
    finally:
        force_unmount(mnt)


def test_every_unlocking_command_takes_every_unlock_option():
    """mount, keys, shred, path, fsck and rotate --data parse the unlock options from one
    table: none of them refuses one as unknown. Before, shred and path had no --rsa-private
    and fsck none of the token and KMS options."""
    d = make_tempdir("opts")
    missing = os.path.join(d, "no-such-backing")
    opts = [["--key-file", "F"], ["--passphrase-file", "F"], ["--rsa-private", "F"],
            ["--keyring", "F"], ["--pkcs11-unlock"], ["--kms-unlock"], ["--pin-file", "F"],
            ["--pin-credential", "N"], ["--kms-timeout", "5"]]
    commands = [(["mount"], [missing, d]), (["keys", "list"], [missing]),
                (["shred"], [missing, "p"]), (["path"], ["encrypt", missing, "p"]),
                (["fsck"], [missing]), (["rotate", "--data"], [missing, "p"])]
    for head, tail in commands:
        for opt in opts:
            r = run_kekfs(*(head + opt + tail))
            err = r.stderr.decode(errors="replace")
            assert r.returncode != 0, r
            assert "unrecognized option" not in err and "see 'kekfs" not in err, (
                "kekfs %s refuses %s: %s" % (" ".join(head), opt[0], err))
