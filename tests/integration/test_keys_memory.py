"""Keys in memory: the daemon cannot dump core, keeps its keys in locked memory, and
wipes the person's secret (key file bytes, passphrase) once the keyring is unlocked."""

import os
import re

from kekfs_harness import Volume, Skip, find_daemon_pids, read_file, write_file, pattern

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")


def daemon_pid(v):
    pids = find_daemon_pids(v.mnt)
    assert len(pids) == 1, "expected one daemon for %s, found %r" % (v.mnt, pids)
    return pids[0]


def readable_memory(pid):
    """Yields the contents of every readable mapping of pid (guard pages are skipped)."""
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            start, end, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if perms[0] != "r" or "[vvar]" in line or "[vsyscall]" in line:
                continue
            if end - start > (256 << 20):  # AddressSanitizer's shadow, not the heap
                continue
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue


def test_daemon_cannot_dump_core():
    """RLIMIT_CORE is 0 in the running daemon."""
    with Volume() as v:
        limits = read_file("/proc/%d/limits" % daemon_pid(v)).decode()
        line = [ln for ln in limits.splitlines() if ln.startswith("Max core file size")][0]
        assert line.split()[4:6] == ["0", "0"], "core dumps still allowed: %r" % line


def test_keys_in_locked_memory():
    """sodium_malloc'd keys are mlock'ed: the daemon has locked pages once a file is open."""
    if os.environ.get("KEKFS_SANITIZER_LOGS"):
        raise Skip("AddressSanitizer turns mlock into a no-op")
    with Volume() as v:
        write_file(v.path("f"), b"x")
        with open(v.path("f"), "rb") as f:
            f.read()
            status = read_file("/proc/%d/status" % daemon_pid(v)).decode()
        vmlck = int(re.search(r"VmLck:\s+(\d+) kB", status).group(1))
        assert vmlck > 0, "no locked memory in the daemon (VmLck 0)"


def test_key_file_bytes_wiped_from_daemon_memory():
    """After unlocking, the 32 key-file bytes appear nowhere in the daemon's memory."""
    with Volume() as v:
        key = read_file(v.key_file)
        write_file(v.path("f"), pattern(10000, 5))
        read_file(v.path("f"))
        for chunk in readable_memory(daemon_pid(v)):
            assert key not in chunk, "key file bytes found in daemon memory"


def test_passphrase_wiped_from_daemon_memory():
    """After unlocking, the passphrase appears nowhere in the daemon's memory."""
    secret = "correct horse battery staple 8c1f"
    with Volume(passphrase=secret) as v:
        memory = list(readable_memory(daemon_pid(v)))
        # Control: the scan does see what the daemon keeps, such as its backing path.
        assert any(v.backing.encode() in chunk for chunk in memory), "memory scan saw nothing"
        hits = sum(chunk.count(secret.encode()) for chunk in memory)
        assert hits == 0, "passphrase found %d times in daemon memory" % hits


def test_no_secret_in_argv_or_environ():
    """Neither the key bytes nor the passphrase reach the daemon's argv or environment."""
    secret = "argv env secret 77aa"
    with Volume(passphrase=secret) as v:
        pid = daemon_pid(v)
        for what in ("cmdline", "environ"):
            data = read_file("/proc/%d/%s" % (pid, what))
            assert secret.encode() not in data, "passphrase in /proc/%d/%s" % (pid, what)
