"""Shared helpers for the kekfs mount-level integration tests.

Python 3 standard library only.  Used by tests/run_tests.py and by the
tests/integration/test_*.py modules (which can also be run standalone).

Key pieces:
  Skip              raise to have the runner count a test as skipped
  kekfs_bin()       path of the daemon binary (env KEKFS_BIN, else build/kekfs)
  make_tempdir()    temp dir under the per-run temp root in /tmp
  make_key_file()   32 random bytes, mode 0600
  run_kekfs()       run the CLI, stdout/stderr captured through files (a
                    daemon that keeps inherited pipes open cannot hang us)
  Volume            context manager: init + mount, ALWAYS unmount + rm -rf
  compare_trees()   byte/attribute comparison of two directory trees
"""

import errno
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))

TMP_PREFIX = "kekfs-it-"

MOUNT_TIMEOUT = 15.0      # seconds to wait for a mount to show up
UMOUNT_TIMEOUT = 15.0     # seconds to wait for a mount / daemon to go away
CMD_TIMEOUT = 60.0        # default timeout for a kekfs CLI invocation

HEADER_SIZE = 256
SLOT_A = 24
SLOT_B = 120
SLOT_SIZE = 96
DEFAULT_CHUNK = 4096
OVERHEAD = {"xchacha20-poly1305": 40, "aes-256-gcm": 28}
NONCE_LEN = {"xchacha20-poly1305": 24, "aes-256-gcm": 12}
TAG_LEN = 16
DEFAULT_CIPHER = "xchacha20-poly1305"
HOST_STATE_DIR = "/var/lib/kekfs"  # the keyring generations root's kekfs has seen, per volume


class Skip(Exception):
    """Raise Skip(reason) to have the runner count the test as skipped."""


# --------------------------------------------------------------------------
# binary / temp dirs


def kekfs_bin():
    p = os.environ.get("KEKFS_BIN") or os.path.join(REPO_ROOT, "build", "kekfs")
    return os.path.abspath(p)


def kekfs_bin_copy(directory):
    """A copy of the binary in directory, for tests that run it as another user: the tree
    it was built in (a CI checkout under a 0700 directory) may be closed to them."""
    p = os.path.join(directory, "kekfs")
    if not os.path.exists(p):
        shutil.copy(kekfs_bin(), p)
        os.chmod(p, 0o755)
    return p


def require_kekfs():
    """Fail (not skip) when the binary is missing: a missing build is an error."""
    if not os.path.exists("/dev/fuse"):
        raise Skip("/dev/fuse not available")
    p = kekfs_bin()
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        raise AssertionError("kekfs binary not found or not executable at %s "
                             "(run make, or pass --kekfs)" % p)
    return p


def require_tools(*names):
    """Fail (not skip) when an external tool the suite relies on is missing:
    tools/install-deps.sh installs them (rsync tar attr acl fuse3)."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise AssertionError("required tool(s) not installed: %s" % ", ".join(missing))


_tmp_root = None


def tmp_root():
    """Per-run temp root: $KEKFS_TEST_TMPDIR (set by the runner) or a fresh
    /tmp/kekfs-it-<pid>-XXXX for standalone use."""
    global _tmp_root
    env = os.environ.get("KEKFS_TEST_TMPDIR")
    if env:
        os.makedirs(env, exist_ok=True)
        return env
    if _tmp_root is None or not os.path.isdir(_tmp_root):
        _tmp_root = tempfile.mkdtemp(prefix="%s%d-" % (TMP_PREFIX, os.getpid()),
                                     dir="/tmp")
    return _tmp_root


def make_tempdir(name="t"):
    return tempfile.mkdtemp(prefix=name + "-", dir=tmp_root())


def rmtree(path):
    """rm -rf that copes with read-only dirs (mode 0555 etc.)."""
    if not os.path.lexists(path):
        return

    def onerror(func, p, exc):
        try:
            parent = os.path.dirname(p)
            os.chmod(parent, 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if mounts_under(path):
        for m in sorted(mounts_under(path), key=len, reverse=True):
            force_unmount(m)
    shutil.rmtree(path, onerror=onerror)


def make_key_file(directory, data=None, name="key"):
    if data is None:
        data = os.urandom(32)
    p = os.path.join(directory, name)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return p


def make_passphrase_file(directory, passphrase, name="pass"):
    p = os.path.join(directory, name)
    with open(p, "w") as f:
        f.write(passphrase + "\n")
    os.chmod(p, 0o600)
    return p


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def read_file(path):
    """Unbuffered read of a whole file (OSError propagates, e.g. EIO)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            out.append(b)
        return b"".join(out)
    finally:
        os.close(fd)


