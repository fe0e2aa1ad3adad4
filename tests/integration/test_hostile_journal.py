"""The rotate --data journal and the re-wrap and seal markers, forged by someone who can write
the backing directory only (no key; the daemon runs as root): a forged job is never applied
at a mount, by fsck --repair or by an offline command, whatever file it names, and is
reported by fsck; a forged marker is ignored with one log line and destroys no KEK; a genuine
interrupted job and a genuine interrupted seal are still finished."""

import ctypes
import os
import shutil
import signal
import subprocess

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           kekfs_bin, wait_for, pid_alive, force_unmount, is_mounted,
                           HEADER_SIZE)
from test_fsck import fsck, expect
from test_rotation import kekfs_ok
from test_redata import journal, _crash_when

OLD_MAGIC = "kekfs-redata 1"  # the unauthenticated format of kekfs 0daec58
LOG_WAIT = 30


def _handle_hex(path):
    """name_to_handle_at(path): (type, hex) of its file handle, as JOB.target records one."""
    buf = ctypes.create_string_buffer(8 + 128)
    ctypes.c_uint.from_buffer(buf).value = 128
    mount_id = ctypes.c_int()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.name_to_handle_at(-100, os.fsencode(path), buf, ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), "name_to_handle_at", path)
    n = ctypes.c_uint.from_buffer(buf).value
    htype = ctypes.c_int.from_buffer(buf, 4).value
    return htype, buf.raw[8:8 + n].hex()


def forge_job(v, job, path, st, ready=None, ready_link=None, handle=None, magic=OLD_MAGIC,
              mac=None):
    """Writes job JOB (.target naming path, with the inode st and 1970 times) and its
    .ready (ready bytes, or a symlink to ready_link) into .kekfs/redata, as an attacker."""
    d = v.bpath(".kekfs", "redata")
    os.makedirs(d, exist_ok=True)
    htype, hhex = handle if handle else (-1, "-")
    text = "%s\n%d %d\n0 0 0 0\n%d %s\n%s\n" % (magic, st.st_dev, st.st_ino, htype, hhex,
                                                os.fsencode(path).hex())
    if mac is not None:
        text += "%s %s\n%s\nmac %s\n" % ("00" * 16, "00" * 16, "00" * 32, mac)
    write_file(os.path.join(d, job + ".target"), text.encode())
    if ready_link:
        os.symlink(ready_link, os.path.join(d, job + ".ready"))
    else:
        write_file(os.path.join(d, job + ".ready"), ready)


def outside_file(v, name, data, mode=0o644):
    """A root-owned file outside the volume, with an mtime the forged job would change."""
    p = os.path.join(v.base, name)
    write_file(p, data, mode)
    os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return p


def snapshot(p):
    st = os.stat(p)
    return read_file(p), st.st_mtime_ns, st.st_mode, st.st_size


def chunks(p):
    """A file of the volume past its header (the offline rotate re-wraps the header)."""
    return read_file(p)[HEADER_SIZE:], os.stat(p).st_size


def replay_everywhere(v, check):
    """Every place that replays the journal: a read-write mount, fsck (which reports the job
    as refused), fsck --repair (which leaves it) and an offline command; check() after each."""
    v.mount()
    check("after a mount")
    v.umount()
    expect(fsck(v), 1, "re-encryption job is refused", "not applied")
    check("after fsck")
    expect(fsck(v, "--repair"), 1, "re-encryption job is refused", "--repair leaves it")
    check("after fsck --repair")
    kekfs_ok("rotate", *(v.key_args() + [v.backing]))
    check("after an offline rotate")
    assert any(n.endswith(".ready") for n in journal(v)), "the refused job was removed"


def test_forged_job_dotdot_path_leaves_outside_file_alone():
    """The attack of issue 14: a job whose path climbs out with '..' to a root-owned file."""
    with Volume(names="plaintext") as v:
        write_file(v.path("f"), pattern(10000, 1))
        victim = outside_file(v, "victim", b"root's own file\n" * 100)
        before = snapshot(victim)
        v.umount()
        forge_job(v, "a" * 32, "../victim", os.stat(victim), ready=b"owned by the attacker\n")

        def check(when):
            assert_eq(snapshot(victim), before, "the outside file " + when)
        replay_everywhere(v, check)


def test_forged_job_absolute_path_and_handle_leaves_outside_file_alone():
    """A job naming an outside file by absolute path, inode and file handle."""
    with Volume(names="plaintext") as v:
        victim = outside_file(v, "victim", b"root's own file\n" * 100, 0o600)
        before = snapshot(victim)
        v.umount()
        forge_job(v, "b" * 32, victim, os.stat(victim), ready=b"owned by the attacker\n",
                  handle=_handle_hex(victim))

        def check(when):
            assert_eq(snapshot(victim), before, "the outside file " + when)
        replay_everywhere(v, check)


