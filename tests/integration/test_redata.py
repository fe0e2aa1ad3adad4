"""kekfs rotate --data: a file's contents re-encrypted under a fresh DEK, online and offline;
the inode, hard links, xattrs, times and open handles survive; a crash at any point of the
job leaves the old or the new ciphertext, and the next mount finishes it; every refusal."""

import json
import os
import signal
import subprocess
import time

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           run_kekfs, kekfs_bin, wait_for, pid_alive, force_unmount,
                           is_mounted, HEADER_SIZE)
from test_rotation import kekfs_ok
from kekfs_harness import kekfs_fails

FILE_ID = slice(8, 24)  # the file id in the header


def journal(v):
    d = v.bpath(".kekfs", "redata")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def redata_records(v):
    with open(v.bpath(".kekfs", "audit.log")) as f:
        return [json.loads(line) for line in f if '"op":"redata"' in line]


def test_redata_keeps_inode_links_xattrs_times():
    """New DEK and file id, every chunk re-sealed; names, xattrs, mtime and holes kept."""
    for names in ("plaintext", "encrypted"):
        with Volume(names=names) as v:
            data = pattern(300000, 3)
            write_file(v.path("f"), data)
            os.link(v.path("f"), v.path("g"))
            os.setxattr(v.path("f"), "user.colour", b"blue")
            os.utime(v.path("f"), (1000000000, 1000000000))
            with open(v.path("sparse"), "wb") as f:
                f.seek(50 << 20)
                f.write(b"tail")
            bp = v.backing_path("f")
            before, ino = read_file(bp), os.stat(bp).st_ino
            out = kekfs_ok("rotate", "--data", v.path("f"), v.path("sparse"))
            assert "f: re-encrypted under a new data key" in out, out
            after = read_file(bp)
            assert_eq(len(after), len(before), "backing size")
            assert before[FILE_ID] != after[FILE_ID], "the file id did not change"
            c = 4096 + 40
            for i in range(HEADER_SIZE, len(before), c):
                assert before[i:i + c] != after[i:i + c], "chunk at %d kept its ciphertext" % i
            assert_eq(os.stat(bp).st_ino, ino, "backing inode")
            assert_eq(journal(v), [], "journal left behind")
            assert os.stat(v.backing_path("sparse")).st_blocks * 512 < (1 << 20), \
                "the sparse file was filled in"
            v.remount()  # cold: everything read from the new ciphertext
            assert_bytes_eq(read_file(v.path("f")), data)
            assert_bytes_eq(read_file(v.path("g")), data, "the hard link")
            assert_eq(os.stat(v.path("f")).st_nlink, 2, "links")
            assert_eq(os.getxattr(v.path("f"), "user.colour"), b"blue", "xattr")
            assert_eq(int(os.stat(v.path("f")).st_mtime), 1000000000, "mtime")
            with open(v.path("sparse"), "rb") as f:
                f.seek((50 << 20) - 4)
                assert_eq(f.read(), b"\0" * 4 + b"tail", "sparse file tail")
            recs = redata_records(v)
            assert_eq(len(recs), 2, "redata audit records")
            assert recs[0]["detail"].startswith("file " + before[FILE_ID].hex() + " new "), recs
            assert after[FILE_ID].hex() in recs[0]["detail"], recs
            kekfs_ok("audit", "verify", v.mnt)


def test_redata_open_handles_keep_working():
    """A handle open across the re-encryption reads and writes the file under its new DEK."""
    with Volume() as v:
        write_file(v.path("f"), pattern(20000, 1))
        fd = os.open(v.path("f"), os.O_RDWR)
        try:
            kekfs_ok("rotate", "--data", v.path("f"))
            assert_bytes_eq(os.pread(fd, 20000, 0), pattern(20000, 1), "read after")
            os.pwrite(fd, b"NEW" * 3000, 5000)
            os.fsync(fd)
        finally:
            os.close(fd)
        want = bytearray(pattern(20000, 1))
        want[5000:14000] = b"NEW" * 3000
        v.remount()
        assert_bytes_eq(read_file(v.path("f")), bytes(want))


