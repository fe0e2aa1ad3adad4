"""kekfs fsck: one test per kind of problem, on both name modes where names matter. Each
damage is done to the backing files of an unmounted volume, as a crash, a bad disk or someone
with write access to the backing directory would; fsck must name the file by its plaintext
path, say what is wrong and what to do, and exit 1; --repair fixes only what is safe.
Exit codes: 0 clean, 1 problems, 2 could not run."""

import contextlib
import os
import shutil

from kekfs_harness import (Volume, run_kekfs, write_file, read_file, pattern, assert_eq,
                           assert_bytes_eq, wait_for, HEADER_SIZE, SLOT_A, SLOT_B, SLOT_SIZE)

MODES = ("plaintext", "encrypted")


# ---- xxHash64 (the wrap slots' checksum), to forge a slot that passes it

_P1, _P2, _P3 = 11400714785074694791, 14029467366897019727, 1609587929392839161
_P4, _P5, _M = 9650029242287828579, 2870177450012600261, (1 << 64) - 1


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc, lane):
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def xxh64(data):
    n, i, le = len(data), 0, lambda a, b: int.from_bytes(data[a:b], "little")
    if n >= 32:
        v = [(_P1 + _P2) & _M, _P2, 0, (-_P1) & _M]
        while i + 32 <= n:
            v = [_round(v[k], le(i + 8 * k, i + 8 * k + 8)) for k in range(4)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for k in range(4):
            h = ((h ^ _round(0, v[k])) * _P1 + _P4) & _M
    else:
        h = _P5
    h = (h + n) & _M
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, le(i, i + 8)), 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ ((le(i, i + 4) * _P1) & _M), 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h = (_rotl(h ^ ((data[i] * _P5) & _M), 11) * _P1) & _M
        i += 1
    h = ((h ^ (h >> 33)) * _P2) & _M
    h = ((h ^ (h >> 29)) * _P3) & _M
    return h ^ (h >> 32)


# ---- helpers


def fsck(v, *extra):
    return run_kekfs("fsck", *(v.key_args() + list(extra) + [v.backing]), timeout=120)


def out_lines(r):
    return r.stdout.decode("utf-8", "replace").splitlines()


def expect(r, rc, *needles):
    """fsck exited rc and some output line holds every needle; returns that line."""
    text = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    assert_eq(r.returncode, rc, "fsck exit status (output: %s)" % text[-1500:])
    for line in text.splitlines():
        if all(n in line for n in needles):
            return line
    raise AssertionError("no fsck line holds %r:\n%s" % (needles, text[-1500:]))


def bfile(v, *parts):
    """Backing path of a plaintext path (volume unmounted or not)."""
    return v.backing_path(*parts)