def pattern(n, seed=0):
    """Deterministic non-repeating-looking bytes (fast, no os.urandom)."""
    import random
    r = random.Random(seed)
    return r.randbytes(n)


# --------------------------------------------------------------------------
# running the CLI


class Result(object):
    def __init__(self, args, rc, out, err, elapsed):
        self.args = args
        self.returncode = rc
        self.stdout = out
        self.stderr = err
        self.elapsed = elapsed

    def __repr__(self):
        return "Result(rc=%r, stdout=%r, stderr=%r)" % (
            self.returncode, self.stdout[-500:], self.stderr[-500:])

    def err_lines(self):
        return [l for l in self.stderr.decode("utf-8", "replace").split("\n") if l != ""]


def run_kekfs(*args, timeout=CMD_TIMEOUT, env=None, stdin=None, binary=None):
    """Run kekfs ARGS.  stdout/stderr go to temp files, not pipes, so a
    daemonizing child that keeps them open cannot block us."""
    binary = binary or require_kekfs()
    argv = [binary] + [str(a) for a in args]
    with tempfile.TemporaryFile(dir=tmp_root()) as fo, \
            tempfile.TemporaryFile(dir=tmp_root()) as fe:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=fo, stderr=fe,
                             stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             env=env,
                             # no controlling terminal: a missing key must fail,
                             # not prompt on /dev/tty and hang
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("kekfs %s timed out after %ss" % (" ".join(argv[1:]), timeout))
        elapsed = time.monotonic() - t0
        fo.seek(0)
        fe.seek(0)
        return Result(argv, rc, fo.read(), fe.read(), elapsed)


def kekfs_fails(*args):
    """Runs kekfs expecting a refusal: a non-zero exit and one line on stderr, starting
    "kekfs: ", which is returned."""
    r = run_kekfs(*args)
    assert r.returncode != 0, "kekfs %s succeeded: %r" % (" ".join(args), r.stdout)
    lines = r.stderr.decode(errors="replace").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kekfs: "), \
        "kekfs %s: not one line: %r" % (" ".join(args), r.stderr)
    return lines[0]


def run(cmd, timeout=120, check=True, **kw):
    """Run an external tool (rsync, tar, ...) with a timeout."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("command %r failed rc=%d\nstdout: %s\nstderr: %s" % (
            cmd if isinstance(cmd, str) else " ".join(map(str, cmd)), p.returncode,
            p.stdout[-2000:].decode("utf-8", "replace"),
            p.stderr[-2000:].decode("utf-8", "replace")))
    return p


# --------------------------------------------------------------------------
# mounts


def _unescape_mount_field(s):
    # /proc/mounts escapes space, tab, newline, backslash as \ooo
    out = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def proc_mounts():
    """List of (source, mountpoint, fstype, options) from /proc/mounts."""
    res = []
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            res.append((_unescape_mount_field(parts[0]), _unescape_mount_field(parts[1]),
                        parts[2], parts[3]))
    return res


def _mp(path):
    """Canonical form of a mount point path WITHOUT touching the path itself
    (realpath() would lstat() it, which hangs on a hung FUSE mount)."""
    a = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(a)), os.path.basename(a))


def mount_entries(path):
    path = _mp(path)
    return [m for m in proc_mounts() if m[1] == path]


def is_mounted(path):
    """Mounted according to /proc/mounts (never touches the FS itself)."""
    return bool(mount_entries(path))


def mounts_under(prefix):
    prefix = _mp(prefix).rstrip("/") + "/"
    return [m[1] for m in proc_mounts() if (m[1] + "/").startswith(prefix)]


def fuse_mounts_under(prefix):
    prefix = _mp(prefix).rstrip("/") + "/"
    return [m[1] for m in proc_mounts()
            if (m[1] + "/").startswith(prefix) and m[2].startswith("fuse")]


def wait_for(pred, timeout, interval=0.005):
    """Poll pred() until true or timeout; returns the final truth value."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return bool(pred())
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def wait_mounted(path, timeout=MOUNT_TIMEOUT):
    """Poll /proc/mounts then os.path.ismount with a bounded timeout."""
    ok = wait_for(lambda: is_mounted(path), timeout)
    return ok and os.path.ismount(path)


