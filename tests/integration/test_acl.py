"""POSIX ACLs on a kekfs mount are enforced, not decoration (issue 14): kekfs negotiates
FUSE_CAP_POSIX_ACL, so the kernel checks the ACLs kekfs stores on the backing files. A real
second local user (useradd, prefix aclt) reads through an allow_other mount as root runs it."""

import contextlib
import os
import pwd
import subprocess
import tempfile

from kekfs_harness import (Volume, run_kekfs, write_file, read_file, assert_eq, wait_for,
                           require_tools, rmtree)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


@contextlib.contextmanager
def acl_volume():
    """(volume, reader, outsider): a root allow_other mount on a mountpoint every user can
    reach, and two fresh local users; all removed afterwards, even when the test fails."""
    require_tools("setfacl", "getfacl", "useradd", "userdel", "runuser")
    tag = os.getpid() % 100000
    names = ["aclt%d" % tag, "acltg%d" % tag]
    mnt_parent = tempfile.mkdtemp(prefix="kekfs-aclt-", dir="/tmp")
    made = []
    try:
        for n in names:
            subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", n], check=True,
                           capture_output=True, timeout=60)
            made.append(n)
        os.chmod(mnt_parent, 0o755)
        with Volume(do_mount=False) as v:
            v.mnt = os.path.join(mnt_parent, "mnt")
            os.mkdir(v.mnt)
            v.mount("allow_other")
            os.chmod(v.mnt, 0o755)
            yield v, pwd.getpwnam(names[0]), pwd.getpwnam(names[1])
    finally:
        for n in made:
            subprocess.run(["userdel", n], capture_output=True, timeout=60)
        rmtree(mnt_parent)


def as_user(user, *argv):
    return subprocess.run(["runuser", "-u", user.pw_name, "--"] + list(argv),
                          capture_output=True, timeout=60)


def can_read(user, path):
    return as_user(user, "cat", path).returncode == 0


def can_write(user, path):
    return as_user(user, "sh", "-c", 'echo x >> "$1"', "sh", path).returncode == 0


def facl(*argv):
    r = subprocess.run(list(argv), capture_output=True, timeout=60)
    assert_eq(r.returncode, 0, "%s: %r" % (" ".join(argv), r.stderr))
    return r.stdout.decode()


def acl_entries(path, default=False):
    """getfacl's entries of path (comments and blank lines left out)."""
    out = facl("getfacl", "-cpE" + ("d" if default else ""), path)
    return sorted(l for l in out.splitlines() if l and not l.startswith("#"))


def mode_of(path):
    return os.stat(path).st_mode & 0o7777


def test_named_user_entry_grants_and_removing_it_takes_away():
    """A 0600 root file with user:READER:r-- is readable by READER, not by another user, and
    setfacl -b takes the right away again (on main: EACCES, the mode bits alone decided)."""
    with acl_volume() as (v, reader, outsider):
        p = v.path("secret")
        write_file(p, b"for the reader\n", mode=0o600)
        assert not can_read(reader, p), "a 0600 root file was readable without an ACL"
        facl("setfacl", "-m", "u:%s:r--" % reader.pw_name, p)
        assert can_read(reader, p), "user:%s:r-- did not let that user read" % reader.pw_name
        assert not can_write(reader, p), "an r-- entry let the user write"
        assert not can_read(outsider, p), "a user the ACL does not name could read"
        facl("setfacl", "-b", p)
        assert not can_read(reader, p), "setfacl -b left the named user's right in place"
        assert_eq(acl_entries(p), ["group::---", "other::---", "user::rw-"], "ACL after -b")


def test_group_member_gets_only_the_mask():
    """A group entry rw- under a mask r-- lets a member read, not write; chmod g=rw widens the
    mask (getfacl shows it) and the member may write; setfacl -m m::--- narrows the mode."""
    with acl_volume() as (v, reader, outsider):
        p = v.path("shared")
        write_file(p, b"group data\n", mode=0o600)
        facl("setfacl", "-m", "g:%s:rw-,m::r--" % reader.pw_name, p)
        assert_eq(mode_of(p), 0o640, "mode after setfacl set the mask to r--")
        assert can_read(reader, p), "a group member with rw- under mask r-- could not read"
        assert not can_write(reader, p), "a group member got more than the mask's r--"
        os.chmod(p, 0o660)
        assert "mask::rw-" in acl_entries(p), "chmod g=rw did not change the mask"
        assert can_write(reader, p), "after chmod g=rw the member still could not write"
        facl("setfacl", "-m", "m::---", p)
        assert_eq(mode_of(p), 0o600, "mode after setfacl -m m::---")
        assert not can_read(reader, p), "mask --- still let the group member read"


def test_default_acl_is_inherited():
    """A default ACL on a directory reaches a new file and a new subdirectory (whose default
    ACL it also gets); the umask does not apply under a default ACL."""
    with acl_volume() as (v, reader, outsider):
        d = v.path("dir")
        os.mkdir(d, 0o755)
        facl("setfacl", "-m", "d:u:%s:rwx,d:m::rwx" % reader.pw_name, d)
        old = os.umask(0o077)
        try:
            write_file(os.path.join(d, "f"), b"inherited\n", mode=0o640)
            os.mkdir(os.path.join(d, "sub"), 0o750)
        finally:
            os.umask(old)
        f, sub = os.path.join(d, "f"), os.path.join(d, "sub")
        want = "user:%s:rwx" % reader.pw_name
        assert want in "\n".join(acl_entries(f)), acl_entries(f)
        assert want in "\n".join(acl_entries(sub)), acl_entries(sub)
        assert want in "\n".join(acl_entries(sub, default=True)), "subdir lost the default"
        assert_eq(mode_of(f), 0o640, "new file's mode (mask from create's mode, no umask)")
        assert_eq(mode_of(sub), 0o750, "new directory's mode")
        assert can_read(reader, f), "the inherited entry did not let the user read"
        assert not can_read(outsider, f), "a user the ACL does not name could read"


def test_acls_survive_remount_and_kek_rotation():
    """An access and a default ACL are still there, and still enforced, after a remount and
    after an online KEK rotation has re-wrapped every header."""
    with acl_volume() as (v, reader, outsider):
        p, d = v.path("kept"), v.path("kd")
        write_file(p, b"kept\n", mode=0o600)
        os.mkdir(d, 0o700)
        facl("setfacl", "-m", "u:%s:r--" % reader.pw_name, p)
        facl("setfacl", "-m", "d:u:%s:r-x" % reader.pw_name, d)
        before = (acl_entries(p), acl_entries(d, default=True))
        v.remount("allow_other")
        assert_eq((acl_entries(p), acl_entries(d, default=True)), before, "after remount")
        assert can_read(reader, p), "the ACL was not enforced after a remount"
        r = run_kekfs("rotate", v.mnt)
        assert_eq(r.returncode, 0, "kekfs rotate: %r" % r)
        assert wait_for(lambda: b"re-wrap: finished" in run_kekfs("status", v.mnt).stdout,
                        120, interval=0.05), "re-wrap did not finish"
        assert_eq((acl_entries(p), acl_entries(d, default=True)), before, "after rotation")
        assert can_read(reader, p), "the ACL was not enforced after a KEK rotation"
        assert_eq(read_file(p), b"kept\n", "content after rotation")
