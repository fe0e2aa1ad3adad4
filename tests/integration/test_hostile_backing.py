"""A hostile backing directory (issue 14, attacks 2 and 4): someone who can write only the
backing directory plants symbolic links and FIFOs where kekfs keeps its own files. A root
daemon must neither write through a link nor block on a FIFO: it refuses in one line, or
fails the one request (EIO), and the mount stays usable."""

import os
import stat
import subprocess
import sys
import time

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           run_kekfs, find_daemon_pids)
from test_rotation import kekfs_ok, wait_rewrap_finished

BOUND = 20.0  # seconds: far more than any of these takes when nothing blocks


class Outside(object):
    """A directory outside the volume with one file the attacker aims at; checks that
    neither that file nor the directory changed."""

    def __init__(self, base):
        self.dir = os.path.join(base, "outside-victim")
        os.mkdir(self.dir)
        self.victim = os.path.join(self.dir, "victim")
        write_file(self.victim, b"root's own file\n", mode=0o644)
        os.utime(self.victim, (1000000000, 1000000000))
        self.before = os.stat(self.victim)

    def target(self, name):
        return os.path.join(self.dir, "new-" + name)

    def check(self, what):
        st = os.stat(self.victim)
        assert_eq(read_file(self.victim), b"root's own file\n", "victim content " + what)
        assert_eq(stat.S_IMODE(st.st_mode), 0o644, "victim mode " + what)
        assert_eq(st.st_mtime_ns, self.before.st_mtime_ns, "victim mtime " + what)
        assert_eq(sorted(os.listdir(self.dir)), ["victim"], "files created outside " + what)


def planted_names(v):
    """Every name kekfs writes in .kekfs that an attacker can guess: the markers, and the
    temp names of the keyring and config for each thread id of the daemon and for the next
    pids (a CLI started soon after)."""
    tids = set()
    for pid in v.daemon_pids or find_daemon_pids(v.mnt):
        try:
            tids.update(int(t) for t in os.listdir("/proc/%d/task" % pid))
        except OSError:
            pass
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    tids.update(range(last + 1, last + 600))
    names = ["rewrap-pending", "seal-pending"]
    for t in sorted(tids):
        names += ["keyring.tmp.%d" % t, "volume.tmp.%d" % t]
    return names


def plant_links(v, outside, at_victim):
    kk = v.bpath(".kekfs")
    for n in planted_names(v):
        if not os.path.lexists(os.path.join(kk, n)):
            os.symlink(outside.victim if at_victim else outside.target(n), os.path.join(kk, n))


def test_symlinks_in_kekfs_are_not_followed():
    """Links planted as the keyring and config temp files and as rewrap-pending and
    seal-pending, at an existing outside file and at names that do not exist: online and
    offline rotation and a seal write through none of them."""
    with Volume(names="plaintext") as v:
        data = pattern(20000, 3)
        write_file(v.path("f"), data)
        outside = Outside(v.base)
        for at_victim in (True, False):
            what = "(links at %s)" % ("the victim" if at_victim else "new names")
            plant_links(v, outside, at_victim)
            kekfs_ok("rotate", v.mnt)
            wait_rewrap_finished(v)
            outside.check("after an online rotation " + what)
            out = kekfs_ok("shred", "--seal", v.mnt)
            assert "seal: finished" in out, out
            outside.check("after a seal " + what)
            v.umount()
            plant_links(v, outside, at_victim)
            kekfs_ok("rotate", *(v.key_args() + [v.backing]))
            outside.check("after an offline rotation " + what)
            for n in ("keyring", "volume"):
                assert os.path.isfile(v.bpath(".kekfs", n)) and \
                    not os.path.islink(v.bpath(".kekfs", n)), ".kekfs/%s replaced by a link" % n
            v.mount()
            assert_bytes_eq(read_file(v.path("f")), data, "f " + what)


def one_line_refusal(r, *words):
    lines = r.err_lines() if hasattr(r, "err_lines") else r.stderr.decode().splitlines()
    assert r.returncode != 0, "kekfs mount succeeded: %r" % (r,)
    assert_eq(len(lines), 1, "one line of error: %r" % (lines,))
    for w in words:
        assert w in lines[0], "%r not in %r" % (w, lines[0])
    assert r.elapsed < BOUND, r


