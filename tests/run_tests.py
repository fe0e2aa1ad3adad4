#!/usr/bin/env python3
"""kekfs test runner (Python 3 stdlib only).

Runs
  * every unit test binary build/tests/unit_* (cmocka; taken from the
    directory of --kekfs, e.g. build-san/tests, when it has any), counting its
    "[  PASSED  ] N test(s)" / "[  FAILED  ] N test(s)" summary lines (a
    binary that dies without a summary counts as 1 failed; a binary that
    exits non-zero although its summary reports no failure, e.g. a sanitizer
    report at exit, counts one extra failure);
  * every libFuzzer harness build-fuzz/fuzz_* (tests/fuzz), one test each:
    its committed crash inputs replayed, then a few seconds of fuzzing
    (skipped, and said so, when clang cannot build libFuzzer targets);
  * every function test_* of every module tests/integration/test_*.py, in
    file order; a test raising kekfs_harness.Skip is counted as skipped.
    Modules that set NAME_MODES run each test on plaintext and on encrypted
    names, named test_mod.test_x[plaintext-names] / [encrypted-names]; a
    test that picks its mode itself runs once, named after the mode it used.

With --sanitized PATH (a build with ASan+UBSan, e.g. build-san/kekfs), a
second pass follows: that build's unit tests and the integration tests named
by --san-k, with KEKFS_BIN pointing at it, named "san:...", and every
ASan/UBSan/LSan report any of its processes wrote (daemons included) counted
as a failure.

Prints one line per test (PASS name / FAIL name: reason / SKIP name: reason)
and ends with exactly one line "N passed, N failed[, N skipped]" for both
passes together.  Exit status is 1 if anything failed.

  python3 tests/run_tests.py [-k SUBSTRING]... [--kekfs PATH] [--timeout SECS]
                             [--no-unit] [--no-integration] [--no-fuzz] [--list] [-v]
                             [--sanitized PATH [--san-k SUBSTRING]...]

After every integration test and at the end, /proc/mounts is checked for
mounts left under the run's temp dir (/tmp/kekfs-it-<pid>-*); they are
unmounted and counted as a failure.
"""

import argparse
import glob
import importlib
import inspect
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import _thread

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEG = os.path.join(REPO, "tests", "integration")

PASSED_RE = re.compile(r"^\[\s*PASSED\s*\]\s+(\d+)\s+test\(s\)")
FAILED_SUM_RE = re.compile(r"^\[\s*FAILED\s*\]\s+(\d+)\s+test\(s\)")
OK_RE = re.compile(r"^\[\s*OK\s*\]\s+(\S.*)$")
FAILED_ONE_RE = re.compile(r"^\[\s*FAILED\s*\]\s+(?!\d+\s+test\(s\))(\S.*)$")
SKIPPED_ONE_RE = re.compile(r"^\[\s*SKIPPED\s*\]\s+(?!\d+\s+test\(s\))(\S.*)$")
ERROR_RE = re.compile(r"^\[\s*ERROR\s*\]\s+(\S.*)$")


class Counts(object):
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.ran = []  # the names of the tests that ran (any outcome)


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def one_line(s, limit=300):
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[:limit] + "..."


# --------------------------------------------------------------------------
# unit tests


