"""kekfs under mount(8), /etc/fstab and systemd: the mount.fuse3 argv shape, generic mount
options, Type=notify readiness over a NOTIFY_SOCKET we listen on ourselves, and a clean stop
on SIGTERM. Every mount is undone in a finally block."""

import os
import signal
import socket
import subprocess
import time
import types

from kekfs_harness import (Volume, make_tempdir, make_key_file, kekfs_bin, run_kekfs, tmp_root,
                           is_mounted, mount_entries, wait_for, wait_mounted, force_unmount,
                           find_daemon_pids, pid_alive, read_file, write_file, assert_eq,
                           require_tools, UMOUNT_TIMEOUT)
from test_rotation import wait_rewrap_finished



def dotless_kekfs():
    """mount(8) splits `fuse.PROG` at dots, so PROG's path must have none: a symlink to the
    binary under the test's own temporary directory (a clone may live under /tmp/tmp.XXXX)."""
    link = os.path.join(tmp_root(), "bin", "kekfs")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(kekfs_bin(), link)
    assert "." not in link, "temporary directory has a dot: %s" % link
    return link


def run_mount(argv, timeout=60, env=None):
    """Runs mount(8) (or umount) with stderr captured; returns (rc, stderr lines)."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    err = [l for l in p.stderr.decode("utf-8", "replace").split("\n") if l]
    return p.returncode, err


def fresh_volume(name="mh"):
    """An initialised, unmounted volume: (base, backing, mountpoint, key file)."""
    base = make_tempdir(name)
    backing, mnt = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    key = make_key_file(base)
    r = run_kekfs("init", "--key-file", key, backing)
    assert_eq(r.returncode, 0, "init: %r" % r)
    return base, backing, mnt, key


def unmount_and_wait(mnt):
    """umount(8), then the daemon must exit by itself (it wipes its keys on the way)."""
    pids = find_daemon_pids(mnt)
    rc, err = run_mount(["umount", mnt])
    assert_eq(rc, 0, "umount %s: %s" % (mnt, err))
    assert not is_mounted(mnt), "still mounted after umount"
    assert wait_for(lambda: all(not pid_alive(p) for p in pids), UMOUNT_TIMEOUT), \
        "daemon %r still running after umount" % pids


def assert_one_line_failure(rc, err, what, mnt):
    assert rc != 0, "%s succeeded" % what
    kek = [l for l in err if l.startswith("kekfs: ")]
    assert_eq(len(kek), 1, "%s: want one 'kekfs: ' line, got %r" % (what, err))
    assert not is_mounted(mnt), "%s left %s mounted" % (what, mnt)
    assert not find_daemon_pids(mnt), "%s left a daemon running" % what
    return kek[0]


def test_mount8_fuse_type_with_generic_options():
    """mount -t fuse.<kekfs> works through mount.fuse3, returns only once ready, accepts the
    options fstab and systemd pass along, and applies nosuid/nodev."""
    require_tools("mount", "umount", "mount.fuse3")
    base, backing, mnt, key = fresh_volume()
    try:
        opts = ("keyfile=%s,nofail,_netdev,noauto,x-systemd.automount,"
                "x-systemd.device-timeout=10,comment=x,nosuid,nodev,noexec" % key)
        rc, err = run_mount(["mount", "-t", "fuse." + dotless_kekfs(), backing, mnt, "-o", opts])
        assert_eq(rc, 0, "mount: %s" % err)
        ents = mount_entries(mnt)
        assert ents, "mount(8) returned 0 before the mount was there"
        assert_eq(ents[0][2], "fuse.kekfs", "fs type")
        flags = ents[0][3].split(",")
        for f in ("nosuid", "nodev", "noexec"):
            assert f in flags, "%s not applied: %s" % (f, ents[0][3])
        write_file(os.path.join(mnt, "f"), b"through mount(8)")
        unmount_and_wait(mnt)
        rc, err = run_mount(["mount", "-t", "fuse." + dotless_kekfs(), backing, mnt, "-o",
                             "ro,keyfile=" + key])
        assert_eq(rc, 0, "mount ro: %s" % err)
        assert "ro" in mount_entries(mnt)[0][3].split(","), "ro not applied"
        assert_eq(read_file(os.path.join(mnt, "f")), b"through mount(8)", "content")
        unmount_and_wait(mnt)
    finally:
        force_unmount(mnt)


def test_mount8_failures_are_one_line_and_leave_nothing():
    """A wrong key, an unknown option or a missing key file: mount(8) fails with one
    'kekfs: ' line, nothing mounted, no daemon."""
    require_tools("mount", "mount.fuse3")
    base, backing, mnt, key = fresh_volume()
    wrong = make_key_file(base, name="wrong")
    try:
        cases = [("keyfile=" + wrong, "cannot unlock"),
                 ("keyfile=%s,bogus_option" % key, "unknown mount option 'bogus_option'"),
                 ("keyfile=" + os.path.join(base, "nokey"), "cannot read key file"),
                 ("key-command=relative/prog", "absolute path")]
        for opts, want in cases:
            rc, err = run_mount(["mount", "-t", "fuse." + dotless_kekfs(), backing, mnt,
                                 "-o", opts])
            line = assert_one_line_failure(rc, err, "mount -o " + opts, mnt)
            assert want in line, "%r: message %r lacks %r" % (opts, line, want)
    finally:
        force_unmount(mnt)


def test_fstab_line_in_a_temporary_fstab():
    """The documented fstab line works with 'mount -T FILE MOUNTPOINT' and
    'mount --fstab FILE -a'."""
    require_tools("mount")
    base, backing, mnt, key = fresh_volume()
    fstab = os.path.join(base, "fstab")
    with open(fstab, "w") as f:
        f.write("# kekfs test\n%s %s fuse.%s keyfile=%s,allow_other,nofail 0 0\n"
                % (backing, mnt, dotless_kekfs(), key))
    try:
        rc, err = run_mount(["mount", "-T", fstab, mnt])
        assert_eq(rc, 0, "mount -T: %s" % err)
        assert "allow_other" in mount_entries(mnt)[0][3], "allow_other not applied"
        write_file(os.path.join(mnt, "x"), b"fstab")
        unmount_and_wait(mnt)
        rc, err = run_mount(["mount", "--fstab", fstab, "-a", "-t", "fuse." + dotless_kekfs()])
        assert_eq(rc, 0, "mount --fstab -a: %s" % err)
        assert_eq(read_file(os.path.join(mnt, "x")), b"fstab", "content after mount -a")
        unmount_and_wait(mnt)
        # a key-command with an argument: fstab writes the space as \040, and it must reach
        # the program as a separate argument through mount(8), mount.fuse3 and its shell
        cmd = os.path.join(base, "kms")
        with open(cmd, "w") as f:
            f.write('#!/bin/sh\n[ "$#" = 1 ] || exit 9\ncat "$1"\n')
        os.chmod(cmd, 0o755)
        with open(fstab, "w") as f:
            f.write("%s %s fuse.%s key-command=%s\\040%s,nofail 0 0\n"
                    % (backing, mnt, dotless_kekfs(), cmd, key))
        rc, err = run_mount(["mount", "-T", fstab, mnt])
        assert_eq(rc, 0, "mount -T with key-command: %s" % err)
        assert_eq(read_file(os.path.join(mnt, "x")), b"fstab", "content (key-command)")
        unmount_and_wait(mnt)
    finally:
        force_unmount(mnt)


def test_helper_argv_shape_directly():
    """'kekfs SOURCE MOUNTPOINT -o OPTS' (what mount.fuse3 runs) and mount -f (fake)."""
    base, backing, mnt, key = fresh_volume()
    try:
        r = run_kekfs(backing, mnt, "-f", "-o", "keyfile=" + key)
        assert_eq(r.returncode, 0, "fake mount: %r" % r)
        assert not is_mounted(mnt), "mount -f (fake) mounted"
        r = run_kekfs(backing, mnt, "-o", "keyfile=" + key, "-o", "users")
        assert_eq(r.returncode, 0, "helper mount: %r" % r)
        assert is_mounted(mnt), "helper returned 0 before the mount was ready"
        unmount_and_wait(mnt)
        r = run_kekfs(backing, mnt, "-N", "1", "-o", "keyfile=" + key)
        assert r.returncode != 0 and len(r.err_lines()) == 1, "mount -N: %r" % r
    finally:
        force_unmount(mnt)


class NotifyListener(object):
    """A datagram socket in the role of systemd's notify socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path.startswith("@"):
            self.sock.bind("\0" + path[1:])
        else:
            self.sock.bind(path)
        self.path = path

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


