"""One volume, one daemon (issue 15, points 3 and 4, and the errors users hit): the daemon
holds a lock on the volume, so a second mount and every offline command that writes are
refused with the holder named; `kekfs umount` unmounts only kekfs mounts, names what keeps a
busy one and detaches it with --lazy; and each error a user meets is one line with a hint."""

import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile

from kekfs_harness import (Volume, Skip, run_kekfs, write_file, read_file, assert_eq, wait_for,
                           wait_mounted, is_mounted, force_unmount, find_daemon_pids, pid_alive,
                           mount_entries, kekfs_bin, rmtree)

USER = "onedaemon1"  # a second local user, made and removed by the tests that need one


def one_line(r, what, *wants, rc=None):
    """r failed (with exit status rc, if given) in one 'kekfs: ' line holding every want."""
    lines = r.err_lines()
    assert r.returncode != 0, "%s: exited 0: %r" % (what, r)
    if rc is not None:
        assert_eq(r.returncode, rc, "%s: exit status (%r)" % (what, r))
    assert len(lines) == 1 and lines[0].startswith("kekfs: "), "%s: want one line: %r" % (what, r)
    for w in wants:
        assert w in lines[0], "%s: %r not in %r" % (what, w, lines[0])
    return lines[0]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def holder(v):
    """How a refusal names the daemon of v: its mount point and pid."""
    pids = find_daemon_pids(v.mnt)
    assert len(pids) == 1, "daemon pids of %s: %r" % (v.mnt, pids)
    return "in use by the kekfs daemon of %s (pid %d)" % (v.mnt, pids[0])


class bind_alias(object):
    """The backing directory bind-mounted at a second path: a name the mount table does not
    give for the mounted volume, as another namespace or host would see it."""

    def __init__(self, v):
        self.path = os.path.join(v.base, "alias")

    def __enter__(self):
        os.mkdir(self.path)
        return self

    def bind(self, source):
        subprocess.run(["mount", "--bind", source, self.path], check=True)
        return self.path

    def __exit__(self, *a):
        if is_mounted(self.path):
            subprocess.run(["umount", "-l", self.path])


def test_second_mount_refused_and_first_still_fine():
    with Volume() as v, bind_alias(v) as alias:
        write_file(v.path("f"), b"first")
        who = holder(v)
        second = os.path.join(v.base, "second")
        os.mkdir(second)
        try:
            for backing in (v.backing, alias.bind(v.backing)):
                r = run_kekfs("mount", *v.key_args(), backing, second)
                one_line(r, "second mount of %s" % backing, who, "unmount it first")
                assert not is_mounted(second), "second mount is mounted"
                assert not find_daemon_pids(second), "a second daemon runs"
        finally:
            force_unmount(second)
        assert_eq(read_file(v.path("f")), b"first", "the first mount after the refusals")
        write_file(v.path("g"), b"after")
        v.remount()
        assert_eq(read_file(v.path("g")), b"after", "a file written after the refusals")


def offline_commands(v, backing, all_of_them):
    """The offline commands that write the volume, each given backing; all_of_them: also those
    that a backing directory the mount table names sends to the daemon instead."""
    cmds = [
        ("rotate", ["rotate", *v.key_args(), backing]),
        ("keys add-slot", ["keys", "add-slot", *v.key_args(), "--new-key-file", v.key_file,
                           backing]),
        ("fsck", ["fsck", *v.key_args(), backing]),
        ("fsck --repair", ["fsck", "--repair", *v.key_args(), backing]),
        ("shred", ["shred", *v.key_args(), backing, "f"]),
        ("rotate --data", ["rotate", "--data", *v.key_args(), backing, "f"]),
        ("init", ["init", *v.key_args(), backing]),
    ]
    return cmds + ([
        ("keys retire", ["keys", "retire", "1", *v.key_args(), backing]),
        ("keys policy", ["keys", "policy", "--rotate-every", "30d", *v.key_args(), backing]),
        ("shred --seal", ["shred", "--seal", *v.key_args(), backing]),
    ] if all_of_them else [])


