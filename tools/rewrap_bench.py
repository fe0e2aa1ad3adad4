#!/usr/bin/env python3
"""Re-wrap throughput and the read latency a reader sees meanwhile.

Makes a volume on tmpfs with N small files (default 100,000), then measures:
  - online rotation: headers per second until `kekfs status` says the re-wrap finished,
    while a reader re-reads one 64 KiB file in a loop (latency median / p99), compared with
    the same reader and no re-wrap;
  - offline rotation of the same volume (unmounted): headers per second.
Usage: tools/rewrap_bench.py [--kekfs build/kekfs] [--files N]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw).stdout.decode()


def reader(path, stop, out):
    while not stop.is_set():
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            f.read()
        out.append(time.perf_counter() - t0)


def latency(samples):
    s = sorted(samples)
    return "median %.3f ms, p99 %.3f ms (%d reads)" % (
        statistics.median(s) * 1e3, s[int(len(s) * 0.99)] * 1e3, len(s))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kekfs", default="build/kekfs")
    ap.add_argument("--files", type=int, default=100000)
    a = ap.parse_args()
    k = os.path.abspath(a.kekfs)
    root = tempfile.mkdtemp(prefix="kekfs-rewrap-")
    sh("mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", root)
    b, m, key = root + "/b", root + "/m", root + "/key"
    os.mkdir(m)
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    try:
        sh(k, "init", "--key-file", key, b)
        sh(k, "mount", "--key-file", key, b, m)
        t0 = time.time()
        for i in range(a.files):
            d = "%s/d%03d" % (m, i % 500)
            if i < 500:
                os.mkdir(d)
            with open("%s/f%06d" % (d, i), "wb") as f:
                f.write(b"x" * 100)
        with open(m + "/probe", "wb") as f:
            f.write(os.urandom(65536))
        print("created %d files in %.1f s" % (a.files, time.time() - t0))
        stop, base = threading.Event(), []
        t = threading.Thread(target=reader, args=(m + "/probe", stop, base))
        t.start()
        time.sleep(3)
        stop.set()
        t.join()
        stop, during = threading.Event(), []
        t = threading.Thread(target=reader, args=(m + "/probe", stop, during))
        t.start()
        t0 = time.time()
        sh(k, "rotate", m)
        while "re-wrap: finished" not in sh(k, "status", m):
            time.sleep(0.05)
        online = time.time() - t0
        stop.set()
        t.join()
        print("online re-wrap: %d headers in %.1f s = %.0f headers/s" %
              (a.files + 1, online, (a.files + 1) / online))
        print("reader without re-wrap: " + latency(base))
        print("reader during re-wrap:  " + latency(during))
        sh("fusermount3", "-u", m)
        time.sleep(0.5)
        t0 = time.time()
        out = sh(k, "rotate", "--key-file", key, b)
        offline = time.time() - t0
        print("offline re-wrap: %d headers in %.1f s = %.0f headers/s (%s)" %
              (a.files + 1, offline, (a.files + 1) / offline, out.strip()))
    finally:
        subprocess.run(["fusermount3", "-u", m], capture_output=True)
        subprocess.run(["umount", "-l", root], capture_output=True)
        os.rmdir(root)


if __name__ == "__main__":
    main()
