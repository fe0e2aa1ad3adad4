"""Tamper detection: modifying backing files must give EIO (on read, or an
error on open) and never wrong plaintext.

Every case works on its own victim file written through the mount (so it is
pristine by construction and has its own file id and key).  The volume is
unmounted, a batch of tampers is applied to the backing files, the volume is
mounted again and each victim is read in full.  After every case an
untouched neighbour must still read correctly and the daemon must still be
up.

Format (docs/spec): 256-byte header ("KKFS", version, cipher, chunk size,
file id at 8..23, wrap slot A at 24, slot B at 120, 96 bytes each, reserved
zeros to 256), then chunks nonce||ciphertext||tag of C + O bytes
(O = 40 xchacha20-poly1305, 28 aes-256-gcm), final chunk shorter and
authenticated as final.  An all-zero non-final chunk is a hole.
"""

import errno
import os

from kekfs_harness import (Volume, write_file, read_file, pattern, assert_eq, assert_bytes_eq,
                           is_mounted, HEADER_SIZE, SLOT_A, SLOT_B, SLOT_SIZE, NONCE_LEN,
                           TAG_LEN)

# Run on plaintext and on encrypted names (tests/run_tests.py).
NAME_MODES = ("plaintext", "encrypted")

MAGIC = b"KKFS"


class Rig(object):
    """Victim files written through the mount, plus their pristine backing
    bytes once unmounted."""

    def __init__(self, v, nchunks_full=4, tail=1000):
        self.v = v
        self.C = v.effective_chunk
        self.O = v.overhead
        self.NL = NONCE_LEN[v.effective_cipher]
        self.size = nchunks_full * self.C + tail
        self.nchunks = nchunks_full + (1 if tail else 0)
        self.count = 0
        self.plain = {}
        self.pristine = {}
        self.neighbour = pattern(2 * self.C + 5, 4242)
        write_file(v.path("neighbour"), self.neighbour)

    def make_victims(self, n):
        names = []
        for _ in range(n):
            self.count += 1
            name = "victim%03d" % self.count
            data = pattern(self.size, self.count)
            write_file(self.v.path(name), data)
            self.plain[name] = data
            names.append(name)
        return names

    def load_pristine(self, names):
        for n in names:
            b = read_file(self.v.backing_path(n))
            self.pristine[n] = b
            assert_eq(len(b), self.v.expected_backing_size(self.size),
                      "backing size of %s (layout assumed by the tamper tests)" % n)
            assert b[:4] == MAGIC, "backing file %s does not start with KKFS: %r" % (n, b[:8])

    # chunk geometry
    def chunk_range(self, i):
        start = HEADER_SIZE + i * (self.C + self.O)
        if i == self.nchunks - 1:
            end = HEADER_SIZE + self.nchunks * self.O + self.size
        else:
            end = start + self.C + self.O
        return start, end


def flip(b, off, mask=0xFF):
    b = bytearray(b)
    b[off] ^= mask
    return bytes(b)


def slot_empty(hdr, base):
    return hdr[base:base + SLOT_SIZE] == b"\0" * SLOT_SIZE


def expect_error(v, name, plain, label):
    """Reading name must fail: OSError on open, or EIO on read; bytes
    returned before the error must be a correct prefix."""
    p = v.path(name)
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    got = []
    try:
        for attempt in range(2):  # second pass: no cached plaintext either
            os.lseek(fd, 0, os.SEEK_SET)
            got = []
            try:
                while True:
                    b = os.read(fd, 65536)
                    if not b:
                        break
                    got.append(b)
            except OSError as e:
                data = b"".join(got)
                if data != plain[:len(data)]:
                    raise AssertionError("%s: WRONG PLAINTEXT returned before the error "
                                         "(%d bytes)" % (label, len(data)))
                if e.errno != errno.EIO:
                    raise AssertionError("%s: read failed with %s, expected EIO" % (
                        label, errno.errorcode.get(e.errno, e.errno)))
                continue
            data = b"".join(got)
            if data == plain:
                raise AssertionError("%s: tampering NOT detected (full correct plaintext "
                                     "returned, no error)" % label)
            raise AssertionError("%s: WRONG PLAINTEXT returned without error (%d bytes, "
                                 "expected an error)" % (label, len(data)))
    finally:
        os.close(fd)