def test_redata_offline():
    """On an unmounted volume: paths inside the volume after BACKING, unlocked with the key."""
    with Volume(names="encrypted") as v:
        os.mkdir(v.path("d"))
        write_file(v.path("d", "f"), pattern(70000, 9))
        write_file(v.path("empty"), b"")
        v.umount()
        bp = v.backing_path("d", "f")
        old = read_file(bp)[FILE_ID]
        out = kekfs_ok("rotate", "--data", *v.key_args(), v.backing, "d/f", "/empty")
        assert "d/f: re-encrypted" in out and "empty: re-encrypted" in out, out
        assert old != read_file(bp)[FILE_ID], "file id unchanged"
        v.mount()
        assert_bytes_eq(read_file(v.path("d", "f")), pattern(70000, 9))
        assert_eq(read_file(v.path("empty")), b"")


def test_redata_refusals():
    """Directories, missing files, unreadable files, read-only mounts: one line, nothing lost."""
    with Volume(names="plaintext") as v:
        os.mkdir(v.path("dir"))
        write_file(v.path("bad"), pattern(10000, 2))
        err = kekfs_fails("rotate", "--data", v.path("dir"))
        assert "is a directory (use -r" in err, err
        err = kekfs_fails("rotate", "--data", v.path("nope"))
        assert "No such file" in err, err
        err = kekfs_fails("rotate", "--data", "/tmp")
        assert "not inside a mounted kekfs volume" in err, err
        err = kekfs_fails("rotate", "--data", v.backing, "bad")
        assert "is mounted on" in err, err
        err = kekfs_fails("rotate", "--data")
        assert "needs at least one file" in err, err
        v.umount()
        with open(v.bpath("bad"), "r+b") as f:  # tamper with the second chunk
            f.seek(HEADER_SIZE + 4136 + 100)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 1]))
        tampered = read_file(v.bpath("bad"))
        v.mount()
        err = kekfs_fails("rotate", "--data", v.path("bad"))
        assert "cannot be read" in err and "nothing changed" in err, err
        assert_bytes_eq(read_file(v.bpath("bad")), tampered, "the tampered file was changed")
        assert_eq(journal(v), [], "journal left behind")
        v.umount()
        v.mount(opts="ro")
        err = kekfs_fails("rotate", "--data", v.path("bad"))
        assert "read-only" in err, err
        err = kekfs_fails("rotate", "--data", "-r", v.path("dir"))
        assert "read-only" in err, err