def notify_roundtrip(sock_name, mnt, argv):
    """Runs a foreground daemon with NOTIFY_SOCKET; READY=1 must come only once the mount is
    there; SIGTERM must unmount, send STOPPING=1 and exit 0."""
    lst = NotifyListener(sock_name)
    env = dict(os.environ, NOTIFY_SOCKET=sock_name)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        msg = lst.recv(30)
        assert msg is not None, "no notification within 30 s"
        assert "READY=1" in msg.split("\n"), "first notification is not READY=1: %r" % msg
        assert is_mounted(mnt), "READY=1 sent before %s was mounted" % mnt
        assert p.poll() is None, "daemon exited after READY=1"
        os.kill(p.pid, signal.SIGTERM)
        assert_eq(p.wait(timeout=UMOUNT_TIMEOUT), 0, "exit status after SIGTERM")
        assert not is_mounted(mnt), "still mounted after SIGTERM"
        msg = lst.recv(5)
        assert msg is not None and "STOPPING=1" in msg.split("\n"), \
            "no STOPPING=1 on SIGTERM: %r" % msg
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        lst.close()
        force_unmount(mnt)


def test_notify_ready_and_sigterm_path_socket():
    base, backing, mnt, key = fresh_volume()
    notify_roundtrip(os.path.join(base, "notify.sock"), mnt,
                     [kekfs_bin(), "mount", "-f", "--key-file", key, backing, mnt])


