"""KEK rotation by re-wrapping: online under load, offline, refused where it must be, and
resumed after the daemon is killed at random points of the walk."""

import os
import random
import signal
import struct
import subprocess
import threading
import time

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           run_kekfs, wait_for, force_unmount, find_daemon_pids, require_tools,
                           Skip)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

SLOT_A, SLOT_B = 24, 120


def current_kek_version(path):
    """The KEK version of the slot with the highest sequence number (checksums not checked)."""
    with open(path, "rb") as f:
        head = f.read(256)
    slots = [struct.unpack_from("<QI", head, off) for off in (SLOT_A, SLOT_B)]
    return max(slots)[1]


def make_tree(v, n, size=700):
    os.makedirs(v.path("t"), exist_ok=True)
    data = {}
    for i in range(n):
        p = v.path("t", "d%02d" % (i % 20), "f%05d" % i)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        data[p] = pattern(size + i % 5000, i)
        write_file(p, data[p])
    return data


def kekfs_ok(*args):
    r = run_kekfs(*args)
    assert_eq(r.returncode, 0, "kekfs %s: %r" % (" ".join(args), r.stderr[-500:]))
    return r.stdout.decode()


def wait_rewrap_finished(v, timeout=120):
    def done():
        out = kekfs_ok("status", v.mnt)
        return "re-wrap: finished" in out
    assert wait_for(done, timeout, interval=0.05), "re-wrap did not finish"
    return kekfs_ok("status", v.mnt)


def test_online_rotation_under_load():
    """Writers and readers keep working while every header moves to KEK v2; no chunk changes."""
    with Volume() as v:
        data = make_tree(v, 1500)
        chunks_before = {p: open(p, "rb").read()[256:] for p in v.backing_objects()}
        stop, errors = threading.Event(), []

        def writer():
            i = 0
            while not stop.is_set():
                p = v.path("live%d" % (i % 7))
                try:
                    write_file(p, pattern(9000, i))
                    assert_bytes_eq(read_file(p), pattern(9000, i), "live file")
                except Exception as e:  # reported below
                    errors.append(e)
                i += 1

        def reader():
            keys = list(data)
            while not stop.is_set():
                p = random.choice(keys)
                try:
                    assert_bytes_eq(read_file(p), data[p], p)
                except Exception as e:
                    errors.append(e)

        threads = [threading.Thread(target=f) for f in (writer, reader, reader)]
        for t in threads:
            t.start()
        try:
            out = kekfs_ok("rotate", v.mnt)
            assert "KEK v2 is active" in out, out
            status = wait_rewrap_finished(v)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, "errors during the re-wrap: %r" % errors[:3]
        assert "0 failed" in status and "name key done" in status, status
        for p, before in chunks_before.items():
            assert_eq(current_kek_version(p), 2, "KEK version of %s" % p)
            assert_bytes_eq(open(p, "rb").read()[256:], before, "chunks of %s" % p)
        v.remount()
        for p, d in data.items():
            assert_bytes_eq(read_file(p), d, p)


def test_offline_rotation_and_refusals():
    """Offline rotate works unmounted, is refused on a mounted backing dir; status reports."""
    with Volume() as v:
        data = make_tree(v, 50)
        r = run_kekfs("rotate", *v.key_args(), v.backing)
        assert r.returncode != 0 and b"is mounted on" in r.stderr, r
        v.umount()
        out = kekfs_ok("rotate", *v.key_args(), v.backing)
        assert "KEK v2 is active: 50 files, 50 re-wrapped, 0 failed" in out, out
        out = kekfs_ok("status", *v.key_args(), v.backing)
        assert "KEK v1: decrypt-only" in out and "KEK v2: active" in out, out
        assert "name key: on KEK v2" in out and "none pending" in out, out
        r = run_kekfs("rotate", v.backing)
        assert r.returncode != 0, "offline rotate without a key succeeded"
        v.mount()
        for p, d in data.items():
            assert_bytes_eq(read_file(p), d, p)
        assert "KEK v3 is active" in kekfs_ok("rotate", v.mnt)
        out = wait_rewrap_finished(v)
        assert "generation: 3" in out, out
        assert all(current_kek_version(p) == 3 for p in v.backing_objects())


def test_control_socket_refuses_other_users():
    """Only root and the mounting user may use the control socket."""
    with Volume() as v:
        r = run_kekfs("status", v.mnt)
        assert_eq(r.returncode, 0, "status as root")
        import subprocess
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            os.environ["KEKFS_BIN"], "rotate", v.mnt], capture_output=True)
        assert r.returncode != 0, "nobody could rotate the volume"
        assert b"kekfs: " in r.stderr, r.stderr
        assert "KEK v1: active" in kekfs_ok("status", v.mnt), "an unauthorised rotate changed keys"


def _kill_rounds():
    return int(os.environ.get("KEKFS_KILL_ROUNDS", "100"))


