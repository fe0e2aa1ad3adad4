"""Control sockets of non-root mounts (issue 14): another local user must not be able to put
a socket where the mounting user's `kekfs` looks for its daemon, and so must never receive a
request, a key-file fd, or the chance to answer `kekfs shred` with a lie. Both the daemon and
the client check the socket directory (the user's, mode 0700, not a symlink) and the client
checks the server's SO_PEERCRED. Two real local users made with useradd play the victim and
the attacker."""

import contextlib
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

from kekfs_harness import (assert_eq, force_unmount, is_mounted, make_key_file, require_kekfs,
                           wait_for)

FAKE_SERVER = r'''
import array, os, socket, sys
path, log = sys.argv[1], sys.argv[2]
if os.path.lexists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(8)
open(log + ".ready", "w").close()
while True:
    c, _ = s.accept()
    msg, anc, _, _ = c.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
    got = b""
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[:len(data) - len(data) % 4])
            for fd in fds:
                got += os.read(fd, 64)
    with open(log, "ab") as f:
        f.write(b"request %r fd %r\n" % (msg, got))
    c.sendall(b"ok\nshredded 1 file\n")
    c.close()
'''


@contextlib.contextmanager
def local_user(role):
    """A fresh local user auditsock<role><pid>, removed afterwards with the socket directory
    its daemons made in /tmp (a later user with the same uid must not inherit it)."""
    name = "auditsock%s%d" % (role, os.getpid() % 100000)
    subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    pw = pwd.getpwnam(name)
    try:
        yield pw
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        remove_path("/tmp/kekfs-%d" % pw.pw_uid)


def remove_path(p):
    if os.path.islink(p) or os.path.isfile(p):
        os.unlink(p)
    elif os.path.isdir(p):
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def fuse_device_open_to_all():
    """/dev/fuse as on a usual host (0666), so that a user can mount; restored afterwards."""
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", mode | 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


