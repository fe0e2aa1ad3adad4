#!/usr/bin/env python3
"""What encrypted names cost on small files (issue 3). Run as root: `make bench-names`.

Two kekfs volumes of the same binary, one made with --plaintext-names and one with the
default encrypted names, are mounted at once over their own directories on one tmpfs (so
the disk is not measured). Each repetition runs the small-file workload of tools/bench.py
on both -- tar -x of NAMES_BENCH_FILES (20,000) files of 4 KiB in 100 directories, ls -lR
after dropping caches, rm -rf -- alternating which mode goes first, so that load from
other processes falls on both alike. NAMES_BENCH_REPS (5) repetitions; medians with
min-max, and the ratio encrypted / plaintext of the medians. The table replaces the
section "## Encrypted names" of NAMES_BENCH_OUT (docs/BENCHMARKS.md; "-" for none).
"""
import os
import random
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

REPS = int(os.environ.get("NAMES_BENCH_REPS", "5"))
FILES = int(os.environ.get("NAMES_BENCH_FILES", "20000"))
MODES = [("plaintext names", ["--plaintext-names"]), ("encrypted names", [])]


def run(kekfs, root):
    """{mode: [{figure: files/s}, ...]} over REPS interleaved repetitions."""
    os.mkdir(root + "/data")
    bench.sh("openssl rand -out '%s/key' 32" % root)
    bench.make_small_tar(root + "/data", random.Random(7), FILES)
    systems = []
    try:
        for i, (mode, init_args) in enumerate(MODES):
            s = bench.System("kekfs-%d" % i, root, kekfs, None, init_args)
            s.mount(root)
            systems.append((mode, s))
        results = {mode: [] for mode, _ in MODES}
        for rep in range(REPS):
            for mode, s in (systems if rep % 2 == 0 else systems[::-1]):
                results[mode].append(bench.small_files(s.mnt, root + "/data", FILES))
                print("rep %d %s: %s" % (rep + 1, mode, ", ".join(
                    "%s %.0f" % kv for kv in results[mode][-1].items())),
                    file=sys.stderr, flush=True)
        return results
    finally:
        for _, s in systems:
            s.unmount()


def table(results):
    plain, enc = (results[m] for m, _ in MODES)
    lines = ["| figure (files/s, higher is better) | plaintext names | encrypted names | "
             "encrypted / plaintext |", "|---|---|---|---|"]
    for fig in plain[0]:
        p, e = (bench.med([r.get(fig) for r in rs]) for rs in (plain, enc))
        lines.append("| %s | %s | %s | %s |" % (
            fig.replace(" files/s", ""), bench.fmt([r.get(fig) for r in plain]),
            bench.fmt([r.get(fig) for r in enc]), "%.2f" % (e / p) if p and e else "-"))
    return lines


def section(lines):
    return [bench.NAMES_HEADING, "",
            "Made by `make bench-names` (tools/names_bench.py): the same kekfs binary, one "
            "volume with `--plaintext-names` and one with encrypted names (the default), both "
            "on one tmpfs and mounted at once. Small-file workload of tools/bench.py with "
            "%d files of 4 KiB in %d directories: tar -x, ls -lR after dropping caches, "
            "rm -rf. %d repetitions, interleaved (the mode that goes first alternates), so "
            "that load from other processes on the machine hits both modes alike; medians "
            "with min-max. Where the ranges of the two modes overlap widely, the difference "
            "is within the noise of the machine." % (FILES, bench.SMALL_DIRS, REPS), ""] + \
        ["- " + v for v in bench.versions()[:2]] + [""] + lines + [""]


def write_section(out, body):
    """Replaces the section under NAMES_HEADING in out, or appends it."""
    text = open(out).read() if os.path.exists(out) else "# Benchmarks\n"
    old = bench.doc_section(text, bench.NAMES_HEADING)
    new = "\n".join(body) + "\n"
    text = text.replace(old, new) if old else text.rstrip("\n") + "\n\n" + new
    with open(out, "w") as f:
        f.write(text)
    print("wrote " + out)


def main():
    if os.geteuid() != 0:
        sys.exit("names_bench: run as root (mounts a tmpfs, drops caches)")
    kekfs = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else bench.ROOT_DIR + "/build/kekfs")
    out = os.environ.get("NAMES_BENCH_OUT", bench.ROOT_DIR + "/docs/BENCHMARKS.md")
    root = tempfile.mkdtemp(prefix="kekfs-names-bench.")
    bench.sh(["mount", "-t", "tmpfs", "-o", "size=%dM" % (FILES // 50 + 512), "tmpfs", root])
    try:
        lines = table(run(kekfs, root))
    finally:
        subprocess.run(["umount", root])
        os.rmdir(root)
    print("\n".join(lines))
    if out != "-":
        write_section(out, section(lines))


if __name__ == "__main__":
    main()