def run_unit_tests(args, counts):
    # unit tests live beside the binary under test (build/ or build-san/ for
    # SANITIZE=1 builds), falling back to build/tests
    udir = os.path.join(os.path.dirname(os.path.abspath(args.kekfs)), "tests")
    if not glob.glob(os.path.join(udir, "unit_*")):
        if args.prefix:  # the sanitizer pass: build/'s unit tests are not sanitized
            counts.failed += 1
            out("FAIL %sunit: no unit tests in %s (build them: make SANITIZE=1)"
                % (args.prefix, udir))
            return
        out("note: no unit tests beside %s: running those of build/tests" % args.kekfs)
        udir = os.path.join(REPO, "build", "tests")
    bins = sorted(p for p in glob.glob(os.path.join(udir, "unit_*"))
                  if os.path.isfile(p) and os.access(p, os.X_OK)
                  and not p.endswith((".o", ".d", ".c", ".h", ".a", ".so")))
    for b in bins:
        name = args.prefix + os.path.basename(b)
        if args.k and not any(k in name for k in args.k):
            continue
        counts.ran.append(name)
        env = dict(os.environ)
        env["CMOCKA_MESSAGE_OUTPUT"] = "STDOUT"
        env.pop("CMOCKA_XML_FILE", None)
        with tempfile.TemporaryFile() as fo:
            try:
                p = subprocess.Popen([b], stdout=fo, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO, env=env)
                try:
                    rc = p.wait(timeout=args.unit_timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    rc = "timeout"
            except OSError as e:
                rc = "exec error: %s" % e
            fo.seek(0)
            text = fo.read().decode("utf-8", "replace")
        passed = failed = 0
        have_summary = False
        reported = set()
        for line in text.splitlines():
            line = line.strip()
            m = PASSED_RE.match(line)
            if m:
                passed += int(m.group(1))
                have_summary = True
                continue
            m = FAILED_SUM_RE.match(line)
            if m:
                failed += int(m.group(1))
                have_summary = True
                continue
            m = OK_RE.match(line)
            if m:
                out("PASS %s/%s" % (name, m.group(1)))
                continue
            m = SKIPPED_ONE_RE.match(line)
            if m:
                out("SKIP %s/%s: skipped by cmocka" % (name, m.group(1)))
                counts.skipped += 1
                continue
            m = FAILED_ONE_RE.match(line)
            if m and m.group(1) not in reported:
                # cmocka prints per-test FAILED lines twice (inline and in the
                # list after the summary): report each name once
                reported.add(m.group(1))
                out("FAIL %s/%s: see output of %s below" % (name, m.group(1), name))
                continue
        tail = "\n".join(text.splitlines()[-15:])
        if not have_summary:
            counts.failed += 1
            out("FAIL %s: no cmocka summary (exit %s)\n    %s" % (
                name, describe_rc(rc), tail.replace("\n", "\n    ")))
            continue
        counts.passed += passed
        counts.failed += failed
        if failed:
            out("    --- %s output tail ---\n    %s" % (name, tail.replace("\n", "\n    ")))
        if rc != 0 and failed == 0:
            counts.failed += 1
            out("FAIL %s: exit %s although summary reports no failure\n    %s" % (
                name, describe_rc(rc), tail.replace("\n", "\n    ")))


def describe_rc(rc):
    if isinstance(rc, int) and rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return str(rc)


# --------------------------------------------------------------------------
# fuzz harnesses


def run_fuzz_tests(args, counts):
    """Each libFuzzer harness (tests/fuzz/fuzz_*.c, built by `make fuzz-build`) is one test:
    it replays every committed crash input in tests/fuzz/regressions/<name>/, then fuzzes
    from the seed corpus for FUZZ_TEST_SECONDS (5). Pass = no crash, leak or timeout."""
    fdir = os.path.join(REPO, "build-fuzz")
    seconds = os.environ.get("FUZZ_TEST_SECONDS", "5")
    for src in sorted(glob.glob(os.path.join(REPO, "tests", "fuzz", "fuzz_*.c"))):
        harness = os.path.splitext(os.path.basename(src))[0]
        name = "fuzz.%s" % harness
        short = harness[len("fuzz_"):]
        if args.k and not any(k in name for k in args.k):
            continue
        if args.list:
            out(name)
            continue
        skipped = os.path.join(fdir, "skipped")
        if os.path.exists(skipped):
            counts.skipped += 1
            out("SKIP %s: %s" % (name, open(skipped).read().strip()))
            continue
        binary = os.path.join(fdir, harness)
        if not os.access(binary, os.X_OK):
            counts.failed += 1
            out("FAIL %s: %s is not built (make fuzz-build)" % (name, binary))
            continue
        crashes = sorted(glob.glob(os.path.join(REPO, "tests", "fuzz", "regressions", short, "*")))
        work = tempfile.mkdtemp(prefix="kekfs-fuzz-")
        runs = ([[binary] + crashes] if crashes else []) + [
            [binary, "-max_total_time=%s" % seconds, "-timeout=10",
             "-artifact_prefix=%s/" % work, work,
             os.path.join(REPO, "tests", "fuzz", "corpus", short)]]
        failure = None
        for argv in runs:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=int(seconds) + 120)
            if p.returncode != 0:
                tail = p.stdout.decode("utf-8", "replace").splitlines()[-25:]
                failure = "exit %s\n    %s" % (describe_rc(p.returncode), "\n    ".join(tail))
                break
        subprocess.run(["rm", "-rf", work])
        if failure:
            counts.failed += 1
            out("FAIL %s: %s" % (name, failure))
        else:
            counts.passed += 1
            out("PASS %s (%d regression input%s, %s s fuzzing)" % (
                name, len(crashes), "" if len(crashes) == 1 else "s", seconds))


