#!/usr/bin/env python3
"""Side-by-side benchmark of kekfs and its peers (issue 7). Run as root: `make bench`.

Every system is mounted at once over its own directory on one tmpfs (so the disk is not
measured), and the workloads run interleaved: for each repetition, every system in turn
(A B C A B C ...). Each figure is reported as the median with min-max over the
repetitions, higher is better. Sizes follow the issue; BENCH_SCALE=0.25 (or any factor)
shrinks them for a quick run, BENCH_REPS sets the repetitions (at least 3 by default),
BENCH_SYSTEMS=kekfs,gocryptfs limits the systems, BENCH_OUT=FILE writes the report
elsewhere than docs/BENCHMARKS.md (BENCH_OUT=- writes none), BENCH_BASELINE=PATH adds a
system "kekfs-base" run by another kekfs binary, to measure a change before/after.
"""
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
MIB = 1 << 20
SEQ_BYTES = max(64, int(1024 * SCALE)) * MIB
RAND_BYTES = max(32, int(256 * SCALE)) * MIB
RAND_SECONDS = float(os.environ.get("BENCH_RAND_SECONDS", "5" if SCALE >= 1 else "2"))
SMALL_FILES = max(1000, int(20000 * SCALE))
SMALL_DIRS = 100
# passthrough_ll keeps an O_PATH fd open for every inode the kernel knows, and two more for
# every created file until the kernel's RELEASE reaches it; under a hard fd limit near
# SMALL_FILES (raising it needs CAP_SYS_RESOURCE) tar -x fails part-way (at 12,800 files with
# a limit of 20,000 here). A peer that fails the small-file workload runs it again with half
# the limit in files, and the report marks those figures.
SMALL_FILES_FALLBACK = min(SMALL_FILES, resource.getrlimit(resource.RLIMIT_NOFILE)[1] // 2)
TREE_BYTES = max(32, int(500 * SCALE)) * MIB
TREE_FILES = max(200, int(2000 * SCALE))
# The section tools/names_bench.py writes into the same document; make bench keeps it.
NAMES_HEADING = "## Encrypted names: cost on small files"
ALL_SYSTEMS = ["kekfs", "gocryptfs", "securefs", "passthrough", "passthrough-wb", "plain"]
PEERS = ["kekfs-base", "gocryptfs", "securefs", "passthrough", "passthrough-wb"]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


class System:
    """One mounted filesystem under test (or the plain directory)."""

    def __init__(self, name, base, kekfs, pt_ll, init_args=()):
        self.name, self.base, self.proc = name, os.path.join(base, name), None
        self.backing, self.mnt = self.base + "/backing", self.base + "/mnt"
        os.makedirs(self.backing)
        os.makedirs(self.mnt)
        self.kekfs, self.pt_ll, self.init_args = kekfs, pt_ll, list(init_args)

    def mount(self, keydir):
        key, pw = keydir + "/key", keydir + "/pass"
        if self.name == "plain":
            self.mnt = self.backing
            return
        if self.name.startswith("kekfs"):
            sh([self.kekfs, "init", "--key-file", key] + self.init_args + [self.backing],
               stdout=subprocess.DEVNULL)
            cmd = [self.kekfs, "mount", "-f", "--key-file", key, self.backing, self.mnt]
        elif self.name == "gocryptfs":
            sh(["gocryptfs", "-q", "-init", "-passfile", pw, self.backing],
               stdout=subprocess.DEVNULL)
            cmd = ["gocryptfs", "-q", "-f", "-passfile", pw, self.backing, self.mnt]
        elif self.name == "securefs":
            sh(["securefs", "create", "--format", "4", "--pass", "benchpass", self.backing],
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cmd = ["securefs", "mount", "--pass", "benchpass", self.backing, self.mnt]
        else:
            opts = "source=" + self.backing
            if self.name == "passthrough-wb":
                opts += ",writeback"
            cmd = [self.pt_ll, "-f", "-o", opts, self.mnt]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.ismount(self.mnt):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("%s did not mount" % self.name)

    def peak_rss_mib(self):
        if not self.proc:
            return None
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def unmount(self):
        if self.proc:
            subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fio_iops(path, direct):
    """Random 4 KiB 70/30 reads/writes, 4 jobs, on a laid-out file; total IOPS."""
    out = subprocess.run(
        ["fio", "--name=rand", "--filename=" + path, "--size=%d" % RAND_BYTES, "--bs=4k",
         "--rw=randrw", "--rwmixread=70", "--numjobs=4", "--ioengine=psync",
         "--direct=%d" % direct, "--time_based", "--runtime=%g" % RAND_SECONDS,
         "--group_reporting", "--output-format=json"],
        check=True, capture_output=True, text=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    return job["read"]["iops"] + job["write"]["iops"]


def write_file(path, nbytes):
    sh(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=%d" % (nbytes // MIB),
        "conv=fsync", "status=none"])


def read_file(path):
    sh("cat '%s' > /dev/null" % path)


def workloads(sysm, data):
    """Runs every workload once on a mounted system; returns {figure: value}."""
    m, r = sysm.mnt, {}
    big = m + "/big"
    r["seq write MiB/s"] = SEQ_BYTES / MIB / timed(lambda: write_file(big, SEQ_BYTES))
    drop_caches()
    r["seq read cold MiB/s"] = SEQ_BYTES / MIB / timed(lambda: read_file(big))
    read_file(big)
    r["seq read warm (reopen) MiB/s"] = SEQ_BYTES / MIB / timed(lambda: read_file(big))
    os.unlink(big)
    rnd = m + "/rand"
    write_file(rnd, RAND_BYTES)
    for direct, label in ((0, "buffered"), (1, "O_DIRECT")):
        try:
            r["rand 4k 70/30 %s IOPS" % label] = fio_iops(rnd, direct)
        except subprocess.CalledProcessError:
            r["rand 4k 70/30 %s IOPS" % label] = None
    os.unlink(rnd)
    r.update(small_files(m, data))
    if "small create files/s" not in r and SMALL_FILES_FALLBACK < SMALL_FILES:
        r.update(small_files(m, data, SMALL_FILES_FALLBACK, "small-fallback.tar"))
        r["_small_files"] = SMALL_FILES_FALLBACK
    # A peer may fail here: its figure reads "fail", the run goes on.
    try:
        r["rsync into MiB/s"] = TREE_BYTES / MIB / timed(
            lambda: sh(["rsync", "-a", data + "/tree/", m + "/tree/"]))
        drop_caches()
        r["tar out MiB/s"] = TREE_BYTES / MIB / timed(
            lambda: sh("set -o pipefail; tar -cf - -C '%s' tree | cat > /dev/null" % m,
                       executable="/bin/bash"))
    except subprocess.CalledProcessError:
        pass
    remove_tree(m + "/tree")
    return r


def small_files(m, data, nfiles=None, tar="small.tar"):
    """Small files under mount m: tar -x of tar (nfiles files), ls -lR after dropping caches,
    rm -rf; {figure: files/s}, figures missing when tar fails."""
    nfiles, r, small = nfiles or SMALL_FILES, {}, m + "/small"
    remove_tree(small)  # what a failed run left
    os.mkdir(small)
    try:
        r["small create files/s"] = nfiles / timed(
            lambda: sh(["tar", "-xf", data + "/" + tar, "-C", small]))
        drop_caches()
        r["small ls -lR files/s"] = nfiles / timed(
            lambda: sh("ls -lR '%s' > /dev/null" % small))
        r["small rm -rf files/s"] = nfiles / timed(lambda: sh(["rm", "-rf", small]))
    except subprocess.CalledProcessError:
        remove_tree(small)
    return r


def remove_tree(path):
    """rm -rf that also works on a passthrough_ll out of fds: dropping the kernel's caches
    makes it forget inodes and close theirs."""
    for _ in range(3):
        if not os.path.exists(path):
            return
        drop_caches()
        subprocess.run(["rm", "-rf", path], stderr=subprocess.DEVNULL)
    if os.path.exists(path):
        raise RuntimeError("cannot remove " + path)


def make_small_tar(data, rng, nfiles=None, tar="small.tar"):
    """tar in data: nfiles random files of 4 KiB spread over SMALL_DIRS directories."""
    src = data + "/small-src"
    for i in range(nfiles or SMALL_FILES):
        d = "%s/d%03d" % (src, i % SMALL_DIRS)
        os.makedirs(d, exist_ok=True)
        with open("%s/f%05d" % (d, i), "wb") as f:
            f.write(rng.randbytes(4096))
    sh(["tar", "-cf", data + "/" + tar, "-C", src, "."])
    shutil.rmtree(src)


def make_data(data):
    """The small-file tarball and the mixed-size tree, made once on tmpfs."""
    rng = random.Random(7)
    make_small_tar(data, rng)
    if SMALL_FILES_FALLBACK < SMALL_FILES:
        make_small_tar(data, rng, SMALL_FILES_FALLBACK, "small-fallback.tar")
    weights = [rng.lognormvariate(0, 2) for _ in range(TREE_FILES)]
    total = sum(weights)
    blob = os.urandom(8 * MIB)
    for i, w in enumerate(weights):
        d = "%s/tree/d%02d" % (data, i % 40)
        os.makedirs(d, exist_ok=True)
        n = max(1, int(TREE_BYTES * w / total))
        with open("%s/f%04d" % (d, i), "wb") as f:
            while n > 0:
                f.write(blob[: min(n, len(blob))])
                n -= min(n, len(blob))


def build_passthrough(out):
    src = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                           capture_output=True, text=True).stdout.split()
    sh(["gcc", "-O2", "-w", "-o", out, src] + flags)


def fmt(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "fail"
    return "%.0f (%.0f-%.0f)" % (statistics.median(vals), min(vals), max(vals))


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def versions():
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(["git", "-C", ROOT_DIR, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return [
        "CPU: %s, %d cores; RAM %.0f GiB; kernel %s" % (
            cpu, os.cpu_count(), os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30,
            platform.release()),
        "kekfs: git %s (default settings)" % git,
        "gocryptfs: %s" % first_line(["gocryptfs", "-version"]),
        "securefs: %s (lite format, --format 4)" % first_line(
            ["dpkg-query", "-W", "-f", "${Version}", "securefs"]),
        "libfuse: %s (passthrough_ll from its examples)" % first_line(
            ["pkg-config", "--modversion", "fuse3"]),
        "fio: %s" % first_line(["fio", "--version"]),
    ]


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


SMALL_FIGS = ("small create files/s", "small ls -lR files/s", "small rm -rf files/s")
# The targets: (peer, least ratio kekfs/peer, figures).
TARGETS = [("gocryptfs", 2.0, ("seq write MiB/s", "rand 4k 70/30 buffered IOPS",
                               "rand 4k 70/30 O_DIRECT IOPS", "small create files/s",
                               "rsync into MiB/s")),
           ("securefs", 1.5, ("seq write MiB/s", "rand 4k 70/30 buffered IOPS",
                              "rand 4k 70/30 O_DIRECT IOPS", "small create files/s",
                              "rsync into MiB/s")),
           ("gocryptfs", 1.3, ("seq read cold MiB/s",)),
           ("passthrough-wb", 0.8, None)]  # None: every figure
RSS_TARGET_MIB = 64
# Sections report() writes; any other section of the old document is kept as it was.
GENERATED = ("## Machine and versions", "## Sizes", "## Results",
             "## Ratios (kekfs / peer, medians)", "## Against the issue's targets")


def fewer_files(results, system, fig):
    """Whether system's figure fig was measured on the smaller small-file tree."""
    return fig in SMALL_FIGS and any(rep.get("_small_files") for rep in results[system])


def ratio(results, fig, peer):
    k = med([rep.get(fig) for rep in results["kekfs"]])
    v = med([rep.get(fig) for rep in results[peer]])
    return k / v if k and v else None


def target_lines(systems, results, figs, rss):
    """The table of the issue's targets met and missed, from this run's medians."""
    lines = ["| target | figure | ratio | met |", "|---|---|---|---|"]
    for peer, least, tfigs in TARGETS:
        if peer not in systems:
            continue
        for fig in tfigs or figs:
            r = ratio(results, fig, peer)
            mark = "*" if fewer_files(results, peer, fig) else ""
            lines.append("| %gx %s | %s | %s%s | %s |" % (
                least, peer, fig, "-" if r is None else "%.3f" % r, mark,
                "not measured" if r is None else "yes" if r >= least else "**no**"))
    k = rss.get("kekfs")
    if k is not None:
        lines.append("| RSS < %d MiB | daemon peak RSS | %.0f MiB | %s |" % (
            RSS_TARGET_MIB, k, "yes" if k < RSS_TARGET_MIB else "**no**"))
    return lines


def kept_sections(text):
    """The sections of an old report that report() does not write (hand-written analysis,
    tools/names_bench.py's section, ...), in their order."""
    parts = text.split("\n## ")[1:]
    return "".join("\n## " + p for p in parts
                   if not any(("## " + p).startswith(g + "\n") for g in GENERATED))


def report(systems, results, rss, out, loads):
    figs = list(dict.fromkeys(k for s in systems for rep in results[s] for k in rep
                              if not k.startswith("_")))
    lines = ["| figure | " + " | ".join(systems) + " |",
             "|---" * (len(systems) + 1) + "|"]
    for fig in figs:
        row = [fmt([rep.get(fig) for rep in results[s]]) +
               ("*" if fewer_files(results, s, fig) else "") for s in systems]
        lines.append("| %s | %s |" % (fig, " | ".join(row)))
        for s, cell in zip(systems, row):
            print("%-32s %-16s %s" % (fig, s, cell))
    ratio_lines, targets = [], []
    if "kekfs" in systems:
        peers = [p for p in PEERS if p in systems]
        ratio_lines = ["| figure | " + " | ".join("kekfs/" + p for p in peers) + " |",
                       "|---" * (len(peers) + 1) + "|"]
        for fig in figs:
            cells = []
            for p in peers:
                r = ratio(results, fig, p)
                cells.append("-" if r is None else "%.2f" % r +
                             ("*" if fewer_files(results, p, fig) else ""))
            ratio_lines.append("| %s | %s |" % (fig, " | ".join(cells)))
            print("ratio %-28s %s" % (fig, "  ".join(
                "kekfs/%s=%s" % (p, c) for p, c in zip(peers, cells))))
        targets = ["", "## Against the issue's targets", "",
                   "Ratios from the medians above (this run only; peers measured interleaved "
                   "with kekfs)."] + [""] + target_lines(systems, results, figs, rss)
    marked = sorted(s for s in systems for f in SMALL_FIGS if fewer_files(results, s, f))
    note = ["", "\\* measured with %d files instead of %d: passthrough_ll keeps an fd open for "
            "every inode the kernel knows (and two for each created file until the kernel "
            "releases it), and this machine's hard fd limit (%d) is too low for %d files; "
            "raising it needs CAP_SYS_RESOURCE. The rate in files/s is compared as "
            "is." % (SMALL_FILES_FALLBACK, SMALL_FILES,
                     resource.getrlimit(resource.RLIMIT_NOFILE)[1], SMALL_FILES)] \
        if marked else []
    rss_line = ", ".join("%s %.0f MiB" % (s, v) for s, v in rss.items() if v is not None)
    print("peak RSS of the daemons: " + rss_line)
    if out == "-":
        return
    doc = ["# Benchmarks", "",
           "Made by `make bench` (tools/bench.py). Every system runs over its own directory on "
           "one tmpfs, mounted at the same time; the workloads run interleaved (every system "
           "in turn, %d repetitions). Figures are medians with min-max, higher is better." % REPS,
           "", "Load average (1 min, this benchmark's own work included) sampled between systems: "
           "%.1f-%.1f on %d CPUs%s." % (
               min(loads), max(loads), os.cpu_count(),
               ": the machine was shared with other work, so wall-clock figures are noisy; "
               "compare systems within this run only" if max(loads) > 3 else ""),
           "", "## Machine and versions", ""] + ["- " + v for v in versions()] + [
           "", "## Sizes", "",
           "- sequential: %d MiB written with 1 MiB requests and a final fsync; read after "
           "dropping caches (cold), then read again after a re-open (warm)" % (SEQ_BYTES // MIB),
           "- random: fio, 4 KiB, 70%% reads / 30%% writes, 4 jobs, psync, %gs each, on a "
           "%d MiB file, buffered and O_DIRECT" % (RAND_SECONDS, RAND_BYTES // MIB),
           "- small files: %d files of 4 KiB in %d directories: tar -x, ls -lR after dropping "
           "caches, rm -rf" % (SMALL_FILES, SMALL_DIRS),
           "- tree: rsync -a of %d MiB in %d mixed-size files into the mount, then tar of it "
           "back out after dropping caches" % (TREE_BYTES // MIB, TREE_FILES),
           "", "## Results", ""] + lines + note + [
           "", "## Ratios (kekfs / peer, medians)", ""] + ratio_lines + [
           "", "Peak RSS of the daemons over the whole run: " + rss_line] + targets + [""]
    old = open(out).read() if os.path.exists(out) else ""
    with open(out, "w") as f:
        f.write("\n".join(doc) + kept_sections(old))
    print("wrote " + out)


def doc_section(text, heading):
    """The section of a Markdown text under heading, up to the next "## " ("" if none)."""
    start = text.find(heading + "\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end + 1]


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (mounts a tmpfs, drops caches)")
    kekfs = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ROOT_DIR + "/build/kekfs")
    names = os.environ.get("BENCH_SYSTEMS", ",".join(ALL_SYSTEMS)).split(",")
    base = os.environ.get("BENCH_BASELINE")
    if base:
        names.insert(1, "kekfs-base")
    out = os.environ.get("BENCH_OUT", ROOT_DIR + "/docs/BENCHMARKS.md")
    root = tempfile.mkdtemp(prefix="kekfs-bench.")
    sh(["mount", "-t", "tmpfs", "-o", "size=%dM" % (len(names) * (SEQ_BYTES + TREE_BYTES) // MIB
                                                    + 2 * TREE_BYTES // MIB + 2048), "tmpfs", root])
    systems = []
    try:
        os.mkdir(root + "/data")
        build_passthrough(root + "/passthrough_ll")
        sh("openssl rand -out '%s/key' 32 && echo benchpass > '%s/pass'" % (root, root))
        make_data(root + "/data")
        for n in names:
            binary = os.path.abspath(base) if n == "kekfs-base" else kekfs
            s = System(n, root, binary, root + "/passthrough_ll")
            s.mount(root)
            systems.append(s)
        results = {s.name: [] for s in systems}
        loads = [load_average()]
        for rep in range(REPS):
            for s in systems:
                try:
                    results[s.name].append(workloads(s, root + "/data"))
                except (OSError, subprocess.CalledProcessError) as e:
                    print("%s failed a workload: %s" % (s.name, e), file=sys.stderr)
                    results[s.name].append({})
                print("rep %d %s done" % (rep + 1, s.name), file=sys.stderr, flush=True)
                loads.append(load_average())
        rss = {s.name: s.peak_rss_mib() for s in systems}
        report([s.name for s in systems], results, rss, out, loads)
    finally:
        for s in systems:
            s.unmount()
        subprocess.run(["umount", root])
        os.rmdir(root)


if __name__ == "__main__":
    main()
