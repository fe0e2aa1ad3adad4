"""Daemon crash (SIGKILL) behaviour: data that was fsync'd survives, a file
that was created but never written is empty (not garbage, not a crash),
and a write interrupted by the crash never yields wrong plaintext (each
chunk reads as an old or a new version, or fails with EIO)."""

import errno
import os
import signal
import threading
import time

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           is_mounted, wait_for, pid_alive, force_unmount)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

C = 4096


def _kill_daemon(v):
    pids = list(v.daemon_pids)
    assert pids, "no daemon pid known"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: all(not pid_alive(p) for p in pids), 10), "daemon survived SIGKILL"
    # the mount is now dead (ENOTCONN); take it away
    force_unmount(v.mnt, [])
    assert not is_mounted(v.mnt), "could not clear the dead mount"
    v.daemon_pids = []


def test_sigkill_keeps_synced_data_and_created_files():
    with Volume() as v:
        data = pattern(5 * C + 3, 1)
        fd = os.open(v.path("synced"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.close(os.open(v.path("created"), os.O_WRONLY | os.O_CREAT, 0o644))
        os.mkdir(v.path("dir"))
        os.symlink("synced", v.path("link"))
        _kill_daemon(v)
        v.mount()
        assert_bytes_eq(read_file(v.path("synced")), data, "fsync'd file after SIGKILL")
        assert_eq(read_file(v.path("created")), b"", "created (empty) file after SIGKILL")
        assert_eq(os.readlink(v.path("link")), "synced")
        assert os.path.isdir(v.path("dir"))


def _writer_loop(path, stop, versions, size):
    fd = os.open(path, os.O_RDWR)
    try:
        k = 0
        while not stop.is_set():
            k = (k % 250) + 1
            versions.append(k)
            blob = bytes([k]) * size
            off = 0
            while off < size and not stop.is_set():
                n = min(size - off, 3 * C + 100)  # unaligned pieces across chunk boundaries
                try:
                    os.pwrite(fd, blob[off:off + n], off)
                except OSError:
                    return
                off += n
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def test_sigkill_during_writes_never_wrong_plaintext():
    with Volume() as v:
        size = 40 * C + 123
        write_file(v.path("hot"), b"\0" * size)
        neighbour = pattern(3 * C, 5)
        write_file(v.path("cold"), neighbour)
        for rnd in range(3):
            stop = threading.Event()
            versions = []
            t = threading.Thread(target=_writer_loop, args=(v.path("hot"), stop, versions, size))
            t.start()
            time.sleep(0.15 + 0.1 * rnd)
            try:
                _kill_daemon(v)
            finally:
                stop.set()
                t.join(30)
            assert not t.is_alive(), "writer thread stuck after the daemon was killed"
            v.mount()
            assert_bytes_eq(read_file(v.path("cold")), neighbour, "untouched file after crash")
            seen = set(versions) | {0}
            fd = os.open(v.path("hot"), os.O_RDONLY)
            eio = 0
            try:
                st_size = os.fstat(fd).st_size
                assert_eq(st_size, size, "size of the file being overwritten in place")
                for i in range(0, size, C):
                    try:
                        b = os.pread(fd, C, i)
                    except OSError as e:
                        assert e.errno == errno.EIO, "chunk %d: %s" % (i // C, e)
                        eio += 1
                        continue
                    want = min(C, size - i)
                    assert_eq(len(b), want, "round %d chunk %d length" % (rnd, i // C))
                    vals = set(b)
                    # pieces are > C and unaligned: a chunk may hold the end of
                    # one piece and the start of the next (two versions)
                    assert len(vals) <= 2 and vals <= seen, \
                        "round %d chunk %d: WRONG PLAINTEXT after crash (bytes %r, versions %r)" % (
                            rnd, i // C, sorted(vals)[:5], sorted(seen)[-5:])
            finally:
                os.close(fd)
            # repair for the next round: rewrite fully (must work even if a chunk was EIO)
            write_file(v.path("hot"), b"\0" * size)


def _appender_loop(path, stop, synced):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        total = 0
        i = 0
        while not stop.is_set():
            i += 1
            n = 1 + (i * 2654435761) % (2 * C + 333)
            rec = pattern(n, i)
            try:
                os.write(fd, rec)
                total += n
                if i % 5 == 0:
                    os.fsync(fd)
                    synced.append(total)
            except OSError:
                return
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _expected_prefix(length):
    out = []
    total = 0
    i = 0
    while total < length:
        i += 1
        n = 1 + (i * 2654435761) % (2 * C + 333)
        out.append(pattern(n, i))
        total += n
    return b"".join(out)[:length]


def test_sigkill_during_appends_keeps_synced_prefix():
    with Volume() as v:
        for rnd in range(3):
            name = "log%d" % rnd
            write_file(v.path(name), b"")
            stop = threading.Event()
            synced = [0]
            t = threading.Thread(target=_appender_loop, args=(v.path(name), stop, synced))
            t.start()
            time.sleep(0.2 + 0.1 * rnd)
            try:
                _kill_daemon(v)
            finally:
                stop.set()
                t.join(30)
            assert not t.is_alive(), "appender stuck after the daemon was killed"
            v.mount()
            good = synced[-1]
            assert good > 0, "nothing was fsync'd before the crash (test too short?)"
            try:
                fd = os.open(v.path(name), os.O_RDONLY)
            except OSError as e:
                raise AssertionError("round %d: file being appended to no longer opens after "
                                     "a daemon crash: %s (fsync'd %d bytes lost)" % (rnd, e, good))
            try:
                size = os.fstat(fd).st_size
                assert size >= good, "round %d: size %d < fsync'd length %d" % (rnd, size, good)
                want = _expected_prefix(size)
                got = os.pread(fd, good, 0)
                assert_bytes_eq(got, want[:good], "round %d: fsync'd prefix after crash" % rnd)
                # the unsynced tail: chunk by chunk, correct bytes or EIO
                # (a read may also stop short before a chunk that fails)
                start = (good // C) * C
                for off in range(start, size, C):
                    try:
                        b = os.pread(fd, C, off)
                    except OSError as e:
                        assert e.errno == errno.EIO, "round %d: tail chunk at %d: %s" % (rnd, off, e)
                        continue
                    assert_bytes_eq(b, want[off:off + len(b)],
                                    "round %d: unsynced tail chunk at %d" % (rnd, off))
            finally:
                os.close(fd)