def test_forged_job_ready_symlink_copies_nothing_in():
    """JOB.ready a symlink to a root-only file outside: its bytes never reach the volume."""
    secret = b"ROOT-ONLY-SECRET-5e1f\n" * 50
    with Volume(names="plaintext") as v:
        write_file(v.path("f"), pattern(10000, 2))
        v.umount()
        target = v.bpath("f")
        stolen = outside_file(v, "shadow", secret, 0o600)
        before, victim_before = chunks(target), snapshot(stolen)
        forge_job(v, "c" * 32, "f", os.stat(target), ready_link=stolen)

        def check(when):
            assert_eq(chunks(target), before, "the volume's file " + when)
            assert_eq(snapshot(stolen), victim_before, "the outside file " + when)
            for root, _, files in os.walk(v.backing):
                for n in files:
                    p = os.path.join(root, n)
                    if not os.path.islink(p):
                        assert secret[:22] not in read_file(p), "secret copied into " + p
        replay_everywhere(v, check)


def test_forged_job_for_another_file_of_the_volume_is_refused():
    """A job that would lay one file of the volume over another (a valid kekfs file, but not
    the one with the recorded file id), in the old format and with a made-up MAC."""
    with Volume(names="plaintext") as v:
        write_file(v.path("f"), pattern(20000, 3))
        write_file(v.path("g"), pattern(30000, 4))
        v.umount()
        g = v.bpath("g")
        before = chunks(g)
        forge_job(v, "d" * 32, "g", os.stat(g), ready=read_file(v.bpath("f")))
        forge_job(v, "e" * 32, "g", os.stat(g), ready=read_file(v.bpath("f")),
                  magic="kekfs-redata 2", mac="11" * 32)

        def check(when):
            assert_eq(chunks(g), before, "the other file " + when)
        replay_everywhere(v, check)
        expect(fsck(v), 1, "dddddddd", "without a MAC")
        expect(fsck(v), 1, "eeeeeeee", "does not authenticate")
        v.mount()
        assert_bytes_eq(read_file(v.path("g")), pattern(30000, 4), "g through the mount")


def test_genuine_interrupted_job_is_still_finished():
    """A rotate --data killed after its commit: fsck says it will finish it (no refusal), and
    the next mount finishes it; a copy of its JOB.ready changed after the commit is refused."""
    with Volume() as v:
        data, seen, _ = _crash_when(v, ".ready", 96 << 20)
        assert seen, "never caught the job between its commit and its end"
        r = fsck(v)
        expect(r, 1, "re-encryption", "interrupted after its commit")
        assert b"refused" not in r.stdout + r.stderr, r.stdout
        saved = os.path.join(v.base, "saved-journal")
        shutil.copytree(v.bpath(".kekfs", "redata"), saved, symlinks=True)
        v.mount()
        assert_eq(journal(v), [], "journal left behind")
        assert_bytes_eq(read_file(v.path("f")), data)
        v.umount()
        # the same job again, its new file altered: the hash in JOB.target catches it
        shutil.rmtree(v.bpath(".kekfs", "redata"))
        shutil.copytree(saved, v.bpath(".kekfs", "redata"), symlinks=True)
        ready = [n for n in journal(v) if n.endswith(".ready")][0]
        with open(v.bpath(".kekfs", "redata", ready), "r+b") as f:
            f.seek(1 << 20)
            b = f.read(1)
            f.seek(1 << 20)
            f.write(bytes([b[0] ^ 1]))
        expect(fsck(v), 1, "refused", "changed after the commit")


def _daemon_log(v):
    return open(v.fg_stderr_path, "rb").read().decode("utf-8", "replace")


def _wait_log(v, needle):
    assert wait_for(lambda: needle in _daemon_log(v), LOG_WAIT, interval=0.05), \
        "no log line %r:\n%s" % (needle, _daemon_log(v)[-1500:])
    return [l for l in _daemon_log(v).splitlines() if needle in l]