# --------------------------------------------------------------------------
# integration tests


class Watchdog(object):
    """Per-test timeout that works even if the test is stuck in a syscall on
    a hung FUSE mount: when it fires it aborts the connections and kills the
    daemons of the run's mounts (so blocked syscalls fail with ENOTCONN and
    the test can clean up itself); if the test is still running GRACE
    seconds later, the main thread is interrupted (KeyboardInterrupt)."""

    GRACE = 10.0

    def __init__(self, seconds, tmp_root, harness):
        self.fired = False
        self.interrupted = False
        self.done = False
        self.tmp_root = tmp_root
        self.harness = harness
        self.timer = threading.Timer(seconds, self.fire)
        self.timer.daemon = True
        self.timer2 = None

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *a):
        self.done = True
        self.timer.cancel()
        if self.timer2:
            self.timer2.cancel()
        return False

    def fire(self):
        if self.done:
            return
        self.fired = True
        h = self.harness
        try:
            for m in h.fuse_mounts_under(self.tmp_root):
                pids = h.find_daemon_pids(m)
                h.abort_fuse_connection(m)
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        except Exception:
            pass
        self.timer2 = threading.Timer(self.GRACE, self.interrupt)
        self.timer2.daemon = True
        self.timer2.start()

    def interrupt(self):
        if not self.done:
            self.interrupted = True
            _thread.interrupt_main()


def short_tb(exc_type, exc, tb, limit=4):
    frames = traceback.extract_tb(tb)
    frames = frames[-limit:]
    lines = []
    for f in frames:
        lines.append("%s:%d in %s: %s" % (os.path.relpath(f.filename, REPO), f.lineno,
                                          f.name, (f.line or "").strip()))
    msg = "".join(traceback.format_exception_only(exc_type, exc)).strip()
    if len(msg) > 3000:
        msg = msg[:3000] + "..."
    return msg, lines


def leftover_mounts(harness, tmp_root, counts, context):
    left = harness.mounts_under(tmp_root)
    if not left:
        return
    counts.failed += 1
    out("FAIL leftover-mounts after %s: %s" % (context, ", ".join(left)))
    for m in sorted(left, key=len, reverse=True):
        harness.force_unmount(m)


def leftover_daemons(harness, tmp_root, counts, context):
    """kekfs daemons (or any FUSE server) still running for a path in the
    run's temp dir: killed and counted as a failure."""
    pids = []
    root = os.fsencode(tmp_root)
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not any(a.startswith(root) for a in argv[1:]):
            continue
        if os.path.basename(argv[0]).startswith(b"kekfs") or harness._has_dev_fuse_open(d):
            if harness.pid_alive(int(d)):
                pids.append(int(d))
    if pids:
        counts.failed += 1
        out("FAIL leftover-daemons after %s: still running: %s" % (context, pids))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def collect_integration(args):
    mods = sorted(glob.glob(os.path.join(INTEG, "test_*.py")))
    res = []
    for path in mods:
        modname = os.path.splitext(os.path.basename(path))[0]
        res.append((modname, path))
    return res


def name_mode_runs(mod, funcs):
    """(line, name, function, name mode) in file order. A module whose tests depend on how
    names are stored sets NAME_MODES = ("plaintext", "encrypted"): each of its tests runs on
    each mode (KEKFS_TEST_NAMES), except one that chose its mode itself; elsewhere the
    mode is None (the harness default, or KEKFS_TEST_NAMES as given)."""
    modes = getattr(mod, "NAME_MODES", None) or (None,)
    return [(line, n, f, m) for line, n, f in sorted(funcs, key=lambda t: t[0]) for m in modes]


def mode_label(*modes):
    """"[encrypted-names]" after a test's name; nothing for a test without a mode."""
    modes = [m for m in modes if m]
    return "[%s]" % ",".join("%s-names" % m for m in sorted(modes)) if modes else ""


def names_env_set(harness, mode):
    """Sets KEKFS_TEST_NAMES for one run of a test (when it has a mode) and clears the
    harness's record of the modes its Volumes use; returns what to restore."""
    harness.NAMES_SEEN.update(modes=set(), from_env=False)
    saved = os.environ.get("KEKFS_TEST_NAMES")
    if mode:
        os.environ["KEKFS_TEST_NAMES"] = mode
    return (mode, saved)


def names_env_restore(env_names):
    mode, saved = env_names
    if mode and saved is None:
        os.environ.pop("KEKFS_TEST_NAMES", None)
    elif mode:
        os.environ["KEKFS_TEST_NAMES"] = saved