def find_daemon_pids(mountpoint):
    """PIDs of kekfs processes whose command line names this mountpoint."""
    want = {os.path.abspath(mountpoint), _mp(mountpoint), mountpoint}
    binpath = os.path.realpath(kekfs_bin())
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0]:
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % d)
        except OSError:
            exe = ""
        a0 = os.fsdecode(argv[0])
        looks_kekfs = (exe == binpath or os.path.basename(a0) == "kekfs" or
                       os.path.basename(exe).startswith("kekfs"))
        args = [os.fsdecode(a) for a in argv[1:] if a]
        if not any(a in want or os.path.abspath(a) in want for a in args):
            continue
        if looks_kekfs or _has_dev_fuse_open(d):
            pids.append(int(d))
    return pids


def _has_dev_fuse_open(pid):
    try:
        for fd in os.listdir("/proc/%s/fd" % pid):
            try:
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == "/dev/fuse":
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    # zombie counts as dead
    state = st.rsplit(")", 1)[1].split()[0]
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except OSError:
            pass
        return False
    return True


def abort_fuse_connection(mountpoint):
    """Abort a (possibly hung) FUSE connection via fusectl if available."""
    for line in open("/proc/self/mountinfo"):
        parts = line.split()
        if len(parts) > 4 and _unescape_mount_field(parts[4]) == _mp(mountpoint):
            dev = parts[2]  # major:minor
            minor = dev.split(":")[1]
            p = "/sys/fs/fuse/connections/%s/abort" % minor
            try:
                with open(p, "w") as f:
                    f.write("1")
                return True
            except OSError:
                return False
    return False