def test_forged_seal_marker_destroys_no_kek():
    """An attacker's seal-pending (empty, as kekfs 0daec58 wrote one, or with made-up
    content): the mount logs one line, destroys no KEK, and fsck reports the marker."""
    for content in (b"", b"kekfs-marker 1\nkind seal-pending\njob " + b"a" * 32 +
                    b"\nkek 2\nmac " + b"00" * 32 + b"\n"):
        with Volume(names="plaintext", foreground=True) as v:
            write_file(v.path("a"), b"a" * 5000)
            v.umount()
            kekfs_ok("rotate", *(v.key_args() + [v.backing]))  # v2 active, v1 kept
            write_file(v.bpath(".kekfs", "seal-pending"), content)
            v.mount()
            lines = _wait_log(v, "seal-pending is not authenticated")
            assert_eq(len(lines), 1, "log lines for a forged seal marker")
            out = kekfs_ok("keys", "list", v.mnt)
            assert "KEK v1: destroyed" not in out, out
            assert_eq(read_file(v.path("a")), b"a" * 5000)
            v.umount()
            assert os.path.exists(v.bpath(".kekfs", "seal-pending")), "marker removed"
            expect(fsck(v), 1, "seal marker is not authenticated", "destroys no KEK")
            out = kekfs_ok("keys", "list", *(v.key_args() + [v.backing]))
            assert "KEK v1: destroyed" not in out, out


def test_forged_rewrap_marker_is_ignored():
    """An attacker's rewrap-pending: one log line, no walk, the mount serves; fsck reports
    it and a real rotation replaces it."""
    with Volume(names="plaintext", foreground=True) as v:
        write_file(v.path("a"), pattern(7000, 5))
        v.umount()
        write_file(v.bpath(".kekfs", "rewrap-pending"), b"\x00" * 64)
        v.mount()
        lines = _wait_log(v, "rewrap-pending is not authenticated")
        assert_eq(len(lines), 1, "log lines for a forged re-wrap marker")
        assert "re-wrap to KEK" not in _daemon_log(v), "a walk started from a forged marker"
        assert_bytes_eq(read_file(v.path("a")), pattern(7000, 5))
        v.umount()
        expect(fsck(v), 1, "re-wrap marker is not authenticated", "rotate --force")
        kekfs_ok("rotate", "--force", *(v.key_args() + [v.backing]))
        assert not os.path.exists(v.bpath(".kekfs", "rewrap-pending")), "marker left"
        expect(fsck(v), 0, "clean")


def kill_during_seal(v, attempts=12):
    """Runs 'kekfs shred --seal' and SIGKILLs the daemon as soon as seal-pending appears;
    returns the marker's bytes then (retries if a loaded machine misses the moment)."""
    marker = v.bpath(".kekfs", "seal-pending")
    for _ in range(attempts):
        proc = subprocess.Popen([kekfs_bin(), "shred", "--seal", v.mnt],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen = wait_for(lambda: os.path.exists(marker) or proc.poll() is not None, 60,
                            interval=0.0005) and os.path.exists(marker)
            if seen:
                for pid in v.daemon_pids:
                    os.kill(pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        if seen:
            assert wait_for(lambda: all(not pid_alive(p) for p in v.daemon_pids), 10)
            force_unmount(v.mnt, [])
            assert not is_mounted(v.mnt)
            v.daemon_pids = []
            return read_file(marker)
    raise AssertionError("never caught a seal before its end")


def test_genuine_interrupted_seal_resumes_and_a_replayed_marker_does_not():
    """A seal killed midway finishes at the next mount (its marker authenticates); the same
    marker put back after a later rotation is stale: ignored, no KEK destroyed."""
    with Volume(names="plaintext", foreground=True) as v:
        for i in range(200):
            write_file(v.path("n%03d" % i), pattern(2000, i))
        v.umount()
        kekfs_ok("rotate", *(v.key_args() + [v.backing]))  # v2 active, v1 decrypt-only
        v.mount()
        saved = kill_during_seal(v)
        v.mount()
        assert wait_for(lambda: not os.path.exists(v.bpath(".kekfs", "seal-pending")), 60,
                        interval=0.05), "the interrupted seal did not finish at mount"
        out = kekfs_ok("keys", "list", v.mnt)
        assert "KEK v1: destroyed" in out, out
        active = [l for l in out.splitlines() if ": active" in l][0]
        kekfs_ok("rotate", v.mnt)  # one more KEK, kept decrypt-only for old backups
        assert wait_for(lambda: not os.path.exists(v.bpath(".kekfs", "rewrap-pending")), 60,
                        interval=0.05), "re-wrap did not finish"
        v.umount()
        write_file(v.bpath(".kekfs", "seal-pending"), saved)  # replayed
        v.mount()
        _wait_log(v, "seal-pending is not authenticated or is stale")
        out = kekfs_ok("keys", "list", v.mnt)
        kept = active.split(":")[0]
        assert kept + ": destroyed" not in out, "a replayed seal marker destroyed " + kept
        for i in (0, 199):
            assert_bytes_eq(read_file(v.path("n%03d" % i)), pattern(2000, i))