def test_notify_ready_abstract_socket():
    base, backing, mnt, key = fresh_volume()
    notify_roundtrip("@kekfs-test-%d-%d" % (os.getpid(), time.monotonic_ns()), mnt,
                     [kekfs_bin(), "mount", "-f", "--key-file", key, backing, mnt])


def test_control_threads_leave_signals_to_the_fuse_loop():
    """The control socket's two threads block every signal. A SIGTERM the kernel handed to one
    of them (it does when the main thread blocks signals for an instant, creating a thread)
    only set libfuse's exit flag and woke no thread of the loop: the daemon then ignored it
    until the next request, which made test_notify_ready_* time out once in CI."""
    with Volume() as v:
        pid = v.daemon_pids[0]
        masks = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            if comm.startswith("kekfs-ctl"):
                with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                    masks[comm] = int([line.split()[1] for line in f
                                       if line.startswith("SigBlk:")][0], 16)
        assert_eq(sorted(masks), ["kekfs-ctl", "kekfs-ctl-work"], "control threads")
        for comm, mask in masks.items():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                assert mask & (1 << (sig - 1)), "%s does not block %s" % (comm, sig.name)


def test_notify_nothing_sent_when_mount_fails():
    """A failed mount must never say READY=1."""
    base, backing, mnt, key = fresh_volume()
    wrong = make_key_file(base, name="wrong")
    sock = os.path.join(base, "notify.sock")
    lst = NotifyListener(sock)
    try:
        r = run_kekfs("mount", "-f", "--key-file", wrong, backing, mnt,
                      env=dict(os.environ, NOTIFY_SOCKET=sock))
        assert r.returncode != 0, "mount with a wrong key succeeded"
        msg = lst.recv(0.2)
        assert msg is None, "a failed mount notified %r" % msg
    finally:
        lst.close()
        force_unmount(mnt)