def test_offline_commands_refused_on_a_mounted_backing():
    with Volume() as v, bind_alias(v) as alias:
        write_file(v.path("f"), b"keep me")
        who = holder(v)
        before = {p: sha(p) for p in (v.keyring, v.bpath(".kekfs", "volume"))}
        # by the backing directory's own name the mount table already tells: the mount point
        for what, argv in offline_commands(v, v.backing, False):
            one_line(run_kekfs(*argv), what + " on the mounted backing", v.mnt)
        # by another name only the lock can tell
        path = alias.bind(v.backing)
        for what, argv in offline_commands(v, path, True):
            one_line(run_kekfs(*argv), what + " through " + path, who)
        after = {p: sha(p) for p in before}
        assert_eq(after, before, "keyring and volume config after the refused commands")
        assert_eq(read_file(v.path("f")), b"keep me", "a file after the refusals")
        v.remount()
        assert_eq(read_file(v.path("f")), b"keep me", "a file after a remount")


def test_two_offline_rotates_one_refused():
    """The first rotate holds the lock from before it reads its key (a FIFO here, so it waits
    there): a second one is refused and names it; once the first is done the second runs."""
    with Volume() as v:
        write_file(v.path("f"), b"x" * 5000)
        v.umount()
        fifo = os.path.join(v.base, "key.fifo")
        os.mkfifo(fifo, 0o600)
        argv = [kekfs_bin(), "rotate", "--key-file", fifo, v.backing]
        first = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
        try:
            lock = v.bpath(".kekfs", "lock")
            assert wait_for(lambda: os.path.exists(lock) and
                            ("pid %d\n" % first.pid) in open(lock).read(), 10), \
                "the first rotate did not take the lock"
            r = run_kekfs("rotate", *v.key_args(), v.backing)
            one_line(r, "second rotate", "in use by 'kekfs rotate' (pid %d)" % first.pid,
                     "wait for it to finish")
            with open(fifo, "wb") as f:
                f.write(v.key)
            out, err = first.communicate(timeout=60)
            assert first.returncode == 0, "first rotate: %r %r" % (out, err)
            assert b"KEK v2 is active" in out, out
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        r = run_kekfs("rotate", *v.key_args(), v.backing)
        assert r.returncode == 0 and b"KEK v3 is active" in r.stdout, r
        v.mount()
        assert_eq(read_file(v.path("f")), b"x" * 5000, "file after two rotations")


def test_lock_released_after_umount_and_after_kill():
    with Volume() as v:
        write_file(v.path("f"), b"data")
        r = run_kekfs("umount", v.mnt)
        assert r.returncode == 0, r
        r = run_kekfs("rotate", *v.key_args(), v.backing)  # right away: the lock is free
        assert r.returncode == 0, "rotate right after kekfs umount: %r" % (r,)
        v.mount()
        pid = find_daemon_pids(v.mnt)[0]
        os.kill(pid, signal.SIGKILL)
        # the lock goes with its last thread: the pid is gone only then (a zombie is not)
        assert wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10), "daemon survived kill -9"
        for argv in (["status", v.mnt], ["rotate", v.mnt], ["status", v.path("f")]):
            one_line(run_kekfs(*argv), " ".join(argv[:1]) + " on a dead mount",
                     "the daemon of %s is gone: run 'kekfs umount %s'" % (v.mnt, v.mnt), rc=1)
        second = os.path.join(v.base, "second")
        os.mkdir(second)
        try:
            r = run_kekfs("mount", *v.key_args(), v.backing, second)
            assert r.returncode == 0, "mount after kill -9 of the daemon: %r" % (r,)
            assert_eq(read_file(os.path.join(second, "f")), b"data", "file on a new mount")
        finally:
            force_unmount(second)
        r = run_kekfs("umount", v.mnt)
        assert r.returncode == 0, "kekfs umount of a dead mount: %r" % (r,)
        assert not is_mounted(v.mnt), "the dead mount is still there"
        v.daemon_pids = []
        v.mount()
        assert_eq(read_file(v.path("f")), b"data", "file on the remounted mount point")