def patch(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


def chunk_off(v, i):
    return HEADER_SIZE + i * (v.effective_chunk + v.overhead)


@contextlib.contextmanager
def volume_with_tree(names):
    """A mounted volume holding /d/f (3 chunks and a bit) and a few others."""
    with Volume(names=names) as v:
        os.mkdir(v.path("d"))
        write_file(v.path("d", "f"), pattern(3 * 4096 + 100, 1))
        write_file(v.path("empty"), b"")
        write_file(v.path("small"), b"small file")
        os.symlink("small", v.path("link"))
        yield v


# ---- tests


def test_fsck_clean_volume_exits_0():
    """A healthy volume (after a rotation, with a long name and a hole) is clean: exit 0."""
    for names in MODES:
        with volume_with_tree(names) as v:
            write_file(v.path("L" * 200), b"long name")
            with open(v.path("holes"), "wb") as f:
                f.seek(10 * 4096)
                f.write(b"x")
            assert run_kekfs("rotate", v.mnt).returncode == 0
            assert wait_for(lambda: b"re-wrap: finished" in run_kekfs("status", v.mnt).stdout,
                            60, interval=0.05), "the re-wrap did not finish"
            v.umount()
            r = fsck(v)
            line = expect(r, 0, "clean")
            assert "5 files, 1 directories, 1 symlinks" in line, line


def test_fsck_tampered_chunk():
    """One byte of one chunk changed: that chunk is named, by the file's plaintext path, once
    even though the file has a second name (a hard link)."""
    for names in MODES:
        with volume_with_tree(names) as v:
            os.link(v.path("d", "f"), v.path("zlink"))
            v.umount()
            flip(bfile(v, "d", "f"), chunk_off(v, 1) + 30)
            r = fsck(v)
            expect(r, 1, ": chunk 1 ", "does not authenticate", "backup")
            assert_eq(sum("chunk 1" in l for l in out_lines(r)), 1, "problem lines: %r" % r)
            assert "4 files" in out_lines(r)[-1], out_lines(r)


def test_fsck_torn_slot_repaired():
    """A torn spare slot, and (after a rotation) a torn current one whose twin still opens:
    reported, rewritten by --repair, then clean, and the file reads back."""
    for names in MODES:
        with volume_with_tree(names) as v:
            v.umount()
            path = bfile(v, "d", "f")
            patch(path, SLOT_B + 10, os.urandom(40))  # a re-wrap torn mid-write
            expect(fsck(v), 1, "/d/f: wrap slot B", "torn", "--repair")
            expect(fsck(v, "--repair"), 0, "/d/f: wrap slot B", "(repaired)")
            expect(fsck(v), 0, "clean")
            v.mount()
            assert run_kekfs("rotate", v.mnt).returncode == 0
            v.umount()
            run_kekfs("rotate", "--resume", *v.key_args(), v.backing)
            hdr = read_file(path)[:HEADER_SIZE]
            cur = SLOT_A if hdr[SLOT_A:SLOT_A + 8] > hdr[SLOT_B:SLOT_B + 8] else SLOT_B
            patch(path, cur + 50, os.urandom(20))
            expect(fsck(v, "--repair"), 0, "/d/f: wrap slot", "torn", "(repaired)")
            expect(fsck(v), 0, "clean")
            v.mount()
            assert_bytes_eq(read_file(v.path("d", "f")), pattern(3 * 4096 + 100, 1),
                            "file after the repair")


def test_fsck_both_slots_torn():
    """Both slots torn: the key is lost; --repair cannot help and says so (exit 1)."""
    with volume_with_tree("encrypted") as v:
        v.umount()
        patch(bfile(v, "small"), SLOT_A, os.urandom(2 * SLOT_SIZE))
        expect(fsck(v), 1, "/small: both wrap slots", "checksum", "backup")
        expect(fsck(v, "--repair"), 1, "/small: both wrap slots")


def test_fsck_truncated_at_chunk_boundary():
    """A file cut exactly after its second chunk: its size is valid, its end is not."""
    for names in MODES:
        with volume_with_tree(names) as v:
            v.umount()
            os.truncate(bfile(v, "d", "f"), chunk_off(v, 2))
            expect(fsck(v), 1, "/d/f: it was cut short at a chunk boundary", "backup")
            os.truncate(bfile(v, "small"), HEADER_SIZE + 3)
            expect(fsck(v), 1, "/small: its size (259 bytes) is not one kekfs writes")


def test_fsck_unknown_kek_version():
    """A slot naming KEK v99 (checksum fixed up): 'this keyring does not have'."""
    with volume_with_tree("plaintext") as v:
        v.umount()
        path = bfile(v, "small")
        slot = bytearray(read_file(path)[SLOT_A:SLOT_A + SLOT_SIZE])
        assert_eq(xxh64(bytes(slot[:88])), int.from_bytes(slot[88:], "little"), "xxh64 self-test")
        slot[8:12] = (99).to_bytes(4, "little")
        slot[88:] = xxh64(bytes(slot[:88])).to_bytes(8, "little")
        patch(path, SLOT_A, bytes(slot))
        expect(fsck(v), 1, "/small: its key is wrapped by KEK v99, which this keyring does not have")


def test_fsck_destroyed_and_retired_kek():
    """A file put back from before a rotation, its KEK then retired, then destroyed with
    'keys destroy --now --force': fsck says which state and what to do."""
    for names in MODES:
        with volume_with_tree(names) as v:
            v.umount()
            path = bfile(v, "small")
            shutil.copyfile(path, v.bpath("..", "old"))
            assert run_kekfs("rotate", *v.key_args(), v.backing).returncode == 0
            shutil.copyfile(v.bpath("..", "old"), path)
            r = run_kekfs("keys", "retire", "1", "--force", *v.key_args(), v.backing)
            assert_eq(r.returncode, 0, "keys retire --force: %r" % r)
            expect(fsck(v), 1, "/small: its key is wrapped by KEK v1, which is retired",
                   "kekfs keys restore 1")
            r = run_kekfs("keys", "destroy", "1", "--now", "--force", *v.key_args(), v.backing)
            assert_eq(r.returncode, 0, "keys destroy --now --force: %r" % r)
            expect(fsck(v), 1, "/small: its key is wrapped by KEK v1, which is destroyed",
                   "contents are gone")


def test_fsck_shredded_file():
    """A shredded header left under a name: reported; removed only by --repair --force."""
    for names in MODES:
        with volume_with_tree(names) as v:
            v.umount()
            path = bfile(v, "small")
            patch(path, 7, b"\x01")
            patch(path, SLOT_A, os.urandom(2 * SLOT_SIZE))
            expect(fsck(v), 1, "/small: crypto-shredded", "--force")
            expect(fsck(v, "--repair"), 1, "/small: crypto-shredded")
            assert os.path.exists(path), "--repair without --force deleted a file"
            expect(fsck(v, "--repair", "--force"), 0, "/small: crypto-shredded", "(repaired)")
            assert not os.path.exists(path), "--repair --force left the shredded file"
            expect(fsck(v), 0, "clean")


def test_fsck_orphan_side_file_removed_by_repair():
    """A long name's entry gone, its side file left (a crash): named by its plaintext name,
    removed by --repair; so is an empty directory a crash left under its temporary name."""
    with Volume(names="encrypted") as v:
        long_name = "N" * 190
        write_file(v.path(long_name), b"x")
        v.umount()
        entry = bfile(v, long_name)
        side = os.path.join(os.path.dirname(entry), "." + os.path.basename(entry))
        assert os.path.exists(side), "no side file for a long name"
        os.unlink(entry)
        expect(fsck(v), 1, "/" + long_name + ": an orphan long-name side file", "--repair")
        expect(fsck(v, "--repair"), 0, "orphan long-name side file", "(repaired)")
        assert not os.path.exists(side), "--repair left the orphan side file"
        expect(fsck(v), 0, "clean")
        unnamed = v.bpath(".kekfs.new.0123456789abcdef")  # a mkdir cut short by a crash
        os.mkdir(unnamed)
        write_file(os.path.join(unnamed, ".kekfs.dirid"), os.urandom(16))
        expect(fsck(v), 1, unnamed + ": a directory whose creation a crash interrupted")
        expect(fsck(v, "--repair"), 0, unnamed + ": a directory", "(repaired)")
        assert not os.path.exists(unnamed), "--repair left the unnamed directory"


def test_fsck_tampered_names_and_dir_ids():
    """Encrypted names: a renamed backing entry, a changed directory id, a missing one, a
    damaged long-name side file."""
    with volume_with_tree("encrypted") as v:
        os.mkdir(v.path("e"))
        write_file(v.path("e", "g"), b"g")
        write_file(v.path("M" * 190), b"m")
        v.umount()
        small = bfile(v, "small")
        os.rename(small, small[:-3] + ("AAA" if not small.endswith("AAA") else "BBB"))
        out = fsck(v)
        expect(out, 1, v.backing + "/", "its name does not decrypt")
        os.rename(small[:-3] + ("AAA" if not small.endswith("AAA") else "BBB"), small)
        expect(fsck(v), 0, "clean")
        edir = os.path.dirname(bfile(v, "e", "g"))
        os.chmod(os.path.join(edir, ".kekfs.dirid"), 0o600)
        patch(os.path.join(edir, ".kekfs.dirid"), 0, os.urandom(16))
        expect(fsck(v), 1, edir + "/", "its name does not decrypt")
        os.unlink(os.path.join(edir, ".kekfs.dirid"))
        expect(fsck(v), 1, "/e: its directory id (.kekfs.dirid) is missing or damaged")
        entry = bfile(v, "M" * 190)
        side = os.path.join(os.path.dirname(entry), "." + os.path.basename(entry))
        os.chmod(side, 0o600)
        flip(side, 5)
        expect(fsck(v), 1, entry + ": the side file", "missing or damaged")


def test_fsck_tampered_audit_line():
    """One edited audit record: the chain break is reported, with the line."""
    with volume_with_tree("plaintext") as v:
        v.umount()
        log = v.bpath(".kekfs", "audit.log")
        text = open(log, "rb").read()
        assert b'"op":"init"' in text, text[:300]
        open(log, "wb").write(text.replace(b'"op":"init"', b'"op":"inix"', 1))
        expect(fsck(v), 1, "audit.log: the audit log's chain is broken", "line 1")


def test_fsck_tampered_keyring():
    """A damaged keyring: nothing else can be checked, and that is a problem found (1)."""
    with volume_with_tree("plaintext") as v:
        v.umount()
        flip(v.keyring, 60)
        flip(v.keyring, 4096 + 60)  # both copies: one bad copy is survived
        r = fsck(v)
        expect(r, 1, "nothing else could be checked")
        expect(r, 1, "keyring", "damaged")


def test_fsck_refusals_exit_2():
    """Mounted (by backing dir or mount point), wrong key, not a volume: exit 2, one line."""
    with volume_with_tree("plaintext") as v:
        r = fsck(v)
        expect(r, 2, "is mounted on", "unmount it first")
        r = run_kekfs("fsck", *(v.key_args() + [v.mnt]))
        expect(r, 2, "is mounted on")
        v.umount()
        other = os.path.join(v.base, "other-key")
        with open(other, "wb") as f:
            f.write(os.urandom(32))
        r = run_kekfs("fsck", "--key-file", other, v.backing)
        expect(r, 2, "cannot unlock")
        r = run_kekfs("fsck", "--key-file", other, v.mnt)
        expect(r, 2, "not a kekfs volume")
        expect(fsck(v), 0, "clean")


def test_fsck_sparse_1tib_reads_only_data():
    """A 1 TiB sparse file with a few chunks of data: fsck reads only those (in seconds), and
    still finds a tampered chunk in the middle."""
    with Volume(names="encrypted") as v:
        tib = 1 << 40
        with open(v.path("huge"), "wb") as f:
            f.truncate(tib)
            for off in (0, tib // 2, tib - 3 * 4096):
                f.seek(off)
                f.write(pattern(2 * 4096, off))
        v.umount()
        r = fsck(v)
        line = expect(r, 0, "clean")
        chunks = int(line.split(" chunks read")[0].split()[-1])
        assert chunks < 20, "fsck read %d chunks of a sparse file: %s" % (chunks, line)
        assert r.elapsed < 30, "fsck of a 1 TiB sparse file took %.1f s" % r.elapsed
        flip(bfile(v, "huge"), chunk_off(v, (tib // 2) // 4096 + 1) + 100)
        expect(fsck(v), 1, "/huge: chunk %d " % ((tib // 2) // 4096 + 1), "does not authenticate")


def test_fsck_progress_bar_on_a_terminal():
    """On a terminal fsck draws a progress bar, wiped before each problem line and at the end;
    elsewhere (every test above) it prints none."""
    import pty
    import subprocess
    with volume_with_tree("encrypted") as v:
        v.umount()
        flip(bfile(v, "d", "f"), chunk_off(v, 0) + 30)
        master, slave = pty.openpty()
        p = subprocess.Popen([os.environ.get("KEKFS_BIN", "build/kekfs"), "fsck"] +
                             v.key_args() + [v.backing], stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=slave, start_new_session=True)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert_eq(p.wait(timeout=60), 1, "fsck exit status (output %r)" % out[-500:])
        assert b"\rchecking: 3/3 files (100%)" in out, out
        before = out.split(b"/d/f: chunk 0 ")[0]
        assert before == b"" or before.endswith((b"\n", b"\r\x1b[K")), out
        assert b"\r\x1b[Kfsck " in out and b"1 problem" in out, out
