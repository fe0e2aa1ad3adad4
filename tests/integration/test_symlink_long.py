"""Symlink targets up to PATH_MAX - 1 bytes, as a plain directory takes (issue 19). A target
too long for a backing symlink once sealed (more than 3031 bytes) goes to a side object in
.kekfs/links, written before the symlink, named by its hash, freed with the symlink's last
name, never visible in the mount, and checked by fsck."""

import errno
import os
import subprocess

from kekfs_harness import (Volume, assert_eq, assert_raises_errno, make_tempdir, rmtree,
                           run_kekfs)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

INLINE_MAX = 3031
LENGTHS = (1, INLINE_MAX, INLINE_MAX + 1, 4000, 4095)


def target(n, seed=0):
    """A path-like target of exactly n bytes."""
    s = "/".join("d%d-%d" % (seed, i) for i in range(n // 6 + 1))
    return (s + "x" * n)[:n]


def side_objects(v):
    d = v.bpath(".kekfs", "links")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_targets_up_to_path_max_as_on_a_plain_directory():
    """Each length round-trips through readlink and lstat's st_size, before and after a
    remount, exactly as on a plain directory; PATH_MAX bytes fails there and here alike."""
    plain = make_tempdir("symlink-plain")
    try:
        with Volume() as v:
            for n in LENGTHS:
                for d in (plain, v.mnt):
                    os.symlink(target(n, n), os.path.join(d, "l%d" % n))
            assert_eq(len(side_objects(v)), 3, "side objects: one per target over 3031 bytes")
            for _ in range(2):
                for n in LENGTHS:
                    want = os.readlink(os.path.join(plain, "l%d" % n))
                    assert_eq(os.readlink(v.path("l%d" % n)), want, "target of %d bytes" % n)
                    assert_eq(os.lstat(v.path("l%d" % n)).st_size,
                              os.lstat(os.path.join(plain, "l%d" % n)).st_size,
                              "st_size of a %d-byte target" % n)
                v.remount()
            for d in (plain, v.mnt):
                assert_raises_errno(errno.ENAMETOOLONG, os.symlink, "t" * 4096,
                                    os.path.join(d, "too-long"))
            assert_eq(sorted(os.listdir(v.mnt)), sorted(os.listdir(plain)),
                      "names in the mount and in the plain directory")
    finally:
        rmtree(plain)


def test_side_object_goes_with_the_last_name():
    """A hard link keeps the target alive; the last unlink, or a rename over the last name,
    frees the side object; a failed create leaves none."""
    with Volume() as v:
        t = target(4000, 1)
        os.symlink(t, v.path("a"))
        os.link(v.path("a"), v.path("b"), follow_symlinks=False)
        os.unlink(v.path("a"))
        assert_eq(os.readlink(v.path("b")), t, "target through the remaining hard link")
        assert_eq(len(side_objects(v)), 1, "side objects while a name is left")
        os.symlink("short", v.path("c"))
        os.rename(v.path("c"), v.path("b"))
        assert_eq(side_objects(v), [], "side objects after a rename over the last name")
        os.symlink(t, v.path("d"))
        assert_raises_errno(errno.EEXIST, os.symlink, t, v.path("d"))
        assert_eq(len(side_objects(v)), 1, "side objects after a create that failed")
        os.unlink(v.path("d"))
        assert_eq(side_objects(v), [], "side objects after the last unlink")


def refs_by_name(v, names):
    """For each mount name, the backing path of its symlink and the side object it names
    (found by inode number, which the mount shows as the backing one)."""
    found = {}
    for e in os.listdir(v.backing):
        p = os.path.join(v.backing, e)
        if os.path.islink(p):
            for n in names:
                if os.lstat(v.path(n)).st_ino == os.lstat(p).st_ino:
                    found[n] = (p, os.readlink(p)[1:])
    assert_eq(sorted(found), sorted(names), "backing symlinks of %r" % (names,))
    return found


def test_tampered_side_objects_read_as_eio():
    """Someone who writes the backing directory edits a side object, puts another's under
    its name, deletes it, or writes a reference that climbs out of .kekfs/links: readlink is
    EIO each time, nothing outside is read, and undoing the damage brings the target back."""
    with Volume() as v:
        want = {"one": target(3500, 1), "two": target(3600, 2)}
        for n, t in want.items():
            os.symlink(t, v.path(n))
        refs = refs_by_name(v, want)
        links = v.bpath(".kekfs", "links")
        obj = {n: os.path.join(links, ref) for n, (_, ref) in refs.items()}
        good = {n: open(p, "rb").read() for n, p in obj.items()}

        def put(n, data):
            with open(obj[n], "wb") as f:
                f.write(data)
        flipped = bytearray(good["one"])
        flipped[30] ^= 1
        damage = [("an edited side object", lambda: put("one", bytes(flipped)), "one"),
                  ("another's side object under its name", lambda: put("two", good["one"]),
                   "two"),
                  ("a deleted side object", lambda: os.unlink(obj["one"]), "one")]
        for what, do, n in damage:
            do()
            assert_raises_errno(errno.EIO, os.readlink, v.path(n))
            put(n, good[n])
            v.remount()  # no cached target hides the next check
            assert_eq(os.readlink(v.path(n)), want[n], "after undoing " + what)
        with open(os.path.join(v.base, "outside"), "wb") as f:
            f.write(b"root's own")
        link = refs["one"][0]
        os.unlink(link)
        os.symlink("~" + "../../outside".ljust(43, "x"), link)
        v.remount()  # a new backing inode: the kernel's cached entry still has the old one
        assert_raises_errno(errno.EIO, os.readlink, v.path("one"))
        assert_eq(os.readlink(v.path("two")), want["two"], "the other target meanwhile")


def test_fsck_reports_orphans_and_broken_references():
    """An orphan side object (a crash between writing it and making the link) is reported
    and removed by --repair; a symlink whose side object is gone is reported."""
    with Volume() as v:
        os.symlink(target(3900, 3), v.path("kept"))
        os.symlink(target(3900, 4), v.path("broken"))
        refs = refs_by_name(v, ("kept", "broken"))
        v.umount()
        links = v.bpath(".kekfs", "links")
        orphan = os.path.join(links, "A" * 43)
        with open(orphan, "wb") as f:
            f.write(b"x" * 100)
        os.unlink(os.path.join(links, refs["broken"][1]))
        r = run_kekfs("fsck", *(v.key_args() + [v.backing]))
        out = r.stdout.decode() + r.stderr.decode()
        assert r.returncode != 0, out
        assert "no symlink names" in out and "side object is missing" in out, out
        run_kekfs("fsck", "--repair", *(v.key_args() + [v.backing]))
        assert not os.path.exists(orphan), "orphan left by --repair"
        assert os.path.exists(os.path.join(links, refs["kept"][1])), "named object removed"
        v.mount()
        assert_eq(os.readlink(v.path("kept")), target(3900, 3), "kept target after repair")


def test_tar_and_rsync_keep_long_targets():
    """A tree with long targets copied out of the mount by tar and rsync, and back in, keeps
    every target."""
    with Volume() as v:
        os.mkdir(v.path("src"))
        for n in LENGTHS:
            os.symlink(target(n, 7), v.path("src", "l%d" % n))
        out = make_tempdir("symlink-out")
        try:
            subprocess.run(["tar", "-C", v.path("src"), "-cf", os.path.join(out, "t.tar"), "."],
                           check=True)
            subprocess.run(["rsync", "-a", v.path("src") + "/", os.path.join(out, "r")],
                           check=True)
            os.mkdir(v.path("back"))
            subprocess.run(["tar", "-C", v.path("back"), "-xf", os.path.join(out, "t.tar")],
                           check=True)
            subprocess.run(["rsync", "-a", os.path.join(out, "r") + "/", v.path("rback")],
                           check=True)
            for n in LENGTHS:
                for d in (os.path.join(out, "r"), v.path("back"), v.path("rback")):
                    assert_eq(os.readlink(os.path.join(d, "l%d" % n)), target(n, 7),
                              "%d-byte target in %s" % (n, d))
        finally:
            rmtree(out)