def expect_no_wrong_plaintext(v, name, plain, label):
    """Either an error (as above) or exactly the right plaintext."""
    try:
        data = read_file(v.path(name))
    except OSError as e:
        return "error %s" % errno.errorcode.get(e.errno, e.errno)
    if data != plain:
        raise AssertionError("%s: WRONG PLAINTEXT returned (%d bytes)" % (label, len(data)))
    return "ok"


def run_batch(v, rig, cases):
    """cases: list of (label, {victim: tampered_bytes}, check) where check is
    "fail", "nowrong", "empty" or ("content", {victim: expected_plaintext})."""
    v.umount()
    for label, tampers, check in cases:
        for name, data in tampers.items():
            with open(v.backing_path(name), "r+b") as f:  # in place: keep inode/xattrs
                f.truncate(0)
                f.write(data)
    v.mount()
    problems = []
    for label, tampers, check in cases:
        try:
            for name in sorted(tampers):
                if check == "fail":
                    expect_error(v, name, rig.plain[name], "%s [%s]" % (label, name))
                elif check == "nowrong":
                    expect_no_wrong_plaintext(v, name, rig.plain[name], "%s [%s]" % (label, name))
                elif check == "empty":  # what a crash before a header leaves: an empty file
                    assert_eq(read_file(v.path(name)), b"", "%s [%s]" % (label, name))
                    assert_eq(os.stat(v.path(name)).st_size, 0, label + " st_size")
                else:
                    want = check[1][name]
                    try:
                        got = read_file(v.path(name))
                    except OSError as e:
                        raise AssertionError("%s: read failed: %s" % (label, e))
                    assert_bytes_eq(got, want, label)
                    assert_eq(os.stat(v.path(name)).st_size, len(want), label + " st_size")
        except AssertionError as e:
            problems.append(str(e))
        # the daemon stays up and neighbours are unaffected
        if not is_mounted(v.mnt) or not v.daemon_alive():
            problems.append("daemon died / mount gone after case: %s" % label)
            break
        try:
            got = read_file(v.path("neighbour"))
        except OSError as e:
            problems.append("%s: untouched neighbour unreadable: %s" % (label, e))
            break
        if got != rig.neighbour:
            problems.append("%s: untouched neighbour reads wrong data" % label)
    if is_mounted(v.mnt) and v.daemon_alive():
        write_file(v.path("after-batch"), b"still works")
        assert_eq(read_file(v.path("after-batch")), b"still works", "daemon usable after batch")
        os.unlink(v.path("after-batch"))
    if problems:
        raise AssertionError("%d of %d tamper cases failed:\n  %s" % (
            len(problems), len(cases), "\n  ".join(problems[:40])))


# --------------------------------------------------------------------------


def test_backing_layout():
    with Volume() as v:
        C = v.effective_chunk
        sizes = {"s0": 0, "s1": 1, "sC": C, "sC1": C + 1, "s5C": 5 * C, "s3M": 3 * 1024 * 1024 + 7}
        for n, s in sizes.items():
            write_file(v.path(n), pattern(s, s))
        v.umount()
        ids = set()
        for n, s in sizes.items():
            b = read_file(v.backing_path(n))
            assert_eq(len(b), v.expected_backing_size(s), "backing size of %d-byte file" % s)
            assert_eq(b[:4], MAGIC, "magic")
            assert_eq(b[216:256], b"\0" * 40, "reserved header bytes of %s" % n)
            fid = b[8:24]
            assert fid != b"\0" * 16, "file id is all zeros"
            ids.add(fid)
            assert not (slot_empty(b, SLOT_A) and slot_empty(b, SLOT_B)), \
                "both wrap slots empty in %s" % n
            if s >= 64:
                assert pattern(s, s)[:64] not in b, "plaintext visible in backing file"
        assert_eq(len(ids), len(sizes), "file ids must be unique per file")
        # headers of files created with identical contents still differ
        v.mount()
        write_file(v.path("same1"), b"same")
        write_file(v.path("same2"), b"same")
        v.umount()
        a, b = read_file(v.backing_path("same1")), read_file(v.backing_path("same2"))
        assert a[HEADER_SIZE:] != b[HEADER_SIZE:], "identical plaintext gives identical ciphertext"
        v.mount()


