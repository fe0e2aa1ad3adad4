#!/usr/bin/env python3
"""Makes the fuzzers' fixture volume and seed corpora from a real kekfs volume.

    python3 tests/fuzz/make_corpus.py [build/kekfs]

Creates a volume with a fresh test key, writes files through a mount (empty, small, several
chunks, sparse, a long name, a directory, a symlink, an xattr), rotates once, unmounts, and
keeps tests/fuzz/fixture/{key,volume,keyring} (the harnesses open seeds with them) and
tests/fuzz/corpus/<harness>/ seeds. Rerunning replaces both; crash inputs in
tests/fuzz/regressions/ do not depend on the fixture.
"""

import hashlib
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
if len(sys.argv) > 1:
    os.environ["KEKFS_BIN"] = os.path.abspath(sys.argv[1])

import kekfs_harness as h  # noqa: E402


def seed(harness, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def fill(v):
    h.write_file(v.path("empty"), b"")
    h.write_file(v.path("small"), b"hello kekfs\n")
    h.write_file(v.path("chunks"), h.pattern(2 * 4096 + 100, 1))
    with open(v.path("sparse"), "wb") as f:
        f.seek(3 * 4096)
        f.write(b"after a hole")
    h.write_file(v.path("L" * 200), b"long name")
    os.mkdir(v.path("dir"))
    h.write_file(v.path("dir", "inner"), b"inner")
    os.symlink("small", v.path("link"))
    os.setxattr(v.path("small"), "user.fuzz", b"value")
    r = h.run_kekfs("rotate", v.mnt)
    assert r.returncode == 0, r
    assert h.wait_for(lambda: b"re-wrap: finished" in h.run_kekfs("status", v.mnt).stdout, 60)


def collect(v):
    kk = os.path.join(v.backing, ".kekfs")
    for name in os.listdir(v.backing):
        p = os.path.join(v.backing, name)
        if name == ".kekfs":
            continue
        if os.path.isfile(p) and not name.startswith("."):
            data = open(p, "rb").read()
            seed("header", data[:256])
            seed("chunk", data)
        if os.path.islink(p):
            seed("names", b"\x03" + os.readlink(p).encode())
        if name.startswith(".kekfs.long."):
            seed("names", b"\x02" + open(p, "rb").read())
        elif not name.startswith("."):
            seed("names", b"\x00" + name.encode())
        if os.path.isfile(p) and not os.path.islink(p):
            for x in os.listxattr(p, follow_symlinks=False):
                seed("names", b"\x01" + x.encode())
    seed("volume", open(os.path.join(kk, "volume"), "rb").read())
    seed("keyring", open(os.path.join(kk, "keyring"), "rb").read())
    log = open(os.path.join(kk, "audit.log"), "rb").read()
    seed("audit", log)
    seed("audit", log.split(b"\n")[0] + b"\n\x002026-11-22T13:18:58Z 0 1 kekfs\n")
    fixture = os.path.join(HERE, "fixture")
    os.makedirs(fixture, exist_ok=True)
    shutil.copy(v.key_file, os.path.join(fixture, "key"))
    shutil.copy(os.path.join(kk, "volume"), os.path.join(fixture, "volume"))
    shutil.copy(os.path.join(kk, "keyring"), os.path.join(fixture, "keyring"))


def main():
    for d in ("corpus", "fixture"):
        shutil.rmtree(os.path.join(HERE, d), ignore_errors=True)
    try:
        with h.Volume(names="encrypted") as v:
            fill(v)
            v.umount()
            collect(v)
    finally:
        h.rmtree(h.tmp_root())
    print("seeds:", {d: len(os.listdir(os.path.join(HERE, "corpus", d)))
                     for d in sorted(os.listdir(os.path.join(HERE, "corpus")))})


if __name__ == "__main__":
    main()