def selected(args, name):
    """-k (any of them) and, in the sanitizer pass, --san-k (any of them) match name."""
    return all(not ks or any(k in name for k in ks) for ks in (args.k, args.only))


def run_integration_tests(args, counts, harness, tmp_root):
    for modname, path in collect_integration(args):
        try:
            mod = importlib.import_module(modname)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            if not selected(args, modname):
                continue
            msg, lines = short_tb(*sys.exc_info())
            counts.failed += 1
            out("FAIL %s: import error: %s\n    %s" % (modname, one_line(msg),
                                                      "\n    ".join(lines)))
            continue
        funcs = [(getattr(f, "__code__", None) and f.__code__.co_firstlineno or 0, n, f)
                 for n, f in vars(mod).items()
                 if n.startswith("test_") and callable(f) and inspect.isfunction(f)
                 and f.__module__ == mod.__name__]
        chose_mode = set()  # tests that chose their name mode: one run is enough
        for _, fname, fn, mode in name_mode_runs(mod, funcs):
            name = "%s%s.%s%s" % (args.prefix, modname, fname, mode_label(mode))
            if fname in chose_mode or not selected(args, name):
                continue
            if args.list:
                out(name)
                continue
            timeout = getattr(fn, "timeout", args.timeout)
            counts.ran.append(name)
            t0 = time.monotonic()
            wd = Watchdog(timeout, tmp_root, harness)
            status = None
            env_names = names_env_set(harness, mode)
            try:
                os.chdir(REPO)
                with wd:
                    fn()
                status = ("PASS", None) if not wd.fired else \
                    ("FAIL", "timed out after %ss (daemons killed)" % timeout)
            except KeyboardInterrupt:
                if wd.fired:
                    status = ("FAIL", "timed out after %ss (daemons killed, test interrupted)"
                              % timeout)
                else:
                    raise
            except BaseException as e:  # noqa
                if type(e).__name__ == "Skip" or isinstance(e, harness.Skip):
                    status = ("SKIP", one_line(e))
                else:
                    msg, lines = short_tb(*sys.exc_info())
                    status = ("FAIL", msg + "\n    " + "\n    ".join(lines))
                if wd.fired:
                    status = ("FAIL", "timed out after %ss (daemons killed); then: %s"
                              % (timeout, status[1] or "passed"))
            finally:
                names_env_restore(env_names)
                try:
                    os.chdir(REPO)
                except OSError:
                    pass
            if mode and not harness.NAMES_SEEN["from_env"]:
                chose_mode.add(fname)
                name = "%s%s.%s%s" % (args.prefix, modname, fname,
                                      mode_label(*harness.NAMES_SEEN["modes"]))
            dt = time.monotonic() - t0
            if status[0] == "PASS":
                counts.passed += 1
                out("PASS %s%s" % (name, " (%.1fs)" % dt if args.verbose else ""))
            elif status[0] == "SKIP":
                counts.skipped += 1
                out("SKIP %s: %s" % (name, status[1]))
            else:
                counts.failed += 1
                msg = status[1]
                first, _, rest = msg.partition("\n")
                out("FAIL %s: %s%s%s" % (name, first, " (%.1fs)" % dt if args.verbose else "",
                                          ("\n    " + rest.strip("\n")) if rest else ""))
            leftover_mounts(harness, tmp_root, counts, name)
            leftover_daemons(harness, tmp_root, counts, name)