def _exited(pid):
    """Whether every thread of pid has exited (its files, locks among them, are closed):
    the pid is gone, or a zombie whose only task left is its leader. init may reap late."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X") and len(os.listdir("/proc/%d/task" % pid)) <= 1
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_kill9_during_rewrap_resumes():
    """kill -9 at random points of the re-wrap; after each remount every file opens, and the
    re-wrap resumes and completes."""
    rng = random.Random(int(os.environ.get("KEKFS_KILL_SEED", "7")))
    with Volume() as v:
        data = make_tree(v, 1000, size=300)
        interrupted = 0
        for round_ in range(_kill_rounds()):
            kekfs_ok("rotate", "--force", v.mnt) if round_ else kekfs_ok("rotate", v.mnt)
            time.sleep(rng.uniform(0, 0.08))  # the injection point, not a wait for a mount
            pids = find_daemon_pids(v.mnt)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            # the volume's lock goes with the daemon's last thread, after its leader is a
            # zombie: until then a new mount is refused as a second daemon
            assert wait_for(lambda: all(_exited(p) for p in pids), 10), "kill -9 ignored"
            force_unmount(v.mnt)
            pending = os.path.exists(v.bpath(".kekfs", "rewrap-pending"))
            interrupted += pending
            v.mount()
            if pending:  # else the kill came after the walk had finished: nothing to resume
                wait_rewrap_finished(v)
        assert interrupted > 0, "no kill landed inside a re-wrap: the test proved nothing"

        version = _kill_rounds() + 1
        assert all(current_kek_version(p) == version for p in v.backing_objects()), \
            "files left on an older KEK after the last resumed re-wrap"
        for p, d in data.items():
            assert_bytes_eq(read_file(p), d, p)
        assert not os.path.exists(v.bpath(".kekfs", "rewrap-pending")), "marker left behind"


def test_rotation_on_encrypted_names():
    """On an encrypted-names volume the walk skips directory-id and long-name side files:
    every header moves, nothing fails, and names still decrypt afterwards."""
    with Volume(names="encrypted") as v:
        data = make_tree(v, 300)
        long_name = v.path("t", "L" * 240)
        write_file(long_name, b"long")
        status = (kekfs_ok("rotate", v.mnt), wait_rewrap_finished(v))[1]
        assert "301 files, 301 re-wrapped, 0 failed" in status, status
        out = kekfs_ok("keys", "destroy", "1", "--now", v.mnt)
        assert "destroyed" in out, out
        v.remount()
        for p, d in data.items():
            assert_bytes_eq(read_file(p), d, p)
        assert_eq(read_file(long_name), b"long", "long name after rotation")


def test_rotation_policy_rotates_by_itself():
    """With --rotate-every 2s the daemon rotates once the active KEK is that old; status shows
    the policy and when the next rotation is due."""
    with Volume() as v:
        write_file(v.path("f"), b"policy")
        out = kekfs_ok("status", v.mnt)
        assert "rotation policy: none" in out, out
        kekfs_ok("keys", "policy", "--rotate-every", "2s", v.mnt)
        assert "rotation policy: every 2 s" in kekfs_ok("status", v.mnt)
        assert wait_for(lambda: "KEK v2: active" in kekfs_ok("keys", "list", v.mnt), 30,
                        interval=0.2), "the daemon did not rotate by itself"
        kekfs_ok("keys", "policy", "--rotate-every", "never", v.mnt)
        wait_rewrap_finished(v)
        assert_eq(read_file(v.path("f")), b"policy", "file after the policy's rotation")
        with open(v.bpath(".kekfs", "audit.log")) as f:
            assert '"op":"rotate","kek":2' in f.read(), "the automatic rotation was not audited"
        r = run_kekfs("keys", "policy", "--rotate-every", "soon", v.mnt)
        assert r.returncode != 0 and b"duration" in r.stderr, r
test_kill9_during_rewrap_resumes.timeout = 600


def test_status_lists_every_mount():
    """`kekfs status` with no volume lists every kekfs mount; --json gives the same to scripts."""
    import json
    with Volume() as a, Volume() as b:
        kekfs_ok("rotate", b.mnt)
        wait_rewrap_finished(b)
        text = kekfs_ok("status")
        assert a.mnt in text and b.mnt in text and "active KEK: v2" in text, text
        listed = {m["mountpoint"]: m for m in json.loads(kekfs_ok("status", "--json"))}
        assert a.mnt in listed and b.mnt in listed, listed
        assert listed[a.mnt]["active_kek"].startswith("v1, created"), listed[a.mnt]
        assert listed[b.mnt]["active_kek"].startswith("v2, created"), listed[b.mnt]
        assert listed[b.mnt]["rewrap"].startswith("finished to v2"), listed[b.mnt]
        assert listed[a.mnt]["backing"] == a.backing and listed[a.mnt]["reachable"] is True


def test_rotate_wait_follows_the_rewrap_to_its_result():
    """kekfs rotate --wait MOUNTPOINT returns only once the re-wrap has finished, says how it
    went, and exits 1 when a header could not be re-wrapped (an immutable backing file)."""
    require_tools("chattr")
    with Volume(names="plaintext") as v:
        for i in range(600):
            write_file(v.path("f%d" % i), b"x" * (i % 97))
        r = run_kekfs("rotate", "--wait", v.mnt)
        assert_eq(r.returncode, 0, "rotate --wait: %r" % (r,))
        out = r.stdout.decode()
        assert "re-wrap to KEK v2 finished: 600 files, 600 re-wrapped, 0 failed" in out, out
        assert "re-wrap: finished to v2" in kekfs_ok("status", v.mnt), "not finished on return"
        stuck = v.bpath("f7")
        if subprocess.run(["chattr", "+i", stuck], stderr=subprocess.DEVNULL).returncode != 0:
            raise Skip("the backing file system has no immutable flag")
        try:
            r = run_kekfs("rotate", "--wait", v.mnt)
        finally:
            subprocess.run(["chattr", "-i", stuck])
        assert_eq(r.returncode, 1, "rotate --wait with a header that cannot change: %r" % (r,))
        assert "1 failed" in r.stdout.decode() and len(r.err_lines()) == 1, r
