#!/usr/bin/env python3
"""Times `kekfs fsck` on a volume of many small files, backing on tmpfs (/dev/shm).

    python3 tools/fsck_bench.py [build/kekfs] [FILES] [NAMES]

FILES (default 100000) files of 100..2000 bytes are written through a mount, 1000 to a
directory; NAMES is "encrypted" (default) or "plaintext". Prints the fsck summary lines and
the wall time of a clean check (best of two, after one warm-up run).
"""

import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
if len(sys.argv) > 1:
    os.environ["KEKFS_BIN"] = os.path.abspath(sys.argv[1])
os.environ.setdefault("KEKFS_TEST_TMPDIR", tempfile.mkdtemp(prefix="kekfs-fsck-bench-",
                                                            dir="/dev/shm"))

import kekfs_harness as h  # noqa: E402


def main():
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    names = sys.argv[3] if len(sys.argv) > 3 else "encrypted"
    try:
        with h.Volume(names=names) as v:
            t0 = time.monotonic()
            for i in range(n):
                if i % 1000 == 0:
                    d = v.path("d%04d" % (i // 1000))
                    os.mkdir(d)
                h.write_file(os.path.join(d, "f%06d" % i), h.pattern(100 + i % 1900, i))
            print("wrote %d files through the mount in %.1f s" % (n, time.monotonic() - t0))
            v.umount()
            times = []
            for _ in range(3):
                r = h.run_kekfs("fsck", *(v.key_args() + [v.backing]), timeout=3600)
                assert r.returncode == 0, r
                times.append(r.elapsed)
            print(r.stdout.decode().strip())
            print("fsck of %d files (%s names): %.2f s (best of 2 after a warm-up)"
                  % (n, names, min(times[1:])))
    finally:
        h.rmtree(h.tmp_root())


if __name__ == "__main__":
    main()