def main():
    ap = argparse.ArgumentParser(description="kekfs test runner")
    ap.add_argument("-k", action="append", default=[],
                    help="only run tests whose name contains SUBSTRING (repeatable)")
    ap.add_argument("--kekfs", default=os.path.join(REPO, "build", "kekfs"),
                    help="kekfs binary (default: build/kekfs)")
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="per integration test timeout in seconds")
    ap.add_argument("--unit-timeout", type=float, default=600.0)
    ap.add_argument("--no-unit", action="store_true")
    ap.add_argument("--no-integration", action="store_true")
    ap.add_argument("--no-fuzz", action="store_true", help="skip the libFuzzer harnesses")
    ap.add_argument("--list", action="store_true", help="list integration tests only")
    ap.add_argument("-v", "--verbose", action="store_true", help="show each test's duration")
    ap.add_argument("--sanitized", metavar="PATH",
                    help="then run PATH's unit tests and the --san-k integration tests under "
                    "ASan+UBSan (PATH = build-san/kekfs)")
    ap.add_argument("--san-k", action="append", default=[], metavar="SUBSTRING",
                    help="integration tests of the sanitizer pass (repeatable)")
    args = ap.parse_args()
    args.prefix, args.only = "", []

    os.chdir(REPO)
    tmp_root = tempfile.mkdtemp(prefix="kekfs-it-%d-" % os.getpid(), dir="/tmp")
    os.environ["KEKFS_TEST_TMPDIR"] = tmp_root
    sys.path.insert(0, INTEG)
    import kekfs_harness as harness

    counts = Counts()
    t0 = time.monotonic()
    interrupted = False
    try:
        run_pass(args, counts, harness, tmp_root)
        if not args.no_fuzz and not args.list:
            run_fuzz_tests(args, counts)
        if args.sanitized:
            sanitized_pass(args, counts, harness, tmp_root)
    except KeyboardInterrupt:
        interrupted = True
        counts.failed += 1
        out("FAIL runner: interrupted")
    finally:
        leftover_mounts(harness, tmp_root, counts, "run")
        leftover_daemons(harness, tmp_root, counts, "run")
        try:
            harness.rmtree(tmp_root)
        except Exception as e:
            out("note: could not remove %s: %s" % (tmp_root, e))
    sanitizer_reports(counts)
    if args.list:
        return 0
    sys.stderr.write("(%.1fs)\n" % (time.monotonic() - t0))
    line = "%d passed, %d failed" % (counts.passed, counts.failed)
    if counts.skipped:
        line += ", %d skipped" % counts.skipped
    out(line)
    return 1 if counts.failed or interrupted else 0


def run_pass(args, counts, harness, tmp_root):
    os.environ["KEKFS_BIN"] = os.path.abspath(args.kekfs)
    if not args.no_unit and not args.list:
        run_unit_tests(args, counts)
    if not args.no_integration:
        run_integration_tests(args, counts, harness, tmp_root)


def sanitized_pass(args, counts, harness, tmp_root):
    """The ASan+UBSan build's unit tests and --san-k integration tests; every process of
    that build writes its reports into one directory, checked at the end."""
    logdir = os.path.join(os.path.dirname(os.path.abspath(args.sanitized)), "sanitizer-logs")
    harness.rmtree(logdir)
    os.makedirs(logdir)
    os.environ.update({
        "KEKFS_SANITIZER_LOGS": logdir,
        "ASAN_OPTIONS": "log_path=%s/asan:detect_leaks=1" % logdir,
        "UBSAN_OPTIONS": "log_path=%s/ubsan:print_stacktrace=1" % logdir})
    san = argparse.Namespace(**vars(args))
    san.kekfs, san.prefix, san.only = args.sanitized, "san:", args.san_k
    if not is_sanitized(args.sanitized):
        counts.failed += 1
        out("FAIL san: %s is not built with ASan and UBSan (make SANITIZE=1)" % args.sanitized)
        counts.san_ran = 0
        return
    first = len(counts.ran)
    run_pass(san, counts, harness, tmp_root)
    ran = counts.ran[first:]
    counts.san_ran = len(ran)
    for k in args.san_k if not args.k else []:  # a renamed test must not drop out unseen
        if not any(k in name for name in ran):
            counts.failed += 1
            out("FAIL san: --san-k %s matched no test: it was renamed or removed; fix "
                "SAN_TESTS in the Makefile" % k)


def is_sanitized(path):
    """Whether the binary at path carries the ASan and UBSan runtimes' entry points."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data and b"__ubsan_handle" in data


def sanitizer_reports(counts):
    """With KEKFS_SANITIZER_LOGS set (make test SANITIZE=1), every ASan/UBSan/LSan report
    any kekfs process wrote there -- daemons included, whose stderr is /dev/null -- is a
    failure."""
    logdir = os.environ.get("KEKFS_SANITIZER_LOGS")
    if not logdir or not os.path.isdir(logdir):
        return
    if getattr(counts, "san_ran", None) == 0:
        counts.failed += 1
        out("FAIL sanitizers: no test ran under the sanitized build, so no report proves "
            "anything")
        return
    reports = sorted(os.listdir(logdir))
    for name in reports:
        with open(os.path.join(logdir, name), errors="replace") as f:
            text = f.read()
        counts.failed += 1
        out("FAIL sanitizer report %s:\n%s" % (name, text[:3000]))
    if not reports:
        counts.passed += 1
        out("PASS sanitizers: no report from any process")


if __name__ == "__main__":
    sys.exit(main())