def as_user(pw, *argv, xdg=None, timeout=30):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"}
    if xdg:
        env["XDG_RUNTIME_DIR"] = xdg
    return subprocess.run(["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                           "--clear-groups", "--"] + [str(a) for a in argv],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, start_new_session=True)


def kekfs_as(pw, *args, xdg=None):
    return as_user(pw, require_kekfs(), *args, xdg=xdg)


class UserVolume(object):
    """A volume made and mounted by user pw (a non-root daemon), in a directory of its own."""

    def __init__(self, pw, xdg=None):
        self.pw, self.xdg = pw, xdg

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="auditsock-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.backing, self.mnt = os.path.join(self.base, "b"), os.path.join(self.base, "m")
        os.mkdir(self.backing)
        os.mkdir(self.mnt)
        self.key_file = make_key_file(self.base)
        self.new_key = make_key_file(self.base, name="newkey")
        for p in (self.backing, self.mnt, self.key_file, self.new_key):
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)
        return self

    def mount(self):
        r = kekfs_as(self.pw, "init", "--key-file", self.key_file, self.backing, xdg=self.xdg)
        assert_eq(r.returncode, 0, "init as the user: %r" % r.stderr)
        with fuse_device_open_to_all():
            r = kekfs_as(self.pw, "mount", "--key-file", self.key_file, self.backing,
                         self.mnt, xdg=self.xdg)
        assert_eq(r.returncode, 0, "mount as the user: %r" % r.stderr)
        # is_mounted, not wait_mounted: root may not stat another user's FUSE mount
        assert wait_for(lambda: is_mounted(self.mnt), 10), "the user's mount did not appear"
        r = as_user(self.pw, "sh", "-c", "echo secret > %s/f" % self.mnt)
        assert_eq(r.returncode, 0, "write as the user: %r" % r.stderr)

    def __exit__(self, *exc):
        force_unmount(self.mnt)
        shutil.rmtree(self.base, ignore_errors=True)


def socket_name(mnt):
    return hashlib.blake2b(os.path.realpath(mnt).encode(), digest_size=16).hexdigest() + ".sock"


@contextlib.contextmanager
def fake_server(attacker, sock_path, workdir):
    """The attacker's socket server at sock_path; yields the file it logs requests to."""
    logdir = os.path.join(workdir, "attacker")
    os.mkdir(logdir)
    os.chown(logdir, attacker.pw_uid, attacker.pw_gid)
    script, log = os.path.join(workdir, "fake_server.py"), os.path.join(logdir, "log")
    with open(script, "w") as f:
        f.write(FAKE_SERVER)
    p = subprocess.Popen(["setpriv", "--reuid=%d" % attacker.pw_uid,
                          "--regid=%d" % attacker.pw_gid, "--clear-groups", "--",
                          "python3", script, sock_path, log], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(log + ".ready"), 10), "fake server not ready"
        yield log
    finally:
        p.kill()
        p.wait()


def stolen(log):
    if not os.path.exists(log):
        return b""
    with open(log, "rb") as f:
        return f.read()


def attacker_dir(victim, attacker, symlink_to=None):
    """The attacker's /tmp/kekfs-<victim uid>: a 0777 directory, or a symlink to one."""
    d = "/tmp/kekfs-%d" % victim.pw_uid
    remove_path(d)
    target = symlink_to or d
    os.mkdir(target)
    os.chown(target, attacker.pw_uid, attacker.pw_gid)
    os.chmod(target, 0o777)
    if symlink_to:
        os.symlink(symlink_to, d)
    return d, target


def assert_refused(r, what, where):
    lines = r.stderr.decode().strip().split("\n")
    assert r.returncode != 0, "%s talked to the attacker's socket: %r" % (what, r.stdout)
    assert len(lines) == 1 and where in lines[0], "%s: want one line naming %s: %r" % (
        what, where, lines)


def test_precreated_socket_directory_gets_no_request_and_no_fd():
    """The attacker makes /tmp/kekfs-<victim uid> before the victim mounts, then puts a fake
    daemon in it. The victim's daemon does not use it; the victim's status, keys import and
    shred refuse in one line naming it; the fake daemon gets no request and no key-file fd,
    and the file is still there."""
    with local_user("v") as victim, local_user("a") as attacker, \
            UserVolume(victim) as v:
        d, _ = attacker_dir(victim, attacker)
        try:
            v.mount()
            used = [n for n in os.listdir(d) if os.stat(os.path.join(d, n)).st_uid != 0]
            with fake_server(attacker, os.path.join(d, socket_name(v.mnt)), v.base) as log:
                r = kekfs_as(victim, "keys", "import", "--file", v.new_key, v.mnt)
                assert_eq(stolen(log), b"", "what the attacker received")
                assert_refused(r, "keys import", d)
                assert_refused(kekfs_as(victim, "shred", os.path.join(v.mnt, "f")), "shred", d)
                assert_refused(kekfs_as(victim, "status", v.mnt), "status", d)
                assert_eq(stolen(log), b"", "what the attacker received")
            assert_eq(used, [], "sockets the victim's daemon made in the attacker's directory")
            r = as_user(victim, "cat", os.path.join(v.mnt, "f"))
            assert_eq(r.stdout, b"secret\n", "the file")
        finally:
            remove_path(d)


def test_xdg_runtime_dir_is_used_and_a_symlinked_directory_refused():
    """With XDG_RUNTIME_DIR the socket is in $XDG_RUNTIME_DIR/kekfs (0700) and status works;
    a client without it that finds /tmp/kekfs-<uid> to be the attacker's symlink refuses."""
    with local_user("v") as victim, local_user("a") as attacker:
        xdg = tempfile.mkdtemp(prefix="auditsock-xdg-", dir="/tmp")
        os.chown(xdg, victim.pw_uid, victim.pw_gid)
        d, target = None, None
        try:
            with UserVolume(victim, xdg=xdg) as v:
                v.mount()
                sock = os.path.join(xdg, "kekfs", socket_name(v.mnt))
                assert stat.S_ISSOCK(os.lstat(sock).st_mode), "no socket in XDG_RUNTIME_DIR"
                assert_eq(stat.S_IMODE(os.lstat(os.path.dirname(sock)).st_mode), 0o700, "mode")
                r = kekfs_as(victim, "status", v.mnt, xdg=xdg)
                assert r.returncode == 0 and b"mounted on: " in r.stdout, r
                d, target = attacker_dir(victim, attacker,
                                         symlink_to=os.path.join(v.base, "attacker-dir"))
                with fake_server(attacker, os.path.join(target, socket_name(v.mnt)),
                                 v.base) as log:
                    assert_refused(kekfs_as(victim, "status", v.mnt), "status", d)
                    assert_eq(stolen(log), b"", "what the attacker received")
        finally:
            if d:
                remove_path(d)
            shutil.rmtree(xdg, ignore_errors=True)