def _header_cases(rig, names):
    """(label, nvictims, builder, check) for the header fields."""
    cases = []
    p0 = rig.pristine[names[0]]
    for off in (0, 1, 2, 3):
        cases.append(("magic byte %d flipped" % off, lambda b, o=off: flip(b, o), "fail"))
    for off in (4, 5, 6, 7):
        cases.append(("header byte %d (version/cipher/chunk size) ^0x01" % off,
                      lambda b, o=off: flip(b, o, 0x01), "fail"))
        cases.append(("header byte %d (version/cipher/chunk size) ^0xff" % off,
                      lambda b, o=off: flip(b, o, 0xFF), "fail"))
    for off in range(8, 24, 7):
        cases.append(("file id byte %d flipped" % off, lambda b, o=off: flip(b, o), "fail"))
    cases.append(("file id byte 23 flipped", lambda b: flip(b, 23), "fail"))
    for off in range(216, 256, 7):
        cases.append(("reserved header byte %d set" % off, lambda b, o=off: flip(b, o), "fail"))
    cases.append(("whole header zeroed", lambda b: b"\0" * HEADER_SIZE + b[HEADER_SIZE:], "fail"))
    # wrap slots
    a_empty, b_empty = slot_empty(p0, SLOT_A), slot_empty(p0, SLOT_B)
    for base, other, sname in ((SLOT_A, SLOT_B, "A"), (SLOT_B, SLOT_A, "B")):
        for k in list(range(0, SLOT_SIZE, 7)) + [SLOT_SIZE - 1]:
            def build(b, base=base, other=other, k=k):
                b = bytearray(b)
                if slot_empty(b, base):
                    # the slot is unused in this file: put the used slot's
                    # content here so that this slot is the only candidate
                    b[base:base + SLOT_SIZE] = b[other:other + SLOT_SIZE]
                b[other:other + SLOT_SIZE] = b"\0" * SLOT_SIZE  # other slot empty
                b[base + k] ^= 0xFF
                return bytes(b)
            cases.append(("slot %s byte %d flipped, other slot empty" % (sname, k), build, "fail"))
        for k in (0, 40, 95):
            def build2(b, base=base, other=other, k=k):
                b = bytearray(b)
                orig_other = bytes(b[other:other + SLOT_SIZE])
                if slot_empty(b, base):
                    b[base:base + SLOT_SIZE] = orig_other
                b[other:other + SLOT_SIZE] = bytes(x ^ 0x5A for x in orig_other)
                b[base + k] ^= 0xFF
                return bytes(b)
            cases.append(("slot %s byte %d flipped, other slot garbage" % (sname, k), build2,
                          "fail"))
    if not a_empty and not b_empty:
        # both slots in use: damaging one may be tolerated but never wrong data
        for base, sname in ((SLOT_A, "A"), (SLOT_B, "B")):
            cases.append(("slot %s flipped, other slot intact" % sname,
                          lambda b, base=base: flip(b, base + 10), "nowrong"))
    else:
        used = SLOT_B if a_empty else SLOT_A
        unused = SLOT_A if a_empty else SLOT_B
        cases.append(("unused slot filled with garbage, used slot intact",
                      lambda b: b[:unused] + bytes(range(SLOT_SIZE)) + b[unused + SLOT_SIZE:],
                      "nowrong"))
        cases.append(("used slot moved to the other slot position",
                      lambda b: _move_slot(b, used, unused), "nowrong"))
    return cases


def _move_slot(b, src, dst):
    b = bytearray(b)
    b[dst:dst + SLOT_SIZE] = b[src:src + SLOT_SIZE]
    b[src:src + SLOT_SIZE] = b"\0" * SLOT_SIZE
    return bytes(b)