def _crash_when(v, suffix, size, attempts=12):
    """Re-encrypts a size-byte file and SIGKILLs the daemon as soon as a journal file ending in
    suffix appears (a loaded machine may miss the moment: then the job just ends and it tries
    again); returns the data, whether the moment was caught, and what the journal held."""
    data = pattern(size, 5)
    write_file(v.path("f"), data)
    for _ in range(attempts):
        proc = subprocess.Popen([kekfs_bin(), "rotate", "--data", v.path("f")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen = wait_for(lambda: any(n.endswith(suffix) for n in journal(v))
                            or proc.poll() is not None, 60, interval=0.0005)
            seen = seen and any(n.endswith(suffix) for n in journal(v))
            if seen:
                for pid in v.daemon_pids:
                    os.kill(pid, signal.SIGKILL)
            held = journal(v)
        finally:
            proc.wait(timeout=60)
        if seen:
            break
    if seen:
        assert wait_for(lambda: all(not pid_alive(p) for p in v.daemon_pids), 10)
        force_unmount(v.mnt, [])
        assert not is_mounted(v.mnt)
        v.daemon_pids = []
    return data, seen, held


def test_redata_crash_before_commit_keeps_old():
    """Killed while the new file is written: the old ciphertext stays, the job is dropped."""
    with Volume() as v:
        data, seen, held = _crash_when(v, ".new", 48 << 20)
        assert seen, "never caught the job before its commit"
        bp = v.backing_path("f")
        header = read_file(bp)[:HEADER_SIZE]
        v.mount()
        assert_bytes_eq(read_file(v.path("f")), data)
        if not any(n.endswith(".ready") for n in held):
            assert_eq(read_file(bp)[:HEADER_SIZE], header, "uncommitted job was applied")
        assert_eq(journal(v), [], "journal left behind")


def test_redata_crash_after_commit_is_finished_at_mount():
    """Killed while the new file is copied over the old: the next mount finishes the copy."""
    with Volume() as v:
        data, seen, held = _crash_when(v, ".ready", 96 << 20)
        assert seen, "never caught the job between its commit and its end"
        assert any(n.endswith(".ready") for n in held) or held == [], held
        v.mount()
        assert_eq(journal(v), [], "journal left behind")
        assert_bytes_eq(read_file(v.path("f")), data)


def test_fsck_finishes_an_interrupted_redata():
    """fsck reports a committed re-encryption a crash interrupted; --repair finishes it."""
    from test_fsck import fsck, expect
    with Volume() as v:
        data, seen, _ = _crash_when(v, ".ready", 96 << 20)
        assert seen, "never caught the job between its commit and its end"
        expect(fsck(v), 1, "re-encryption", "interrupted")
        expect(fsck(v, "--repair"), 0, "re-encryption")
        assert_eq(journal(v), [], "journal left behind")
        expect(fsck(v), 0, "clean")
        v.mount()
        assert_bytes_eq(read_file(v.path("f")), data)


def test_status_answers_while_a_long_redata_runs():
    """The control socket answers status at once while a large file is re-encrypted: the
    daemon runs key changes on a worker thread of their own. Before, every request waited for
    the one before it, so status hung until the re-encryption ended."""
    with Volume() as v:
        with open(v.path("f"), "wb") as f:
            for _ in range(384):
                f.write(b"\x5a" * (1 << 20))
        proc = subprocess.Popen([kekfs_bin(), "rotate", "--data", v.path("f")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: journal(v) or proc.poll() is not None, 60,
                            interval=0.001), "the re-encryption never started"
            assert journal(v), "the re-encryption ended before status could be asked"
            r = run_kekfs("status", v.mnt, timeout=30)
            during = journal(v)
        finally:
            proc.wait(timeout=300)
        assert r.returncode == 0 and b"re-wrap" in r.stdout, r
        assert during, "status answered only after the re-encryption had ended"
        assert_eq(proc.returncode, 0, "rotate --data exit status")
        assert_eq(journal(v), [], "journal left behind")


def test_redata_recursive_tree():
    """rotate --data -r re-encrypts every regular file of a tree under a mount point (nested
    directories, an empty file, a hard link once), follows no symbolic link, and says how many
    files it did; a directory without -r, and -r on an unmounted BACKING, are refused in one
    line."""
    for names in ("plaintext", "encrypted"):
        with Volume(names=names) as v:
            files = {"t/a": pattern(10000, 1), "t/sub/b": pattern(70000, 2), "t/sub/empty": b"",
                     "t/sub/deeper/c": pattern(5000, 3), "outside": pattern(3000, 4)}
            for rel, data in files.items():
                os.makedirs(os.path.dirname(v.path(rel)), exist_ok=True)
                write_file(v.path(rel), data)
            os.symlink(v.path("outside"), v.path("t", "link"))
            ids = {rel: read_file(v.backing_path(rel))[FILE_ID] for rel in files}
            err = kekfs_fails("rotate", "--data", v.path("t"))
            assert "is a directory (use -r" in err, err
            out = kekfs_ok("rotate", "--data", "-r", v.path("t"))
            assert "4 files re-encrypted under new data keys" in out, out
            for rel, data in files.items():
                changed = read_file(v.backing_path(rel))[FILE_ID] != ids[rel]
                assert_eq(changed, rel != "outside", "file id of %s changed" % rel)
            v.remount()
            for rel, data in files.items():
                assert_bytes_eq(read_file(v.path(rel)), data, rel)
            assert_eq(len(redata_records(v)), 4, "redata audit records")
            v.umount()
            err = kekfs_fails("rotate", "--data", "-r", *v.key_args(), v.backing, "t")
            assert "-r walks trees under a mount point" in err, err


def test_redata_sigkill_rounds():
    """SIGKILL at random points of re-encryptions: every round reads back exactly."""
    rounds = int(os.environ.get("KEKFS_REDATA_KILL_ROUNDS", "8"))
    with Volume() as v:
        data = pattern(8 << 20, 7)
        write_file(v.path("f"), data)
        for i in range(rounds):
            proc = subprocess.Popen([kekfs_bin(), "rotate", "--data", v.path("f")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep((i % 8) * 0.01)  # spread the kill over the job, not a mount wait
            for pid in v.daemon_pids:
                os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert wait_for(lambda: all(not pid_alive(p) for p in v.daemon_pids), 10)
            force_unmount(v.mnt, [])
            v.daemon_pids = []
            v.mount()
            assert_bytes_eq(read_file(v.path("f")), data, "round %d" % i)
            assert_eq(journal(v), [], "journal left after round %d" % i)