def test_read_only_mount_holds_the_volume_too():
    with Volume(mount_opts="ro") as v:
        second = os.path.join(v.base, "second")
        os.mkdir(second)
        try:
            r = run_kekfs("mount", *v.key_args(), v.backing, second)
            one_line(r, "read-write mount beside a read-only one",
                     "in use by the read-only kekfs mount %s" % v.mnt)
            r = run_kekfs("rotate", *v.key_args(), v.backing)
            one_line(r, "offline rotate beside a read-only mount", v.mnt)
            r = run_kekfs("mount", "-o", "ro", *v.key_args(), v.backing, second)
            assert r.returncode == 0, "a second read-only mount: %r" % (r,)
        finally:
            force_unmount(second)


def test_umount_refuses_what_is_not_kekfs():
    with Volume() as v:
        tmp = os.path.join(v.base, "tmpfs")
        os.mkdir(tmp)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", tmp], check=True)
        try:
            one_line(run_kekfs("umount", tmp), "umount of a tmpfs", "not a kekfs mount")
            assert is_mounted(tmp), "kekfs umount unmounted a tmpfs"
            one_line(run_kekfs("umount", v.base), "umount of a plain directory", "not mounted")
        finally:
            subprocess.run(["umount", tmp])


def holds_file_in(pid, directory):
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(directory + "/"):
                return True
        except OSError:
            pass
    return False


def test_umount_busy_names_the_holder_and_lazy_detaches():
    with Volume() as v:
        os.mkdir(v.path("d"))
        write_file(v.path("d", "f"), b"held")
        pids = find_daemon_pids(v.mnt)
        sleeper = subprocess.Popen(["sleep", "60"], cwd=v.path("d"))
        reader = subprocess.Popen(["tail", "-f", v.path("d", "f")], stdout=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: holds_file_in(reader.pid, v.mnt), 10), "tail never opened"
            line = one_line(run_kekfs("umount", v.mnt), "umount of a busy mount",
                            "pid %d (sleep)" % sleeper.pid, "pid %d (tail)" % reader.pid,
                            "kekfs umount --lazy %s" % v.mnt, rc=1)
            assert "busy" in line, line
            assert is_mounted(v.mnt), "a refused umount unmounted"
            r = run_kekfs("umount", "--lazy", v.mnt)
            assert r.returncode == 0, "umount --lazy: %r" % (r,)
            assert not is_mounted(v.mnt), "still mounted after --lazy"
        finally:
            for p in (sleeper, reader):
                p.kill()
                p.wait()
        assert wait_for(lambda: all(not pid_alive(p) for p in pids), 15), \
            "daemon still running after its last file closed"
        v.daemon_pids = []
        v.mount()
        assert_eq(read_file(v.path("d", "f")), b"held", "file after a lazy unmount")


def test_not_a_volume_messages():
    with Volume() as v:
        os.mkdir(v.path("sub"))
        plain = os.path.join(v.base, "plain")
        os.mkdir(plain)
        want = "not a kekfs volume: give the mount point or the backing directory"
        for argv in (["rotate", *v.key_args(), plain], ["status", *v.key_args(), plain],
                     ["path", "encrypt", *v.key_args(), plain, "x"],
                     ["rotate", v.path("sub")], ["status", v.path("sub")],
                     ["path", "encrypt", *v.key_args(), v.path("sub"), "x"]):
            one_line(run_kekfs(*argv), " ".join(argv), want, rc=1)
        # the mount point itself is fine for path too: it maps through its backing directory
        r = run_kekfs("path", "encrypt", *v.key_args(), v.mnt, "sub")
        assert r.returncode == 0 and r.stdout.startswith(os.fsencode(v.backing)), r