def test_fifo_as_volume_config():
    """A FIFO as .kekfs/volume: kekfs mount fails at once in one line, never hangs."""
    with Volume(names="plaintext", do_mount=False) as v:
        cfg = v.bpath(".kekfs", "volume")
        saved = os.path.join(v.base, "volume.saved")
        os.rename(cfg, saved)
        os.mkfifo(cfg)
        try:
            r = run_kekfs(*v.mount_argv(), timeout=BOUND)
        finally:
            unblock(cfg)
            os.unlink(cfg)
            os.rename(saved, cfg)
        one_line_refusal(r, ".kekfs/volume", "FIFO", "tampered")
        v.mount()


def test_kekfs_symlink_to_another_directory():
    """.kekfs as a link to a directory elsewhere (a copy of the real one) is refused."""
    with Volume(names="plaintext", do_mount=False) as v:
        kk = v.bpath(".kekfs")
        elsewhere = os.path.join(v.base, "elsewhere")
        os.rename(kk, elsewhere)
        os.symlink(elsewhere, kk)
        try:
            r = run_kekfs(*v.mount_argv(), timeout=BOUND)
        finally:
            os.unlink(kk)
            os.rename(elsewhere, kk)
        one_line_refusal(r, ".kekfs", "symbolic link")
        v.mount()


def test_kekfs_owned_by_another_user():
    """A .kekfs that another user owns, or that group or others may write, is refused."""
    with Volume(names="plaintext", do_mount=False) as v:
        kk = v.bpath(".kekfs")
        for change, undo in ((lambda: os.chown(kk, 54321, -1), lambda: os.chown(kk, 0, -1)),
                             (lambda: os.chmod(kk, 0o770), lambda: os.chmod(kk, 0o700))):
            change()
            try:
                r = run_kekfs(*v.mount_argv(), timeout=BOUND)
            finally:
                undo()
            one_line_refusal(r, ".kekfs", "chmod go-w")
        v.mount()