def test_remount_ro_and_rw_through_mount8():
    """mount -o remount,ro / remount,rw (mount.fuse3 runs kekfs with 'remount'): writes and
    the daemon's own key changes stop and come back, nosuid and nodev stay; a remount,ro with
    a file open for writing, and a remount,rw of a volume mounted read-only, are refused in
    one line and change nothing."""
    require_tools("mount", "umount", "mount.fuse3")
    base, backing, mnt, key = fresh_volume("remount")
    prog = "fuse." + dotless_kekfs()
    try:
        rc, err = run_mount(["mount", "-t", prog, backing, mnt, "-o",
                             "nosuid,nodev,keyfile=" + key])
        assert_eq(rc, 0, "mount: %s" % err)
        flags = set(mount_entries(mnt)[0][3].split(","))
        assert {"rw", "nosuid", "nodev"} <= flags, flags
        write_file(os.path.join(mnt, "f"), b"before")
        rc, err = run_mount(["mount", "-t", prog, "-o", "remount,ro", mnt])
        assert_eq(rc, 0, "remount,ro: %s" % err)
        assert_eq(set(mount_entries(mnt)[0][3].split(",")), flags - {"rw"} | {"ro"},
                  "flags after remount,ro")
        try:
            write_file(os.path.join(mnt, "g"), b"x")
            raise AssertionError("a write succeeded on a mount remounted read-only")
        except OSError as e:
            assert_eq(e.errno, 30, "errno of a write after remount,ro (EROFS)")
        r = run_kekfs("rotate", mnt)
        assert r.returncode != 0 and b"remounted read-only" in r.stderr, r
        rc, err = run_mount(["mount", "-t", prog, "-o", "remount,rw", mnt])
        assert_eq(rc, 0, "remount,rw: %s" % err)
        assert "rw" in mount_entries(mnt)[0][3].split(","), mount_entries(mnt)
        write_file(os.path.join(mnt, "g"), b"after")
        r = run_kekfs("rotate", mnt)
        assert_eq(r.returncode, 0, "rotate after remount,rw: %r" % (r,))
        wait_rewrap_finished(types.SimpleNamespace(mnt=mnt))
        with open(os.path.join(mnt, "f"), "ab"):
            rc, err = run_mount(["mount", "-t", prog, "-o", "remount,ro", mnt])
        line = assert_one_line_failure_kept_mounted(rc, err, "remount,ro with a writer", mnt)
        assert "open for writing" in line, line
        assert "rw" in mount_entries(mnt)[0][3].split(","), mount_entries(mnt)
        unmount_and_wait(mnt)
        rc, err = run_mount(["mount", "-t", prog, backing, mnt, "-o", "ro,keyfile=" + key])
        assert_eq(rc, 0, "mount -o ro: %s" % err)
        rc, err = run_mount(["mount", "-t", prog, "-o", "remount,rw", mnt])
        line = assert_one_line_failure_kept_mounted(rc, err, "remount,rw of a ro mount", mnt)
        assert "mount it read-write" in line, line
        assert "ro" in mount_entries(mnt)[0][3].split(","), mount_entries(mnt)
        assert_eq(read_file(os.path.join(mnt, "g")), b"after", "contents after the remounts")
    finally:
        force_unmount(mnt)


def assert_one_line_failure_kept_mounted(rc, err, what, mnt):
    assert rc != 0, "%s succeeded" % what
    kek = [l for l in err if l.startswith("kekfs: ")]
    assert_eq(len(kek), 1, "%s: want one 'kekfs: ' line, got %r" % (what, err))
    assert is_mounted(mnt), "%s unmounted %s" % (what, mnt)
    return kek[0]