def test_backing_that_is_a_file():
    with Volume(do_mount=False) as v:
        f = os.path.join(v.base, "afile")
        write_file(f, b"x")
        one_line(run_kekfs("mount", *v.key_args(), f, v.mnt), "mount of a file",
                 "not a directory", rc=1)
        one_line(run_kekfs("rotate", *v.key_args(), f), "rotate of a file", "not a directory",
                 rc=1)


def test_usage_errors_exit_2():
    with Volume(do_mount=False) as v:
        for argv in (["mount"], ["mount", v.backing], ["mount", "--bogus", v.backing, v.mnt],
                     ["mount", "-o", "bogus", v.backing, v.mnt], ["mount", v.backing, "--key-file"],
                     ["umount"], ["umount", "--bogus", v.mnt], ["rotate"],
                     ["rotate", "--bogus", v.backing], ["rotate", v.backing, "--key-file"],
                     ["status", "a", "b"], ["keys", "retire"], ["path", "encrypt"]):
            line = one_line(run_kekfs(*argv), " ".join(argv), rc=2)
            assert "--help" in line or "needs" in line, line


class local_user(object):
    """USER, made for one test and always removed; a work dir it may use."""

    def __enter__(self):
        subprocess.run(["userdel", USER], stderr=subprocess.DEVNULL)
        r = subprocess.run(["useradd", "-M", "-s", "/bin/sh", USER], stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise Skip("cannot add a user: %s" % r.stderr.decode())
        self.uid, self.gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(USER).gr_gid
        self.dir = tempfile.mkdtemp(prefix="onedaemon-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        return self

    def run(self, *argv, ns_setup=""):
        """kekfs argv as USER (after ns_setup as root in a private mount namespace)."""
        inner = "setpriv --reuid %d --regid %d --clear-groups -- \"$@\"" % (self.uid, self.gid)
        binary = os.path.join(self.dir, "kekfs")
        if not os.path.exists(binary):
            shutil.copy(kekfs_bin(), binary)
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               ns_setup + inner, "sh", binary, *argv],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                              stdin=subprocess.DEVNULL)

    def __exit__(self, *a):
        rmtree(self.dir)
        subprocess.run(["userdel", USER], stderr=subprocess.DEVNULL)


def user_line(p, what, want):
    lines = [l for l in p.stderr.decode().split("\n") if l]
    assert p.returncode == 1, "%s: exit status %d: %r" % (what, p.returncode, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("kekfs: ") and want in lines[0], \
        "%s: want one line with %r: %r" % (what, want, p.stderr)
    assert "install fuse3" not in lines[0], lines[0]


def test_errors_a_user_meets():
    """As a second local user: /dev/fuse there but not permitted, an unreadable backing."""
    with local_user() as u:
        key, backing, mnt = (os.path.join(u.dir, n) for n in ("key", "backing", "mnt"))
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        r = run_kekfs("init", "--key-file", key, backing)
        assert r.returncode == 0, r
        os.mkdir(mnt)
        for p in (key, backing, mnt):
            os.chown(p, u.uid, u.gid)
        for dp, dns, fns in os.walk(backing):
            for n in dns + fns:
                os.chown(os.path.join(dp, n), u.uid, u.gid)
        denied = os.path.join(u.dir, "fuse000")
        write_file(denied, b"", 0o000)
        p = u.run("mount", "--key-file", key, backing, mnt,
                  ns_setup="mount --bind %s /dev/fuse && " % denied)
        user_line(p, "mount with /dev/fuse not permitted", "/dev/fuse is there but this user "
                  "may not open it")
        os.chown(backing, 0, 0)
        os.chmod(backing, 0o700)
        p = u.run("mount", "--key-file", key, backing, mnt)
        user_line(p, "mount of an unreadable backing", "permission denied")
        p = u.run("rotate", "--key-file", key, backing)
        user_line(p, "rotate of an unreadable backing", "permission denied")
