"""copy_file_range inside a volume is done by the daemon (issue 19): each case gives the
same bytes, sizes and return values as on a plain directory: copies within a file, into
the middle of another, past its end, from past the source's end, across chunk boundaries
and holes; two copies in opposite directions at once finish; cp uses it."""

import os
import subprocess
import threading

from kekfs_harness import Volume, assert_eq, assert_bytes_eq, make_tempdir, rmtree, pattern

C = 4096
CASES = [  # (source size, dest size, off_in, off_out, len)
    (10 * C, 0, 0, 0, 10 * C),
    (10 * C + 7, 3 * C, 5, 2 * C - 3, 4 * C + 11),
    (3 * C, 3 * C, 2 * C, 5 * C, 4 * C),       # short: the source ends first
    (3 * C, 0, 4 * C, 0, C),                   # from past the source's end: 0
    (300 * C + 9, 10, 7, 100 * C + 1, 300 * C),  # several slices of the daemon's loop
    (2 * C, 9 * C, C - 1, 9 * C + 5, C + 2),   # appends past the end, leaving a hole
]


def run_cases(d):
    """Each case in directory d: (return value, source bytes, dest bytes)."""
    out = []
    for i, (ss, ds, oi, oo, n) in enumerate(CASES):
        src, dst = os.path.join(d, "s%d" % i), os.path.join(d, "d%d" % i)
        with open(src, "wb") as f:
            f.write(pattern(ss, i))
            if i == 4:
                f.seek(50 * C)
                f.write(b"\0" * C)  # a zero chunk inside: read as data
        with open(dst, "wb") as f:
            f.write(pattern(ds, 50 + i))
        fi, fo = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY)
        try:
            got = os.copy_file_range(fi, fo, n, oi, oo)
        finally:
            os.close(fi)
            os.close(fo)
        out.append((got, open(src, "rb").read(), open(dst, "rb").read()))
    same = os.path.join(d, "same")
    with open(same, "wb") as f:
        f.write(pattern(8 * C, 99))
    fd = os.open(same, os.O_RDWR)
    try:
        got = os.copy_file_range(fd, fd, 2 * C + 3, 1, 5 * C)  # within one file
    finally:
        os.close(fd)
    out.append((got, b"", open(same, "rb").read()))
    return out


def test_copy_file_range_matches_a_plain_directory():
    plain = make_tempdir("copy-plain")
    try:
        want = run_cases(plain)
        with Volume() as v:
            got = run_cases(v.mnt)
            v.remount()
            for i in range(len(CASES)):
                assert_bytes_eq(open(v.path("d%d" % i), "rb").read(), want[i][2],
                                "case %d after a remount" % i)
        for i, (w, g) in enumerate(zip(want, got)):
            assert_eq(g[0], w[0], "copy_file_range result of case %d" % i)
            assert_bytes_eq(g[1], w[1], "source of case %d" % i)
            assert_bytes_eq(g[2], w[2], "destination of case %d" % i)
    finally:
        rmtree(plain)


def test_copies_in_opposite_directions_finish():
    """a -> b and b -> a at the same time, many times: the daemon locks the pair in one
    order, so neither waits for the other for good."""
    with Volume() as v:
        for n in "ab":
            with open(v.path(n), "wb") as f:
                f.write(pattern(64 * C, ord(n)))
        errors = []

        def copier(src, dst):
            try:
                fi, fo = os.open(v.path(src), os.O_RDONLY), os.open(v.path(dst), os.O_WRONLY)
                try:
                    for _ in range(200):
                        os.copy_file_range(fi, fo, 32 * C, 0, 32 * C)
                finally:
                    os.close(fi)
                    os.close(fo)
            except OSError as e:
                errors.append(e)
        ts = [threading.Thread(target=copier, args=p) for p in (("a", "b"), ("b", "a"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not any(t.is_alive() for t in ts), "copies still running after 60 s"
        assert_eq(errors, [], "errors of the copies")
        assert_eq(os.path.getsize(v.path("a")), 64 * C, "size of a")


def test_cp_within_the_volume():
    with Volume() as v:
        data = pattern(3 * 1024 * 1024 + 5, 3)
        with open(v.path("f"), "wb") as f:
            f.write(data)
        subprocess.run(["cp", v.path("f"), v.path("g")], check=True)  # copy_file_range
        assert_bytes_eq(open(v.path("g"), "rb").read(), data, "copy made by cp")
