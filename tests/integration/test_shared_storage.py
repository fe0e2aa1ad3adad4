"""kekfs on a real distributed file system (issue 18): a GlusterFS replica-2 volume, mounted
at two places that stand for two hosts (tests/integration/gluster_harness.py).

On GlusterFS renameat2(RENAME_NOREPLACE) is refused with EINVAL, so at 0daec58 every mkdir
of an encrypted-names volume failed there."""

import errno
import os

from kekfs_harness import (Volume, run_kekfs, write_file, read_file, assert_eq, pattern,
                           walk_tree)
from gluster_harness import Gluster

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def volume_on(mountpoint, **kw):
    """A kekfs volume whose backing directory is on the GlusterFS client at mountpoint."""
    v = Volume(do_init=False, do_mount=False, **kw)
    v.__enter__()
    v.backing = os.path.join(mountpoint, "vault")
    v.keyring = os.path.join(v.backing, ".kekfs", "keyring")
    v.init()
    return v


def test_tree_on_glusterfs_round_trips():
    """Directories, nested ones, files of several sizes, a rename and a remount: all as
    written, through a kekfs mount whose backing directory is on GlusterFS."""
    with Gluster(mounts=1) as g:
        v = volume_on(g.mounts[0])
        try:
            v.mount()
            want = {}
            for d in ("a", "a/b", "a/b/c", "d"):
                os.mkdir(v.path(d))
            for i, size in enumerate((0, 1, 4095, 4096, 70000, 300001)):
                name = "a/b/c/f%d" % i if i % 2 else "d/f%d" % i
                want[name] = pattern(size, i)
                write_file(v.path(name), want[name])
            os.rename(v.path("d/f0"), v.path("a/moved"))
            want["a/moved"] = want.pop("d/f0")
            try:
                os.mkdir(v.path("a/b"))
                raise AssertionError("mkdir over an existing directory succeeded")
            except OSError as e:
                assert_eq(e.errno, errno.EEXIST, "mkdir over an existing directory")
            v.umount()
            v.mount()
            for name, data in want.items():
                assert_eq(read_file(v.path(name)), data, name)
            assert_eq(sorted(os.listdir(v.path("a"))), ["b", "moved"], "listing of a")
        finally:
            v.cleanup()


def test_second_daemon_refused_across_hosts():
    """The one-volume-one-daemon lock holds through GlusterFS: with the volume mounted
    through host 0, a mount of the same backing directory through host 1 is refused in one
    line that names the holder, and an offline rotation through host 1 too."""
    with Gluster(mounts=2) as g:
        v = volume_on(g.mounts[0])
        try:
            v.mount()
            write_file(v.path("f"), b"host 0")
            other = os.path.join(g.mounts[1], "vault")
            mnt2 = os.path.join(v.base, "mnt2")
            os.mkdir(mnt2)
            r = run_kekfs("mount", *(v.key_args() + [other, mnt2]))
            err = r.stderr.decode(errors="replace").strip()
            assert r.returncode != 0, "a second daemon mounted the volume through host 1"
            assert "in use by the kekfs daemon of %s" % v.mnt in err, err
            assert_eq(len(err.splitlines()), 1, "one line: %r" % err)
            r = run_kekfs("rotate", *(v.key_args() + [other]))
            assert r.returncode != 0 and b"in use" in r.stderr, "offline rotate: %r" % r
            assert_eq(read_file(v.path("f")), b"host 0", "the file after the refusals")
        finally:
            v.cleanup()