def unblock(fifo):
    """Opens a planted FIFO for writing and closes it, so that a reader blocked on it (an
    unfixed kekfs) sees end of file and the mount can be taken down."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def bounded(code, *args):
    """Runs a short Python snippet in a child; (returncode, output), or None if it blocked
    for BOUND seconds (the child is then left to the FIFO's unblocking)."""
    p = subprocess.Popen([sys.executable, "-c", code] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        return p, None
    return p, (p.returncode, out.decode())


LIST = "import os, sys\ntry:\n print(sorted(os.listdir(sys.argv[1])))\nexcept OSError as e:\n" \
       " print('errno', e.errno); sys.exit(3)"
STAT = "import os, sys\ntry:\n os.stat(sys.argv[1])\nexcept OSError as e:\n" \
       " print('errno', e.errno); sys.exit(3)"


def still_usable(v, data):
    assert_bytes_eq(read_file(v.path("keep")), data, "another file")
    write_file(v.path("new"), b"n" * 100)
    assert_eq(read_file(v.path("new")), b"n" * 100, "a new file")


def run_bounded(code, path, fifo):
    p, res = bounded(code, path)
    if res is None:
        unblock(fifo)
        try:
            p.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            p.kill()
        raise AssertionError("%s blocked on the FIFO %s for %ss" % (path, fifo, BOUND))
    return res


def test_fifo_as_directory_id():
    """A FIFO in place of a directory's .kekfs.dirid: ls of it fails with EIO at once, and
    the mount stays usable and unmounts."""
    with Volume(names="encrypted") as v:
        data = pattern(5000, 7)
        write_file(v.path("keep"), data)
        os.mkdir(v.path("d"))
        write_file(v.path("d", "inside"), b"i" * 10)
        v.umount()
        idf = os.path.join(v.backing_path("d"), ".kekfs.dirid")
        os.unlink(idf)
        os.mkfifo(idf)
        v.mount()
        try:
            rc, out = run_bounded(LIST, v.path("d"), idf)
            assert_eq((rc, out.split()[:2]), (3, ["errno", "5"]), "ls of the directory")
            still_usable(v, data)
        finally:
            unblock(idf)
        v.umount()


def test_fifo_as_long_name_side_file():
    """A FIFO in place of a long name's side file: ls of the directory and stat of the name
    end at once (the name is left out or EIO), the mount stays usable and unmounts."""
    long_name = "L" * 200
    with Volume(names="encrypted") as v:
        data = pattern(5000, 8)
        write_file(v.path("keep"), data)
        os.mkdir(v.path("d"))
        write_file(v.path("d", long_name), b"x" * 10)
        v.umount()
        bdir = v.backing_path("d")
        sides = [n for n in os.listdir(bdir) if n.startswith(".kekfs.long.")]
        assert_eq(len(sides), 1, "one side file in %r" % os.listdir(bdir))
        side = os.path.join(bdir, sides[0])
        os.unlink(side)
        os.mkfifo(side)
        v.mount()
        try:
            rc, out = run_bounded(LIST, v.path("d"), side)
            assert long_name not in out, "a name read from a FIFO: %r" % out
            assert rc == 0 or "errno 5" in out, (rc, out)
            rc, out = run_bounded(STAT, v.path("d", long_name), side)
            assert rc == 0 or "errno 5" in out, (rc, out)
            still_usable(v, data)
        finally:
            unblock(side)
        v.umount()


def test_symlinks_in_the_tree_are_not_followed():
    """A link planted in the backing tree in place of a file or a directory, pointing
    outside the volume: neither is followed (reads, writes, listing, rotation)."""
    with Volume(names="plaintext") as v:
        outside = Outside(v.base)
        os.mkdir(v.path("d"))
        write_file(v.path("d", "f"), b"f" * 100)
        os.symlink(outside.victim, v.bpath("d", "asfile"))
        os.symlink(outside.dir, v.bpath("asdir"))
        for p in (v.path("d", "asfile"), v.path("asdir", "victim")):
            try:
                with open(p, "r+b") as f:
                    got = f.read()
                    f.write(b"overwritten")
            except OSError:
                got = None
            assert got != b"root's own file\n", "read through the link %s" % p
        listing = os.listdir(v.path("d"))
        for n in listing:
            p = v.path("d", n)
            if os.path.islink(p):
                try:
                    target = os.readlink(p)
                except OSError:  # EIO: its target is not sealed, so not kekfs's link
                    target = None
                assert target != outside.victim, "link shown as its backing target"
        kekfs_ok("rotate", v.mnt)
        wait_rewrap_finished(v)
        outside.check("after reads, writes and a rotation")
        assert_eq(read_file(v.path("d", "f")), b"f" * 100, "the real file")


def test_kekfs_swapped_while_mounted_gets_nothing():
    """.kekfs renamed away and replaced by an empty directory of the attacker's while mounted:
    the daemon pinned the real one at mount, so a rotation saves the keyring and config and
    appends the audit log there, and the planted directory stays empty."""
    with Volume(names="plaintext") as v:
        data = pattern(30000, 5)
        write_file(v.path("f"), data)
        kk, moved = v.bpath(".kekfs"), v.bpath(".kekfs-moved")
        before = {n: read_file(os.path.join(kk, n)) for n in ("keyring", "audit.log")}
        os.rename(kk, moved)
        os.mkdir(kk, 0o700)
        try:
            kekfs_ok("rotate", v.mnt)
            wait_rewrap_finished(v)
            assert_eq(sorted(os.listdir(kk)), [], "files written into the planted .kekfs")
            for n, old in before.items():
                assert read_file(os.path.join(moved, n)) != old, \
                    "the pinned .kekfs/%s did not change with the rotation" % n
            v.umount()
        finally:
            v.umount(check=False)
            for n in os.listdir(kk):
                os.unlink(os.path.join(kk, n))
            os.rmdir(kk)
            os.rename(moved, kk)
        v.mount()
        assert_bytes_eq(read_file(v.path("f")), data, "f after the swap was undone")
