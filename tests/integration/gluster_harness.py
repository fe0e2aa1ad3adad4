"""A real GlusterFS volume for the shared-storage tests (issue 18).

glusterd runs in a network namespace of its own, with a veth pair inside it for addresses
(GlusterFS refuses loopback addresses for bricks), its own working directory and its own
control socket, so it never meets a glusterd of the machine. A replica-2 volume is made on
two brick directories and mounted with the GlusterFS FUSE client at several places, each
standing for a host; the clients join the namespace's network only (nsenter --net), so their
mounts are seen by everything here. Everything is torn down at exit, whether the test passed
or not."""

import os
import signal
import subprocess
import time

from kekfs_harness import make_tempdir, require_tools, rmtree, wait_for, is_mounted

GLUSTER_TIMEOUT = 60
RUN_DIR = "/var/run/gluster"  # where bricks put their sockets, whatever glusterd says


class GlusterError(AssertionError):
    pass


def _run(argv, check=True, timeout=GLUSTER_TIMEOUT):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if check and r.returncode != 0:
        raise GlusterError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
                                                    r.stdout.decode(errors="replace")[-800:]))
    return r


class Gluster(object):
    """with Gluster(mounts=2) as g: g.mounts[0], g.mounts[1] are two clients of one volume."""

    def __init__(self, mounts=2):
        self.nmounts = mounts
        self.ns = "kekfsgl%d" % os.getpid()
        self.volname = "kv%d" % os.getpid()
        self.addr = "10.213.%d.1" % (os.getpid() % 250 + 1)
        self.base = None
        self.mounts = []
        self.sock = None
        self._ns_made = False
        self.run_before = set()

    def _in_ns(self, argv):
        return ["ip", "netns", "exec", self.ns] + argv

    def cli(self, *args, check=True):
        """The gluster CLI, talking to this glusterd only (its own socket)."""
        return _run(self._in_ns(["gluster", "--mode=script", "--glusterd-sock=" + self.sock] +
                                list(args)), check=check)

    def __enter__(self):
        require_tools("glusterd", "gluster", "nsenter", "ip")
        self.run_before = set(os.listdir(RUN_DIR)) if os.path.isdir(RUN_DIR) else set()
        self.base = make_tempdir("gluster")
        try:
            self._start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def _netns(self):
        _run(["ip", "netns", "add", self.ns])
        self._ns_made = True
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "kgla", "type", "veth", "peer", "name", "kglb"],
                    ["ip", "addr", "add", self.addr + "/24", "dev", "kgla"],
                    ["ip", "link", "set", "kgla", "up"], ["ip", "link", "set", "kglb", "up"]):
            _run(self._in_ns(cmd))

    def _glusterd(self):
        wd, log = os.path.join(self.base, "wd"), os.path.join(self.base, "log")
        os.makedirs(wd)
        os.makedirs(log)
        self.sock = os.path.join(self.base, "glusterd.socket")
        with open("/etc/glusterfs/glusterd.vol") as f:
            vol = f.read().replace("/var/lib/glusterd", wd)
        vol = vol.replace("end-volume", "    option glusterd-sockfile %s\nend-volume" % self.sock)
        volfile = os.path.join(self.base, "glusterd.vol")
        with open(volfile, "w") as f:
            f.write(vol)
        _run(self._in_ns(["glusterd", "-f", volfile, "-l", os.path.join(log, "glusterd.log"),
                          "-p", os.path.join(self.base, "glusterd.pid")]))
        if not wait_for(lambda: self.cli("volume", "list", check=False).returncode == 0,
                        GLUSTER_TIMEOUT, 0.1):
            raise GlusterError("glusterd did not answer within %ss" % GLUSTER_TIMEOUT)

    def _start(self):
        self._netns()
        self._glusterd()
        bricks = []
        for i in (1, 2):
            b = os.path.join(self.base, "brick%d" % i)
            os.mkdir(b)
            bricks.append("%s:%s" % (self.addr, b))
        self.cli("volume", "create", self.volname, "replica", "2", *bricks, "force")
        self.cli("volume", "start", self.volname)
        for i in range(self.nmounts):
            self.mount_client(os.path.join(self.base, "host%d" % i))

    def mount_client(self, mp):
        """One more GlusterFS client of the volume at mp: another host."""
        os.makedirs(mp, exist_ok=True)
        _run(["nsenter", "--net=/var/run/netns/" + self.ns, "mount", "-t", "glusterfs",
              "-o", "log-file=%s" % os.path.join(self.base, "log", os.path.basename(mp)),
              "%s:/%s" % (self.addr, self.volname), mp])
        if not wait_for(lambda: is_mounted(mp), GLUSTER_TIMEOUT, 0.05):
            raise GlusterError("the GlusterFS client did not mount %s" % mp)
        self.mounts.append(mp)
        return mp

    def _ns_pids(self):
        if not self._ns_made:
            return []
        r = _run(["ip", "netns", "pids", self.ns], check=False)
        return [int(p) for p in r.stdout.split()]

    def _clients(self):
        """The GlusterFS client processes of this volume (they are outside the netns's pid
        list only if they left it; they never do, but their mounts must go first)."""
        pids = []
        for p in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"glusterfs") and \
                    ("--volfile-id=/%s" % self.volname).encode() in cmd:
                pids.append(int(p))
        return pids

    def cleanup(self):
        for mp in reversed(self.mounts):
            if is_mounted(mp):
                subprocess.run(["umount", mp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            if is_mounted(mp):
                subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
        self.mounts = []
        if self.sock and os.path.exists(self.sock):
            self.cli("volume", "stop", self.volname, "force", check=False)
            self.cli("volume", "delete", self.volname, check=False)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._ns_pids() + self._clients()
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            if not wait_for(lambda: not (self._ns_pids() + self._clients()), 10, 0.05):
                continue
            break
        if self._ns_made:
            _run(["ip", "netns", "del", self.ns], check=False)
            self._ns_made = False
        if self.base:
            rmtree(self.base)
            self.base = None
        if os.path.isdir(RUN_DIR):  # the sockets and pid files this volume's daemons left
            for name in set(os.listdir(RUN_DIR)) - self.run_before:
                p = os.path.join(RUN_DIR, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    rmtree(p)
                else:
                    os.unlink(p)