def _chunk_cases(rig):
    cases = []
    for i in range(rig.nchunks):
        s, e = rig.chunk_range(i)
        kind = "final" if i == rig.nchunks - 1 else "non-final"
        cases.append(("chunk %d (%s) nonce byte flipped" % (i, kind),
                      lambda b, s=s: flip(b, s + rig.NL // 2), "fail"))
        cases.append(("chunk %d (%s) first ciphertext byte flipped" % (i, kind),
                      lambda b, s=s: flip(b, s + rig.NL), "fail"))
        cases.append(("chunk %d (%s) middle ciphertext byte flipped" % (i, kind),
                      lambda b, s=s, e=e: flip(b, (s + rig.NL + e - TAG_LEN) // 2, 0x01), "fail"))
        cases.append(("chunk %d (%s) tag byte flipped" % (i, kind),
                      lambda b, e=e: flip(b, e - 1), "fail"))
    return cases


def _structure_cases(rig):
    C, O = rig.C, rig.O
    n = rig.nchunks

    def swap(b, i, j):
        si, ei = rig.chunk_range(i)
        sj, ej = rig.chunk_range(j)
        assert ei - si == ej - sj
        b = bytearray(b)
        ci, cj = bytes(b[si:ei]), bytes(b[sj:ej])
        b[si:ei] = cj
        b[sj:ej] = ci
        return bytes(b)

    def dup(b, i, j):
        si, ei = rig.chunk_range(i)
        sj, ej = rig.chunk_range(j)
        b = bytearray(b)
        b[sj:ej] = b[si:ei]
        return bytes(b)
    s_last, e_last = rig.chunk_range(n - 1)
    s_prev, e_prev = rig.chunk_range(n - 2)
    cases = [
        ("swap chunks 0 and 1", lambda b: swap(b, 0, 1), "fail"),
        ("swap chunks 1 and 2", lambda b: swap(b, 1, 2), "fail"),
        ("chunk 0 copied over chunk 3", lambda b: dup(b, 0, 3), "fail"),
        ("truncate at chunk boundary (final chunk dropped)", lambda b: b[:s_last], "fail"),
        ("truncate at chunk boundary (last two chunks dropped)", lambda b: b[:s_prev], "fail"),
        ("truncate: last byte cut", lambda b: b[:-1], "fail"),
        ("truncate: final chunk shorter than overhead", lambda b: b[:s_last + O - 1], "fail"),
        ("truncate to header only", lambda b: b[:HEADER_SIZE], "fail"),
        ("truncate to 10 bytes", lambda b: b[:10], "fail"),
        # 0 bytes is what a crash between a create (or a cut to 0) and the header leaves: it
        # reads as an empty file, which gives whoever cut it what deleting it would
        ("truncate to 0 bytes", lambda b: b"", "empty"),
        ("append 1 garbage byte", lambda b: b + b"\x01", "fail"),
        ("append 100 garbage bytes", lambda b: b + pattern(100, 9), "fail"),
        ("append a full chunk of garbage", lambda b: b + pattern(C + O, 10), "fail"),
        ("append 4096 zero bytes", lambda b: b + b"\0" * 4096, "fail"),
        ("final chunk appended again (replay)", lambda b: b + b[s_last:e_last], "fail"),
        ("final chunk zeroed", lambda b: b[:s_last] + b"\0" * (e_last - s_last), "fail"),
        ("final chunk zeroed except tag", lambda b: b[:s_last] + b"\0" * (e_last - s_last - TAG_LEN)
         + b[e_last - TAG_LEN:], "fail"),
        ("last non-final chunk zeroed and final chunk dropped (hole at end)",
         lambda b: b[:s_prev] + b"\0" * (e_prev - s_prev), "fail"),
    ]
    return cases


def _apply(rig, names, cases):
    """Assign a fresh victim to each case and build the batch."""
    batch = []
    assert len(names) >= len(cases), (len(names), len(cases))
    for (label, build, check), name in zip(cases, names):
        batch.append((label, {name: build(rig.pristine[name])}, check))
    return batch


def test_tamper_header_fields():
    with Volume() as v:
        rig = Rig(v)
        first = rig.make_victims(1)
        v.umount()
        rig.load_pristine(first)
        v.mount()
        cases = _header_cases(rig, first)
        names = rig.make_victims(len(cases))
        v.umount()
        rig.load_pristine(names)
        v.mount()
        run_batch(v, rig, _apply(rig, names, cases))


def test_tamper_chunk_regions():
    with Volume() as v:
        rig = Rig(v)
        cases = _chunk_cases(rig)
        names = rig.make_victims(len(cases))
        v.umount()
        rig.load_pristine(names)
        v.mount()
        run_batch(v, rig, _apply(rig, names, cases))


def test_tamper_file_structure():
    with Volume() as v:
        rig = Rig(v)
        cases = _structure_cases(rig)
        names = rig.make_victims(len(cases) + 2)
        v.umount()
        rig.load_pristine(names)
        v.mount()
        batch = _apply(rig, names, cases)
        # swap headers between two files
        x, y = names[-2], names[-1]
        px, py = rig.pristine[x], rig.pristine[y]
        batch.append(("headers swapped between two files",
                      {x: py[:HEADER_SIZE] + px[HEADER_SIZE:],
                       y: px[:HEADER_SIZE] + py[HEADER_SIZE:]}, "fail"))
        run_batch(v, rig, batch)


def test_tamper_chunk_moved_between_files():
    with Volume() as v:
        rig = Rig(v)
        names = rig.make_victims(2)
        v.umount()
        rig.load_pristine(names)
        v.mount()
        x, y = names
        s, e = rig.chunk_range(1)
        px, py = rig.pristine[x], rig.pristine[y]
        run_batch(v, rig, [("chunk 1 of another file spliced in",
                            {x: px[:s] + py[s:e] + px[e:]}, "fail")])


def test_zeroed_nonfinal_chunk_is_a_hole():
    with Volume() as v:
        rig = Rig(v)
        names = rig.make_victims(3)
        v.umount()
        rig.load_pristine(names)
        v.mount()
        C = rig.C
        batch = []
        for name, idx in zip(names, (0, 1, rig.nchunks - 2)):
            s, e = rig.chunk_range(idx)
            want = bytearray(rig.plain[name])
            want[idx * C:(idx + 1) * C] = b"\0" * C
            b = rig.pristine[name]
            batch.append(("non-final chunk %d zeroed reads as a hole" % idx,
                          {name: b[:s] + b"\0" * (e - s) + b[e:]},
                          ("content", {name: bytes(want)})))
        run_batch(v, rig, batch)


def test_tamper_aes_gcm_volume():
    with Volume(cipher="aes-256-gcm") as v:
        rig = Rig(v)
        chunk = [c for c in _chunk_cases(rig)
                 if c[0].startswith("chunk 0 ") or c[0].startswith("chunk %d " % (rig.nchunks - 1))]
        struct = [c for c in _structure_cases(rig)
                  if c[0].startswith(("swap chunks 0", "truncate at chunk boundary (final",
                                      "final chunk zeroed", "append 1 "))]
        first = rig.make_victims(1)
        v.umount()
        rig.load_pristine(first)
        v.mount()
        header = [c for c in _header_cases(rig, first)
                  if c[0].startswith(("magic byte 0", "header byte 5", "file id byte 15",
                                      "slot A byte 0,", "slot A byte 49,", "slot B byte 49,"))]
        cases = chunk + struct + header
        names = rig.make_victims(len(cases) + 1)
        v.umount()
        rig.load_pristine(names)
        v.mount()
        batch = _apply(rig, names, cases)
        hole = names[-1]
        s, e = rig.chunk_range(1)
        want = bytearray(rig.plain[hole])
        want[rig.C:2 * rig.C] = b"\0" * rig.C
        p = rig.pristine[hole]
        batch.append(("aes-gcm: zeroed non-final chunk is a hole",
                      {hole: p[:s] + b"\0" * (e - s) + p[e:]}, ("content", {hole: bytes(want)})))
        run_batch(v, rig, batch)


def test_tamper_one_case_per_mount():
    """A few cases done exactly as in the spec: restore the pristine file,
    tamper, mount, read, unmount -- on the same file each time."""
    with Volume() as v:
        rig = Rig(v)
        (name,) = rig.make_victims(1)
        v.umount()
        rig.load_pristine([name])
        v.mount()
        s_last, e_last = rig.chunk_range(rig.nchunks - 1)
        s1, e1 = rig.chunk_range(1)
        cases = [("magic flipped", lambda b: flip(b, 0)),
                 ("chunk 1 ciphertext flipped", lambda b: flip(b, s1 + 100)),
                 ("final chunk dropped", lambda b: b[:s_last]),
                 ("garbage appended", lambda b: b + b"junk")]
        for label, build in cases:
            run_batch(v, rig, [(label, {name: build(rig.pristine[name])}, "fail")])
        # pristine again: must read fine
        run_batch(v, rig, [("pristine restored", {name: rig.pristine[name]},
                            ("content", {name: rig.plain[name]}))])


test_tamper_header_fields.timeout = 300
test_tamper_chunk_regions.timeout = 300
test_tamper_file_structure.timeout = 300


def _expect_oserror(fn, label, wrong):
    try:
        got = fn()
    except OSError as e:
        return e.errno
    if got == wrong:
        raise AssertionError("%s: tampering not detected (value returned: %r)" % (label, got[:60]))
    raise AssertionError("%s: WRONG value returned without error: %r" % (label, got[:60]))


def test_tamper_symlink_targets_and_xattr_values():
    """Sealed symlink targets and user.* values: damage gives an error; an
    xattr value moved to another file or another name gives an error."""
    with Volume() as v:
        os.symlink("target-one/" + "x" * 50, v.path("l1"))
        write_file(v.path("a"), b"a")
        write_file(v.path("b"), b"b")
        os.setxattr(v.path("a"), "user.one", b"value of a.one " * 3)
        os.setxattr(v.path("a"), "user.two", b"value of a.two " * 3)
        os.setxattr(v.path("b"), "user.one", b"value of b.one " * 3)
        os.mkdir(v.path("d"))
        os.setxattr(v.path("d"), "user.one", b"dir value " * 3)
        bl1, ba, bb, bd = (v.backing_path(n) for n in ("l1", "a", "b", "d"))
        v.umount()
        problems = []
        # symlink target: flip one base64url character
        t = os.readlink(bl1)
        i = len(t) // 2
        t2 = t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1:]
        os.unlink(bl1)
        os.symlink(t2, bl1)
        # xattr values, under their backing names: "user.one" is the only one b has (names
        # are sealed deterministically when encrypted), "user.two" a's other one
        (one,) = os.listxattr(bb)
        (two,) = set(os.listxattr(ba)) - {one}
        assert_eq(os.listxattr(bd), [one], "backing name of d's user.one")
        a_one = os.getxattr(ba, one)
        a_two = os.getxattr(ba, two)
        os.setxattr(bb, one, a_one)                        # a's value moved to b
        os.setxattr(ba, one, a_two)                        # a.two's value under name one
        d_one = bytearray(os.getxattr(bd, one))
        d_one[len(d_one) // 2] ^= 0x01
        os.setxattr(bd, one, bytes(d_one))                 # flipped byte (name-key sealed)
        v.mount()
        checks = [
            ("symlink target with one base64 char changed",
             lambda: os.readlink(v.path("l1")).encode(), ("target-one/" + "x" * 50).encode()),
            ("xattr value moved from file a to file b",
             lambda: os.getxattr(v.path("b"), "user.one"), b"value of a.one " * 3),
            ("xattr value moved to another attribute name",
             lambda: os.getxattr(v.path("a"), "user.one"), b"value of a.two " * 3),
            ("directory xattr value with a flipped byte",
             lambda: os.getxattr(v.path("d"), "user.one"), b"dir value " * 3),
        ]
        for label, fn, wrong in checks:
            try:
                _expect_oserror(fn, label, wrong)
            except AssertionError as e:
                problems.append(str(e))
        assert v.daemon_alive(), "daemon died"
        assert_eq(os.getxattr(v.path("a"), "user.two"), b"value of a.two " * 3,
                  "untouched xattr of the same file")
        assert not problems, "\n  ".join(problems)