def force_unmount(mountpoint, pids=None):
    """Best-effort unmount: fusermount3 -u, then umount -l, then kill the
    daemon.  Never raises."""
    mountpoint = _mp(mountpoint)
    if pids is None:
        try:
            pids = find_daemon_pids(mountpoint)
        except Exception:
            pids = []
    for attempt in range(3):
        if not is_mounted(mountpoint):
            break
        try:
            subprocess.run(["fusermount3", "-u", "-q", mountpoint], timeout=10,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except Exception:
            pass
        if wait_for(lambda: not is_mounted(mountpoint), 1.0):
            break
    if is_mounted(mountpoint):
        abort_fuse_connection(mountpoint)
        for cmd in (["fusermount3", "-u", "-z", "-q", mountpoint], ["umount", "-l", mountpoint]):
            try:
                subprocess.run(cmd, timeout=10, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            except Exception:
                pass
            if not is_mounted(mountpoint):
                break
    for pid in pids:
        if wait_for(lambda: not pid_alive(pid), 3.0):
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
            if wait_for(lambda: not pid_alive(pid), 3.0):
                break
    return not is_mounted(mountpoint)


# --------------------------------------------------------------------------
# Volume

# The name modes the Volumes of the running test used, and whether any took the mode from
# KEKFS_TEST_NAMES (the runner runs such tests again on the other mode, see NAME_MODES in
# tests/run_tests.py). The runner resets it before each test.
NAMES_SEEN = {"modes": set(), "from_env": False}


class Volume(object):
    """Context manager: creates a temp dir holding BACKING, MOUNTPOINT and a
    key file, runs `kekfs init` and `kekfs mount`, and ALWAYS unmounts and
    removes everything on exit, even when the test fails.

        with Volume() as v:
            write_file(v.path("a"), b"x")
            v.remount()
    """

    def __init__(self, cipher=None, chunk_size=None, passphrase=None,
                 keyring_outside=False, mount_opts=None, do_init=True,
                 do_mount=True, init_args=(), foreground=False, names=None):
        self.cipher = cipher
        self.chunk_size = chunk_size
        self.passphrase = passphrase
        self.keyring_outside = keyring_outside
        self.mount_opts = mount_opts
        self.do_init = do_init
        self.do_mount = do_mount
        self.init_args = list(init_args)
        self.foreground = foreground
        # "plaintext" (init --plaintext-names: backing names are the plaintext names, so
        # bpath(name) finds a file's backing object) or "encrypted" (kekfs's default; use
        # backing_path() to map a plaintext path)
        # KEKFS_TEST_NAMES=encrypted runs every test that does not choose on encrypted names
        if names is None:
            names = os.environ.get("KEKFS_TEST_NAMES", "plaintext")
            NAMES_SEEN["from_env"] = True
        assert names in ("plaintext", "encrypted")
        NAMES_SEEN["modes"].add(names)
        self.names = names
        self._root_names = {}
        self.base = None
        self.daemon_pids = []
        self.fg_proc = None
        self.fg_stderr_path = None
        self.mount_results = []
        self._fg_files = []
        self.volume_id = None

    # ---- properties
    @property
    def effective_cipher(self):
        return self.cipher or DEFAULT_CIPHER

    @property
    def effective_chunk(self):
        return self.chunk_size or DEFAULT_CHUNK

    @property
    def overhead(self):
        return OVERHEAD[self.effective_cipher]

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def bpath(self, *parts):
        return os.path.join(self.backing, *parts)

    def backing_path(self, *parts):
        """Backing path of a plaintext path inside the volume (`kekfs path encrypt`). Names
        in the root are remembered: the root's directory id never changes."""
        if self.names == "plaintext":
            return self.bpath(*parts)
        rel = os.path.join(*parts)
        if rel in self._root_names:
            return self._root_names[rel]
        r = run_kekfs("path", "encrypt", *(self.key_args() + ["--", self.backing, rel]))
        if r.returncode != 0:
            raise AssertionError("kekfs path encrypt failed: %r" % (r,))
        out = os.fsdecode(r.stdout.rstrip(b"\n"))
        if "/" not in rel.strip("/"):
            self._root_names[rel] = out
        return out

    # ---- key args
    def key_args(self):
        a = []
        if self.passphrase is not None:
            a += ["--passphrase-file", self.pass_file]
        else:
            a += ["--key-file", self.key_file]
        if self.keyring_outside:
            a += ["--keyring", self.keyring]
        return a

    # ---- lifecycle
    def __enter__(self):
        require_kekfs()
        self.base = make_tempdir("vol")
        try:
            self.backing = os.path.join(self.base, "backing")
            self.mnt = os.path.join(self.base, "mnt")
            os.mkdir(self.mnt)
            self.key_file = make_key_file(self.base)
            with open(self.key_file, "rb") as f:
                self.key = f.read()
            if self.passphrase is not None:
                self.pass_file = make_passphrase_file(self.base, self.passphrase)
            self.keyring = (os.path.join(self.base, "outside", "keyring")
                            if self.keyring_outside else
                            os.path.join(self.backing, ".kekfs", "keyring"))
            if self.keyring_outside:
                os.mkdir(os.path.dirname(self.keyring))
            if self.do_init:
                self.init()
            if self.do_mount:
                self.mount()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.cleanup()
        return False

    def init_argv(self):
        a = ["init"] + self.key_args()
        if self.cipher:
            a += ["--cipher", self.cipher]
        if self.chunk_size:
            a += ["--chunk-size", str(self.chunk_size)]
        if self.names == "plaintext":
            a += ["--plaintext-names"]
        return a + self.init_args + [self.backing]

    def init(self):
        self._root_names = {}
        r = run_kekfs(*self.init_argv())
        if r.returncode != 0:
            raise AssertionError("kekfs init failed: %r" % (r,))
        if not os.path.isfile(self.bpath(".kekfs", "volume")):
            raise AssertionError("kekfs init did not create .kekfs/volume")
        if not os.path.isfile(self.keyring):
            raise AssertionError("kekfs init did not create keyring at %s" % self.keyring)
        with open(self.keyring, "rb") as f:
            self.volume_id = f.read()[16:32]
        return r

    def mount_argv(self, opts=None, extra=()):
        a = ["mount"]
        o = opts if opts is not None else self.mount_opts
        if o:
            a += ["-o", o]
        return a + self.key_args() + list(extra) + [self.backing, self.mnt]

    def mount(self, opts=None):
        if self.foreground:
            return self._mount_foreground(opts)
        r = run_kekfs(*self.mount_argv(opts))
        self.mount_results.append(r)
        if r.returncode != 0:
            raise AssertionError("kekfs mount failed: %r" % (r,))
        if not wait_mounted(self.mnt):
            raise AssertionError("kekfs mount exited 0 but %s is not mounted after %ss"
                                 % (self.mnt, MOUNT_TIMEOUT))
        self.daemon_pids = find_daemon_pids(self.mnt)
        return r

    def _mount_foreground(self, opts=None):
        argv = [require_kekfs()] + self.mount_argv(opts)
        argv.insert(2, "-f")
        self.fg_stderr_path = os.path.join(self.base, "daemon-stderr.%d" % len(self._fg_files))
        self._fg_files.append(self.fg_stderr_path)
        with open(self.fg_stderr_path, "wb") as fe:
            self.fg_proc = subprocess.Popen(argv, stdout=fe, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        ok = wait_for(lambda: is_mounted(self.mnt) or self.fg_proc.poll() is not None,
                      MOUNT_TIMEOUT)
        if not is_mounted(self.mnt):
            rc = self.fg_proc.poll()
            if rc is None:
                self.fg_proc.kill()
                self.fg_proc.wait()
            raise AssertionError("kekfs mount -f: not mounted (rc=%r, out=%r)" % (
                rc, open(self.fg_stderr_path, "rb").read()[-500:]))
        assert os.path.ismount(self.mnt)
        self.daemon_pids = [self.fg_proc.pid]
        return ok

    def umount(self, check=True):
        """Unmount with fusermount3 -u and wait (bounded) for the daemon to
        exit, so backing files are quiescent afterwards."""
        pids = list(self.daemon_pids)
        ok = True
        if is_mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", self.mnt], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            if r.returncode != 0:
                # maybe transiently busy: retry a little, then force
                if not wait_for(lambda: subprocess.run(
                        ["fusermount3", "-u", "-q", self.mnt],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
                        or not is_mounted(self.mnt), 3.0):
                    ok = False
                    force_unmount(self.mnt, pids)
        if not wait_for(lambda: not is_mounted(self.mnt), UMOUNT_TIMEOUT):
            force_unmount(self.mnt, pids)
            ok = False
        exited = wait_for(lambda: all(not pid_alive(p) for p in pids), UMOUNT_TIMEOUT)
        if self.fg_proc is not None:
            try:
                self.fg_proc.wait(timeout=UMOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                exited = False
        if not exited:
            force_unmount(self.mnt, pids)
            if self.fg_proc is not None:
                try:
                    self.fg_proc.kill()
                    self.fg_proc.wait(timeout=5)
                except Exception:
                    pass
        self.daemon_pids = []
        self.fg_proc = None
        if check and not ok:
            raise AssertionError("could not unmount %s cleanly" % self.mnt)
        if check and not exited:
            raise AssertionError("kekfs daemon %r did not exit within %ss after unmount"
                                 % (pids, UMOUNT_TIMEOUT))

    def remount(self, opts=None):
        self.umount()
        self.mount(opts)

    def daemon_alive(self):
        return bool(self.daemon_pids) and all(pid_alive(p) for p in self.daemon_pids)

    def cleanup(self):
        try:
            if self.base and os.path.isdir(self.base):
                try:
                    if is_mounted(self.mnt):
                        self.umount(check=False)
                except Exception:
                    force_unmount(self.mnt, self.daemon_pids)
                for m in sorted(mounts_under(self.base), key=len, reverse=True):
                    force_unmount(m)
        finally:
            if self.fg_proc is not None and self.fg_proc.poll() is None:
                try:
                    self.fg_proc.kill()
                    self.fg_proc.wait(timeout=5)
                except Exception:
                    pass
            if self.base:
                try:
                    rmtree(self.base)
                except Exception:
                    pass
            if self.volume_id:  # what this host recorded of the volume goes with it
                try:
                    os.unlink(os.path.join(HOST_STATE_DIR, self.volume_id.hex()))
                except OSError:
                    pass

    # ---- helpers on backing files
    def _backing_walk(self):
        """(directory, name) of every regular backing file outside the root's .kekfs."""
        for root, dirs, files in os.walk(self.backing):
            if root == self.backing:
                dirs[:] = [d for d in dirs if d != ".kekfs"]
            for f in files:
                yield root, f

    def _name_internal(self, root, name):
        """kekfs's own name files on an encrypted-name volume: a directory's id, and the
        side file of a long name whose object is beside it (an orphan is a leftover)."""
        if self.names != "encrypted":
            return False
        if name == ".kekfs.dirid":
            return not os.path.basename(root).startswith(".kekfs.new.")
        return name.startswith(".kekfs.long.") and os.path.lexists(os.path.join(root, name[1:]))

    def backing_objects(self):
        """Absolute paths of the backing objects of regular files (each starts with a
        header), in either name mode."""
        return [os.path.join(r, f) for r, f in self._backing_walk()
                if not self._name_internal(r, f)]

    def backing_files(self):
        """Plaintext paths (relative to the volume root) of the regular files in BACKING, in
        either name mode; an entry that does not decrypt (a leftover kekfs should have
        removed) is listed as "?" + its backing path."""
        out = []
        for p in self.backing_objects():
            rel = os.path.relpath(p, self.backing)
            if self.names == "encrypted":
                r = run_kekfs("path", "decrypt", *(self.key_args() + ["--", self.backing, rel]))
                rel = (os.fsdecode(r.stdout.rstrip(b"\n")).lstrip("/") if r.returncode == 0
                       else "?" + rel)
            out.append(os.path.normpath(rel))
        return out

    def expected_backing_size(self, size):
        c = self.effective_chunk
        n = max(1, -(-size // c))
        return HEADER_SIZE + n * self.overhead + size


# --------------------------------------------------------------------------
# low-level syscalls via ctypes

_libc = None


def libc():
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


def renameat2(old, new, flags):
    import ctypes
    f = libc().renameat2
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    r = f(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


def fallocate(fd, mode, offset, length):
    import ctypes
    f = libc().fallocate
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    r = f(fd, mode, offset, length)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def utimensat(path, atime, mtime, follow_symlinks=True):
    """utimensat(2) on a path, or futimens(2) when path is an int fd;
    atime/mtime are (sec, nsec) tuples, None = UTIME_OMIT, "now" = UTIME_NOW."""
    import ctypes

    class TS(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def conv(t):
        if t is None:
            return TS(0, UTIME_OMIT)
        if t == "now":
            return TS(0, UTIME_NOW)
        return TS(t[0], t[1])
    ts = (TS * 2)(conv(atime), conv(mtime))
    if isinstance(path, int):  # an open fd: futimens(2)
        r = libc().futimens(path, ts)
    else:
        r = libc().utimensat(AT_FDCWD, os.fsencode(path), ts, 0 if follow_symlinks else 0x100)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


DT_NAMES = {0: "UNKNOWN", 1: "FIFO", 2: "CHR", 4: "DIR", 6: "BLK", 8: "REG", 10: "LNK", 12: "SOCK"}


def getdents_types(path):
    """{name(bytes): d_type} straight from getdents64 (os.scandir would fall
    back to stat() for DT_UNKNOWN and hide a missing d_type)."""
    import ctypes
    import platform
    nr = {"x86_64": 217, "aarch64": 61, "riscv64": 61, "i686": 220, "i386": 220,
          "armv7l": 217, "ppc64le": 202, "s390x": 220}.get(platform.machine())
    if nr is None:
        raise Skip("getdents64 syscall number unknown for %s" % platform.machine())
    sc = libc().syscall
    sc.restype = ctypes.c_long
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    res = {}
    try:
        buf = ctypes.create_string_buffer(65536)
        while True:
            n = sc(ctypes.c_long(nr), ctypes.c_long(fd), buf, ctypes.c_long(len(buf)))
            if n < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e), path)
            if n == 0:
                break
            raw = buf.raw[:n]
            pos = 0
            while pos < n:
                reclen = int.from_bytes(raw[pos + 16:pos + 18], "little")
                dtype = raw[pos + 18]
                name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
                res[name] = dtype
                pos += reclen
    finally:
        os.close(fd)
    return res


# --------------------------------------------------------------------------
# tree comparison


def _user_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for n in names:
        if n.startswith("user."):
            out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def _acl_xattrs(path):
    out = {}
    for n in ("system.posix_acl_access", "system.posix_acl_default"):
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            pass
    return out


def walk_tree(root):
    """{relpath(bytes): os.stat_result} for everything below root (bytes
    paths so that non-UTF-8 names survive)."""
    root = os.fsencode(root)
    out = {}

    def rec(rel):
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            r = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(root, r))
            out[r] = st
            if stat.S_ISDIR(st.st_mode):
                rec(r)
    rec(b"")
    return out


def _same_content(pa, pb, size):
    with open(pa, "rb", buffering=0) as fa, open(pb, "rb", buffering=0) as fb:
        off = 0
        while True:
            a = fa.read(1 << 20)
            b = fb.read(1 << 20)
            if a != b:
                # locate first differing byte for the message
                for i in range(min(len(a), len(b))):
                    if a[i] != b[i]:
                        return "content differs at offset %d" % (off + i)
                return "content length differs near offset %d (%d vs %d bytes read)" % (
                    off + min(len(a), len(b)), len(a), len(b))
            if not a:
                return None
            off += len(a)


def compare_trees(a, b, check_mtime=True, check_owner=True, check_mode=True,
                  check_xattrs=True, check_links=True, check_sparse=False,
                  check_root=False, check_dir_mtime=True, check_acls=False,
                  ignore=(), max_report=20):
    """Compare two trees byte for byte and attribute for attribute.
    Raises AssertionError listing the differences.  Checks: entry set, type,
    permission bits, uid, gid, size (regular files/symlinks), mtime ns (not
    for symlinks), symlink target, rdev for devices, user.* xattrs, hard-link
    grouping (partition of paths by st_ino), optionally sparse-ness (b has
    st_blocks*512 < size wherever a does)."""
    diffs = []
    ignore = {os.fsencode(i) for i in ignore}
    ta = {k: v for k, v in walk_tree(a).items() if k.split(b"/")[0] not in ignore}
    tb = {k: v for k, v in walk_tree(b).items() if k.split(b"/")[0] not in ignore}
    ab = os.fsencode(a)
    bb = os.fsencode(b)
    if check_root:
        ta[b""] = os.lstat(ab)
        tb[b""] = os.lstat(bb)
    only_a = sorted(set(ta) - set(tb))
    only_b = sorted(set(tb) - set(ta))
    for p in only_a:
        diffs.append("%r: missing in %s" % (p, b))
    for p in only_b:
        diffs.append("%r: extra in %s" % (p, b))
    for p in sorted(set(ta) & set(tb)):
        sa, sb = ta[p], tb[p]
        pa = os.path.join(ab, p) if p else ab
        pb = os.path.join(bb, p) if p else bb
        fa, fb = stat.S_IFMT(sa.st_mode), stat.S_IFMT(sb.st_mode)
        if fa != fb:
            diffs.append("%r: type %o vs %o" % (p, fa, fb))
            continue
        if check_mode and stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode) \
                and not stat.S_ISLNK(sa.st_mode):
            diffs.append("%r: mode %o vs %o" % (p, stat.S_IMODE(sa.st_mode),
                                                stat.S_IMODE(sb.st_mode)))
        if check_owner and (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diffs.append("%r: owner %d:%d vs %d:%d" % (p, sa.st_uid, sa.st_gid,
                                                       sb.st_uid, sb.st_gid))
        if stat.S_ISREG(sa.st_mode):
            if sa.st_size != sb.st_size:
                diffs.append("%r: size %d vs %d" % (p, sa.st_size, sb.st_size))
            else:
                d = _same_content(pa, pb, sa.st_size)
                if d:
                    diffs.append("%r: %s" % (p, d))
            if check_sparse and sa.st_blocks * 512 < sa.st_size // 2 and \
                    not sb.st_blocks * 512 < sb.st_size:
                diffs.append("%r: sparse in a (%d blocks) but not in b (%d blocks)"
                             % (p, sa.st_blocks, sb.st_blocks))
        elif stat.S_ISLNK(sa.st_mode):
            la, lb = os.readlink(pa), os.readlink(pb)
            if la != lb:
                diffs.append("%r: symlink target %r vs %r" % (p, la, lb))
        elif stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
            if sa.st_rdev != sb.st_rdev:
                diffs.append("%r: rdev %x vs %x" % (p, sa.st_rdev, sb.st_rdev))
        if check_mtime and not stat.S_ISLNK(sa.st_mode) and \
                (check_dir_mtime or not stat.S_ISDIR(sa.st_mode)):
            if sa.st_mtime_ns != sb.st_mtime_ns:
                diffs.append("%r: mtime_ns %d vs %d" % (p, sa.st_mtime_ns, sb.st_mtime_ns))
        if check_xattrs and not stat.S_ISLNK(sa.st_mode) and \
                not stat.S_ISFIFO(sa.st_mode) and not stat.S_ISSOCK(sa.st_mode):
            xa, xb = _user_xattrs(pa), _user_xattrs(pb)
            if xa != xb:
                diffs.append("%r: user xattrs %r vs %r" % (p, xa, xb))
        if check_acls and not stat.S_ISLNK(sa.st_mode):
            xa, xb = _acl_xattrs(pa), _acl_xattrs(pb)
            if xa != xb:
                diffs.append("%r: ACLs %r vs %r" % (p, xa, xb))
    if check_links:
        def groups(t):
            g = {}
            for p, st in t.items():
                if not stat.S_ISDIR(st.st_mode) and p:
                    g.setdefault((st.st_dev, st.st_ino), []).append(p)
            return sorted(sorted(v) for v in g.values() if len(v) > 1)

        def nlinks(t):
            return {p: st.st_nlink for p, st in t.items()
                    if p and not stat.S_ISDIR(st.st_mode)}
        ga, gb = groups(ta), groups(tb)
        if ga != gb:
            diffs.append("hard-link grouping differs: %r vs %r" % (ga, gb))
        na, nb = nlinks(ta), nlinks(tb)
        for p in sorted(set(na) & set(nb)):
            if na[p] != nb[p]:
                diffs.append("%r: nlink %d vs %d" % (p, na[p], nb[p]))
    if diffs:
        more = "" if len(diffs) <= max_report else "\n... and %d more" % (len(diffs) - max_report)
        raise AssertionError("trees differ (%s vs %s):\n  %s%s" % (
            a, b, "\n  ".join(diffs[:max_report]), more))


# --------------------------------------------------------------------------
# misc assertions


def assert_eq(a, b, what=""):
    if a != b:
        ra, rb = repr(a), repr(b)
        if len(ra) > 300:
            ra = ra[:300] + "..."
        if len(rb) > 300:
            rb = rb[:300] + "..."
        raise AssertionError("%s: %s != %s" % (what or "mismatch", ra, rb))


def assert_bytes_eq(got, want, what="data"):
    if got != want:
        if len(got) != len(want):
            raise AssertionError("%s: length %d, expected %d" % (what, len(got), len(want)))
        for i in range(len(got)):
            if got[i] != want[i]:
                raise AssertionError("%s: first difference at offset %d (got %r expected %r)"
                                     % (what, i, got[i:i + 16], want[i:i + 16]))


def assert_raises_errno(errnos, fn, *args, **kw):
    if isinstance(errnos, int):
        errnos = (errnos,)
    try:
        fn(*args, **kw)
    except OSError as e:
        if e.errno not in errnos:
            raise AssertionError("%s: expected errno %s, got %s" % (
                getattr(fn, "__name__", fn), [errno.errorcode.get(x, x) for x in errnos],
                errno.errorcode.get(e.errno, e.errno)))
        return e
    raise AssertionError("%s%r: expected OSError %s, succeeded" % (
        getattr(fn, "__name__", fn), args, [errno.errorcode.get(x, x) for x in errnos]))


class saved_cwd(object):
    """Restore the cwd (by fd) afterwards, so a test that chdir()s into the
    mount never leaves it busy."""

    def __enter__(self):
        self.fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        return self

    def __exit__(self, *a):
        try:
            os.fchdir(self.fd)
        except OSError:
            os.chdir("/")
        os.close(self.fd)
        return False


# --------------------------------------------------------------------------
# a small file system of its own (disk full, read-only backing)


class small_fs(object):
    """Mounts a fresh small file system at path (root only): a loop-mounted ext4 image of
    size_mb MiB (no blocks reserved for root), or a tmpfs of that size where loop devices
    are missing. Unmounted again on exit, lazily if something still holds it. .kind says
    which it is."""

    def __init__(self, path, size_mb):
        self.path, self.size_mb, self.kind = path, size_mb, None

    def __enter__(self):
        if os.geteuid() != 0:
            raise Skip("mounting a small file system needs root")
        os.makedirs(self.path, exist_ok=True)
        img = self.path.rstrip("/") + ".img"
        if shutil.which("mkfs.ext4") and os.path.exists("/dev/loop-control"):
            with open(img, "wb") as f:
                f.truncate(self.size_mb << 20)
            made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if made.returncode == 0 and subprocess.run(
                    ["mount", "-o", "loop", img, self.path], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode == 0:
                self.kind = "ext4"
            os.unlink(img)
        if self.kind is None:
            run(["mount", "-t", "tmpfs", "-o", "size=%dm" % self.size_mb, "tmpfs", self.path])
            self.kind = "tmpfs"
        return self

    def remount(self, opts):
        run(["mount", "-o", "remount," + opts, self.path])

    def __exit__(self, *a):
        if is_mounted(self.path):
            if subprocess.run(["umount", self.path], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(["umount", "-l", self.path])
        return False
