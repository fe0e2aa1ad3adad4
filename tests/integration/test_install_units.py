"""make install (DESTDIR), the man pages, the systemd units (systemd-analyze verify), and
real mount(8) calls with -t fuse.kekfs and -t kekfs as installed.

mount(8) finds helpers only in /sbin and mount.fuse3 finds 'kekfs' only on the default PATH,
so the named-type tests run in a private mount namespace (unshare -m) where the DESTDIR's
/usr/local/bin and /sbin are laid over the real ones with a read-only overlay: the system
itself is never changed, and the namespace's mounts vanish with it."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from kekfs_harness import (make_tempdir, make_key_file, kekfs_bin, run_kekfs, is_mounted,  # noqa
                           mount_entries, wait_for, find_daemon_pids, pid_alive, read_file,
                           write_file, assert_eq, require_tools, force_unmount, Skip,
                           UMOUNT_TIMEOUT, REPO_ROOT)

PREFIX = "/usr/local"
UNIT = "usr/local/lib/systemd/system/kekfs@.service"
EXAMPLES = "usr/local/share/doc/kekfs/examples"


def make_install(dest):
    build = os.path.relpath(os.path.dirname(kekfs_bin()), REPO_ROOT)
    p = subprocess.run(["make", "--no-print-directory", "-C", REPO_ROOT, "install",
                        "DESTDIR=" + dest, "BUILD=" + build], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    assert_eq(p.returncode, 0, "make install: %s" % p.stdout.decode()[-2000:])


def in_installed_namespace(dest, argv, timeout=120):
    """Runs argv in a new mount namespace that sees DESTDIR's files in /usr/local/bin and
    /sbin; returns (rc, output)."""
    if subprocess.run(["unshare", "-m", "true"], stderr=subprocess.DEVNULL).returncode != 0:
        raise Skip("cannot create a mount namespace here (unshare -m)")
    script = ("set -e\n"
              "mount -t overlay kekfs-bin -o lowerdir=%s/usr/local/bin:/usr/local/bin "
              "/usr/local/bin\n"
              "mount -t overlay kekfs-sbin -o lowerdir=%s/sbin:$(realpath /sbin) "
              "$(realpath /sbin)\n"
              'exec "$@"\n') % (dest, dest)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                        "sh"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def test_make_install_destdir_and_man_pages():
    require_tools("make", "man")
    dest = make_tempdir("dest")
    make_install(dest)
    binp = os.path.join(dest, "usr/local/bin/kekfs")
    assert os.access(binp, os.X_OK), "no executable %s" % binp
    helper = os.path.join(dest, "sbin/mount.kekfs")
    assert_eq(os.readlink(helper), PREFIX + "/bin/kekfs", "mount.kekfs link")
    for rel in (UNIT, EXAMPLES + "/srv-vault.mount", EXAMPLES + "/srv-vault.automount"):
        text = open(os.path.join(dest, rel)).read()
        assert "@" + "BINDIR@" not in text and "@SYSCONFDIR@" not in text, \
            "%s has unsubstituted placeholders" % rel
    assert "ExecStart=/usr/local/bin/kekfs mount -f" in open(os.path.join(dest, UNIT)).read()
    for page, words in (("man1/kekfs.1", ["kekfs init", "NOTIFY_SOCKET", "key-command"]),
                        ("man8/mount.kekfs.8", ["fuse.kekfs", "key-command-timeout",
                                                "x-systemd.automount", "kekfs@.service"])):
        path = os.path.join(dest, "usr/local/share/man", page)
        p = subprocess.run(["man", "--warnings", "-l", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60,
                           env=dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="",
                                    MANPAGER="cat", PAGER="cat"))
        out = p.stdout.decode("utf-8", "replace").replace("\u2010", "-")
        assert_eq(p.returncode, 0, "man -l %s: %s" % (page, p.stderr.decode()))
        assert not p.stderr.strip(), "man warnings for %s: %s" % (page, p.stderr.decode())
        for w in words:
            assert w in out, "%s does not mention %r" % (page, w)


def test_systemd_units_verify():
    """systemd-analyze verify passes on the template service and on the example .mount and
    .automount; the service is Type=notify, hardened, and has no mount namespace."""
    require_tools("systemd-analyze")
    dest = make_tempdir("dest")
    make_install(dest)
    units = [os.path.join(dest, UNIT), os.path.join(dest, EXAMPLES, "srv-vault.mount"),
             os.path.join(dest, EXAMPLES, "srv-vault.automount")]
    rc, out = in_installed_namespace(dest, ["systemd-analyze", "verify", "--man=no"] + units)
    assert_eq(rc, 0, "systemd-analyze verify: %s" % out)
    assert not out.strip(), "systemd-analyze verify warned: %s" % out
    text = open(units[0]).read()
    lines = [l.strip() for l in text.split("\n") if l.strip() and not l.startswith("#")]
    for want in ("Type=notify", "NoNewPrivileges=yes", "LockPersonality=yes",
                 "MemoryDenyWriteExecute=yes", "LimitCORE=0", "Restart=on-failure",
                 "KillSignal=SIGTERM"):
        assert want in lines, "kekfs@.service lacks %s" % want
    for bad in ("ProtectSystem=", "PrivateTmp=", "ProtectHome=", "PrivateMounts="):
        assert not any(l.startswith(bad) for l in lines), \
            "%s would hide the FUSE mount in a private namespace" % bad
    # the exposure score docs/DECISIONS.md gives (8.4 before the bounding set and filters)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", units[0]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    last = r.stdout.decode().strip().split("\n")[-1]
    score = float(last.split(":")[-1].split()[0])
    assert score <= 5.0, "systemd-analyze security: %s" % last


def inner_named_types(backing, mnt, key):
    """Runs inside the namespace: -t fuse.kekfs, -t kekfs, and an fstab line of type kekfs."""
    def mount(argv):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr.decode()

    def umount_wait():
        pids = find_daemon_pids(mnt)
        assert pids, "no daemon found for %s" % mnt
        rc, err = mount(["umount", mnt])
        assert_eq(rc, 0, "umount: %s" % err)
        assert wait_for(lambda: all(not pid_alive(p) for p in pids), UMOUNT_TIMEOUT), \
            "daemon still running after umount"

    fstab = os.path.join(os.path.dirname(mnt), "fstab")
    with open(fstab, "w") as f:
        f.write("%s %s kekfs keyfile=%s,nofail,_netdev,x-systemd.automount 0 0\n"
                % (backing, mnt, key))
    try:
        for i, argv in enumerate((["mount", "-t", "fuse.kekfs", backing, mnt, "-o",
                                   "keyfile=" + key + ",nofail"],
                                  ["mount", "-t", "kekfs", backing, mnt, "-o",
                                   "keyfile=" + key + ",noauto"],
                                  ["mount", "-T", fstab, mnt])):
            rc, err = mount(argv)
            assert_eq(rc, 0, "%s: %s" % (" ".join(argv), err))
            ents = mount_entries(mnt)
            assert ents and ents[0][2] == "fuse.kekfs", "%s: not mounted: %r" % (argv, ents)
            name = os.path.join(mnt, "f%d" % i)
            write_file(name, b"named type %d" % i)
            assert_eq(read_file(name), b"named type %d" % i, "content")
            umount_wait()
        rc, err = mount(["mount", "-t", "kekfs", backing, mnt, "-o", "keyfile=/nonexistent"])
        assert rc != 0, "mount with a missing key file succeeded"
        kek = [l for l in err.split("\n") if l.startswith("kekfs: ")]
        assert_eq(len(kek), 1, "want one 'kekfs: ' line: %r" % err)
        assert not is_mounted(mnt) and not find_daemon_pids(mnt), "left something behind"
    finally:
        force_unmount(mnt)


def test_mount8_named_types_as_installed():
    """mount -t fuse.kekfs (via mount.fuse3 and the default PATH), mount -t kekfs (via
    /sbin/mount.kekfs) and an fstab line of type kekfs, with the installed files."""
    require_tools("mount", "unshare", "mount.fuse3")
    dest = make_tempdir("dest")
    make_install(dest)
    base = make_tempdir("named")
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    key = make_key_file(base)
    assert_eq(run_kekfs("init", "--key-file", key, backing).returncode, 0, "init")
    rc, out = in_installed_namespace(
        dest, [sys.executable, os.path.abspath(__file__), "inner", backing, mnt, key])
    assert_eq(rc, 0, "inside the namespace:\n%s" % out[-3000:])
    assert_eq(sorted(os.listdir(os.path.join(backing))) != [], True, "backing is empty")
    assert not find_daemon_pids(mnt), "a daemon outlived the namespace"



def unit_commands(dest):
    """The installed service's ExecStart=, ExecStartPre=, ExecStopPost= and
    CapabilityBoundingSet= lines, '-' prefix removed."""
    cmds = {}
    for line in open(os.path.join(dest, UNIT)):
        for key in ("ExecStart=", "ExecStartPre=", "ExecStopPost=", "CapabilityBoundingSet=",
                    "RestartPreventExitStatus="):
            if line.startswith(key):
                cmds[key[:-1]] = line[len(key):].strip().lstrip("-")
    return cmds


def expand(cmd, env, instance_path):
    """Enough of systemd's command-line expansion for our unit: ${VAR} is one word, %f the
    unescaped instance path; then shell-like word splitting."""
    import shlex
    words = []
    for w in shlex.split(cmd):
        for k, v in env.items():
            w = w.replace("${%s}" % k, v)
        words.append(w.replace("%f", instance_path))
    return words


def test_service_command_lines_as_systemd_runs_them():
    """The unit's ExecStart= with a credential and an empty KEKFS_OPTIONS: READY=1 on our
    NOTIFY_SOCKET once mounted, SIGTERM stops it cleanly. Its ExecStopPost= drops a dead mount
    left by a killed daemon, and leaves a live mount alone."""
    import signal
    import socket
    dest = make_tempdir("dest")
    make_install(dest)
    cmds = unit_commands(dest)
    base = make_tempdir("svc")
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    creds = os.path.join(base, "creds")
    os.mkdir(creds, 0o700)
    key = make_key_file(creds, name="kekfs.key")
    assert_eq(run_kekfs("init", "--key-file", key, backing).returncode, 0, "init")
    start = expand(cmds["ExecStart"], {"KEKFS_OPTIONS": "", "KEKFS_BACKING": backing}, mnt)
    assert_eq(start[0], PREFIX + "/bin/kekfs", "ExecStart program")
    start[0] = kekfs_bin()
    stop_post = expand(cmds["ExecStopPost"], {}, mnt)
    sock_path = os.path.join(base, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, CREDENTIALS_DIRECTORY=creds,
               INVOCATION_ID="00112233445566778899aabbccddeeff")
    p = None
    try:
        for round_ in ("sigterm", "sigkill"):
            p = subprocess.Popen(start, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            msg = sock.recv(4096).decode()
            assert "READY=1" in msg.split("\n"), "not READY=1: %r" % msg
            assert is_mounted(mnt), "READY=1 before the mount"
            if round_ == "sigterm":
                p.send_signal(signal.SIGTERM)
                assert_eq(p.wait(timeout=UMOUNT_TIMEOUT), 0, "exit status on SIGTERM")
                assert not is_mounted(mnt), "SIGTERM left the mount"
                assert "STOPPING=1" in sock.recv(4096).decode().split("\n"), "no STOPPING=1"
                continue
            # a live mount: ExecStopPost must not touch it
            subprocess.run(stop_post, timeout=30)
            assert is_mounted(mnt), "ExecStopPost unmounted a live mount"
            p.kill()
            p.wait()
            assert is_mounted(mnt), "expected a dead mount after SIGKILL"
            r = subprocess.run(stop_post, timeout=30)
            assert_eq(r.returncode, 0, "ExecStopPost on a dead mount")
            assert not is_mounted(mnt), "ExecStopPost left the dead mount"
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        sock.close()
        force_unmount(mnt)


CAP_V2 = b"\x00\x00\x00\x02" + (1 << 13).to_bytes(4, "little") + bytes(12)  # cap_net_raw


def workload_needing_each_capability(mnt):
    """What root does through a mount that needs each capability the unit keeps."""
    import stat as st_
    from fhandle import name_to_handle, open_by_handle, drop_caches
    os.mkdir(os.path.join(mnt, "d"))
    f = os.path.join(mnt, "d", "f")
    write_file(f, b"capable")
    os.chown(f, 1234, 1234)                      # CAP_CHOWN
    os.chmod(f, 0o4755)                          # kept setuid: CAP_FSETID
    os.setxattr(f, "security.capability", CAP_V2)  # CAP_SETFCAP
    os.mknod(os.path.join(mnt, "null"), 0o600 | st_.S_IFCHR, os.makedev(1, 3))  # CAP_MKNOD
    locked = os.path.join(mnt, "locked")
    write_file(locked, b"mode 000")
    os.chmod(locked, 0)
    assert_eq(read_file(locked), b"mode 000", "root reads a mode-000 file (CAP_DAC_OVERRIDE)")
    fh = name_to_handle(f)
    drop_caches()
    mfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = open_by_handle(mfd, fh)  # the daemon reopens by handle: CAP_DAC_READ_SEARCH
        assert_eq(os.read(fd, 20), b"capable", "read by file handle")
        os.close(fd)
    finally:
        os.close(mfd)
    got = os.stat(f)
    assert_eq((got.st_uid, st_.S_IMODE(got.st_mode)), (1234, 0o4755), "owner and mode")
    assert_eq(os.getxattr(f, "security.capability"), CAP_V2, "security.capability")
    assert st_.S_ISCHR(os.stat(os.path.join(mnt, "null")).st_mode), "device node"


def test_service_runs_with_its_capability_bounding_set():
    """ExecStartPre= makes a missing mount point; ExecStart= under exactly the unit's
    CapabilityBoundingSet= (setpriv, with no_new_privs) mounts and serves what needs each
    capability it keeps; a wrong key exits with a status in RestartPreventExitStatus=, so
    systemd does not retry it."""
    import signal
    import socket
    require_tools("setpriv")
    dest = make_tempdir("dest")
    make_install(dest)
    cmds = unit_commands(dest)
    caps = cmds["CapabilityBoundingSet"].split()
    bounding = "-all," + ",".join("+" + c[4:].lower() for c in caps)
    base = make_tempdir("caps")
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt", "deep")
    creds = os.path.join(base, "creds")
    os.mkdir(creds, 0o700)
    key = make_key_file(creds, name="kekfs.key")
    assert_eq(run_kekfs("init", "--key-file", key, backing).returncode, 0, "init")
    pre = expand(cmds["ExecStartPre"], {}, mnt)
    assert_eq(subprocess.run(pre).returncode, 0, "ExecStartPre %r" % pre)
    assert os.path.isdir(mnt), "ExecStartPre made no mount point"
    start = expand(cmds["ExecStart"], {"KEKFS_OPTIONS": "", "KEKFS_BACKING": backing}, mnt)
    start[0] = kekfs_bin()
    sock_path = os.path.join(base, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, CREDENTIALS_DIRECTORY=creds)
    argv = ["setpriv", "--bounding-set", bounding, "--no-new-privs", "--"] + start
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg.split("\n"), "not READY=1: %r" % msg
        with open("/proc/%d/status" % p.pid) as f:
            bnd = [l.split()[1] for l in f if l.startswith("CapBnd:")][0]
        want = sum(1 << CAP_NUMBERS[c] for c in caps)
        assert_eq(int(bnd, 16), want, "the daemon's bounding set")
        workload_needing_each_capability(mnt)
        p.send_signal(signal.SIGTERM)
        assert_eq(p.wait(timeout=UMOUNT_TIMEOUT), 0, "exit status on SIGTERM")
        write_file(os.path.join(creds, "kekfs.key"), os.urandom(32), mode=0o600)
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60)
        assert str(r.returncode) in cmds["RestartPreventExitStatus"].split(), \
            "a wrong key exited %d (%r)" % (r.returncode, r.stderr)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sock.close()
        force_unmount(mnt)


CAP_NUMBERS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
               "CAP_FSETID": 4, "CAP_MKNOD": 27, "CAP_SETFCAP": 31, "CAP_IPC_LOCK": 14,
               "CAP_SYS_ADMIN": 21}


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "inner":
    inner_named_types(*sys.argv[2:5])
