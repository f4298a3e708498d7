"""Separate "hosts" on one machine for multi-node tests (root only): each host is a network
namespace on a private bridge plus a mount namespace with its own /dev/shm and temp dir,
so that nodes in a test share nothing but tcp."""
from __future__ import annotations

import atexit
import enum
import errno
import functools
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zray._log import get_logger

__all__ = ["Host", "Network", "available", "why_unavailable"]

_log = get_logger("netns")

# The tools every host needs: iproute2 for links and network namespaces, util-linux
# for mount namespaces (unshare makes them, nsenter runs processes in them).
_TOOLS = ("ip", "nsenter", "unshare", "mount", "umount", "sh")
_NETNS_DIR = "/run/netns"  # where `ip netns add` binds the namespaces it names
# Mount namespaces are kept alive by binding them onto files here; the directory is made
# a private mount (unshare refuses a shared one, and systemd makes / shared).
_MNTNS_DIR = "/run/zray-net-{suffix}"
# RFC 1918 range the networks' /24s are taken from: .1 is the root namespace (the
# bridge), hosts get .2, .3, ...
_SUBNET = "10.213.{}.0/24"
_SUBNET_CHOICES = 256
_PROBE_TIMEOUT_S = 10.0  # for the probe's few commands; its cleanup gets as long again
_NAME_TRIES = 8  # bridge names are 6 random hex digits: a clash is rare, 8 in a row is not
_RTMGRP_LINK = 1  # <linux/rtnetlink.h>: multicast group of link changes
_BR_STATE_FORWARDING = "3"  # <linux/if_bridge.h>, as /sys/class/net/*/brport/state shows it
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # a file name in the temp root

# Runs as the first process of a host's mount namespace (under nsenter --net, so that
# sysfs and /proc/sys/net are the host's). $1 shm size, $2 tmp size, $3 the temp dir.
_MNTNS_SETUP = r"""set -e
mount -t tmpfs -o "size=$1,mode=1777,nosuid,nodev" zray-shm /dev/shm
mount -t tmpfs -o "size=$2,mode=1777,nosuid,nodev" zray-tmp "$3"
# as `ip netns exec` does: /sys/class/net then lists the host's links, not the root's
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
# links made in this namespace from now on (eth0) get no IPv6: no DAD, router or
# multicast chatter, and no address that is usable only after DAD; lo keeps ::1
v6=/proc/sys/net/ipv6/conf/default/disable_ipv6
if [ -e "$v6" ]; then echo 1 > "$v6"; fi
"""


def available() -> bool:
    """True if this machine can make Networks (Linux, root, iproute2, namespaces work)."""
    return not why_unavailable()


@functools.cache
def why_unavailable() -> str:
    """Why Networks cannot be made here ("" if they can), for a test's skip reason.

    Probed once: a namespace with a veth, a bridge and a tmpfs in a mount namespace are
    made and removed."""
    if sys.platform != "linux":
        return "network and mount namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make network and mount namespaces"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (packages iproute2 and util-linux)"
    if not hasattr(os, "pidfd_open"):
        return "needs os.pidfd_open (Linux 5.3) to kill a host's processes without pid races"
    try:
        _probe(_deadline(_PROBE_TIMEOUT_S))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return f"namespaces do not work here: {e}"
    return ""


def _probe(deadline: float | None) -> None:
    name = f"zrprobe{secrets.token_hex(3)}"
    try:
        _cmd(["ip", "netns", "add", name], deadline)
        _cmd(["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name], deadline)
        _cmd(["ip", "link", "add", f"{name}b", "type", "bridge"], deadline)
        # --wdns (util-linux 2.38) enters the caller's cwd inside the host's mount namespace
        _cmd(["nsenter", f"--net={_NETNS_DIR}/{name}", "--wdns=/", "--", "true"], deadline)
        _cmd(["unshare", "--mount", "--propagation", "slave",
              "mount", "-t", "tmpfs", "-o", "size=1m", "zray-probe", "/dev/shm"], deadline)
        os.close(os.pidfd_open(os.getpid()))
    finally:
        for undo in (functools.partial(_del_link, f"{name}b"), functools.partial(_del_link, name),
                     functools.partial(_del_netns, name)):
            try:
                undo(_deadline(_PROBE_TIMEOUT_S))  # also when the probe timed out
            except (OSError, RuntimeError):
                pass


class _State(enum.Enum):
    UP = "up"
    DESTROYING = "destroying"  # destroy() ran but something could not be removed: retry it
    DESTROYED = "destroyed"


class Network:
    """A private L2 network of hosts for one test, removed by destroy() or at exit.

        root namespace                          one namespace per host
        zrbr<sfx> 10.213.X.1/24 ─┬─ zr<sfx>v1 ══ eth0 10.213.X.2   (netns zr<sfx>-1)
                                 └─ zr<sfx>v2 ══ eth0 10.213.X.3   (netns zr<sfx>-2)

    Hosts reach each other and the root namespace (`address`); the root reaches every
    host. Nothing is forwarded or NATed beyond the bridge. Example:

        net = Network.create()
        try:
            a = net.host("head")
            server = a.popen([sys.executable, "-m", "http.server", "--bind", a.address])
        finally:
            net.destroy()
    """

    def __init__(self, *, shm_size: str, tmp_size: str) -> None:
        """Use Network.create()."""
        self.shm_size, self.tmp_size = shm_size, tmp_size
        self.suffix = self.bridge = self.address = ""
        self.subnet = ipaddress.IPv4Network("0.0.0.0/32")
        self._root = self._mntns_dir = ""
        self._hosts: list[Host] = []
        self._numbers = itertools.count(1)
        # What was made, in order, with how to remove it: destroy() undoes exactly this.
        self._undo: list[tuple[str, Callable[[float | None], None]]] = []
        self._state = _State.UP

    @classmethod
    def create(cls, *, shm_size: str = "256m", tmp_size: str = "256m",
               tmp_dir: str | os.PathLike[str] | None = None, timeout: float | None = 10.0) -> Network:
        """Make the bridge, pick a free 10.213.X.0/24 and give the root namespace .1.

        `shm_size`, `tmp_size`: tmpfs sizes of each host's /dev/shm and temp dir;
        `tmp_dir`: where the hosts' temp dirs' mount points go (default: tempfile's)."""
        deadline = _deadline(timeout)
        net = cls(shm_size=shm_size, tmp_size=tmp_size)
        atexit.register(net.destroy)  # a test that crashes still removes what it made
        try:
            net._make_bridge(deadline)
            net._make_dirs(tmp_dir, deadline)
            net._claim_subnet(deadline)
        except BaseException:
            net._destroy_quietly()
            raise
        return net

    @property
    def hosts(self) -> tuple[Host, ...]:
        return tuple(self._hosts)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Network {self.bridge} {self.subnet} {self._state.value}, {len(self._hosts)} hosts>"

    def host(self, name: str | None = None, *, timeout: float | None = 10.0) -> Host:
        """Add a host: its namespaces, its link on the bridge with the next address; returns
        once the link forwards (the first packet sent is not lost)."""
        if self._state is not _State.UP:
            raise RuntimeError(f"{self!r} is destroyed: make a new Network to add hosts")
        deadline = _deadline(timeout)
        n = next(self._numbers)
        name = name or f"host{n}"
        if not _HOST_NAME.match(name) or any(h.name == name for h in self._hosts):
            raise ValueError(f"host name {name!r}: needs letters, digits, '_.-' and to be unique")
        if n + 2 >= self.subnet.num_addresses:  # .0 is the network, .1 the bridge, .255 broadcast
            raise RuntimeError(f"{self!r} is full: {n - 1} hosts")
        netns, veth = f"zr{self.suffix}-{n}", f"zr{self.suffix}v{n}"
        address = str(self.subnet.network_address + n + 1)
        tmpdir = os.path.join(self._root, name)
        os.mkdir(tmpdir)  # the mount point; removed with the root dir
        mntns = os.path.join(self._mntns_dir, netns)
        self._make_netns(netns, mntns, tmpdir, deadline)
        with _LinkEvents() as events:  # subscribed before the link changes: no missed wake-up
            self._make_link(netns, veth, address, deadline)
            events.wait(functools.partial(self._link_ready, veth), deadline, f"link {veth} of host {name}")
        host = Host(name=name, address=address, netns=netns, veth=veth, mntns=mntns, tmpdir=tmpdir)
        self._hosts.append(host)
        return host

    def destroy(self, *, timeout: float | None = 30.0) -> None:
        """Kill every process in the hosts, then remove every namespace, link, mount and
        directory this network made, and nothing else. Idempotent; after a failure
        (RuntimeError naming what is left), calling it again retries what is left."""
        if self._state is _State.DESTROYED:
            return
        self._state = _State.DESTROYING
        deadline = _deadline(timeout)
        errors = []
        for host in self._hosts:
            host._closed = True
            try:
                host.kill_all(timeout=_left(deadline, "killing the hosts' processes"))
            except (OSError, subprocess.SubprocessError) as e:
                errors.append(f"processes of host {host.name}: {e}")
        failed = []
        while self._undo:  # newest first: links before namespaces, mounts before their dir
            what, undo = self._undo.pop()
            try:
                undo(deadline)
            except (OSError, RuntimeError) as e:
                errors.append(f"{what}: {e}")
                failed.append((what, undo))
        self._undo = failed[::-1]
        if errors:
            raise RuntimeError(f"{self!r}: could not remove all it made: {'; '.join(errors)}")
        self._state = _State.DESTROYED
        atexit.unregister(self.destroy)

    def _destroy_quietly(self) -> None:
        """Destroy after a failed create: the first error is the one to raise."""
        try:
            self.destroy()
        except (OSError, RuntimeError) as e:
            _log.warning("cleanup after a failed setup incomplete, retried at exit", error=str(e))

    def _made(self, what: str, undo: Callable[[float | None], None]) -> None:
        self._undo.append((what, undo))

    def _make_bridge(self, deadline: float | None) -> None:
        for _ in range(_NAME_TRIES):
            suffix = secrets.token_hex(3)
            bridge = f"zrbr{suffix}"
            # A fixed MAC: by default a bridge takes its ports' lowest, so it would change
            # as hosts are added, under the hosts' ARP entries for the root.
            mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
            try:
                _cmd(["ip", "link", "add", "name", bridge, "address", mac, "type", "bridge"], deadline)
            except RuntimeError as e:
                if "File exists" in str(e):  # another network's name: draw again
                    continue
                raise
            self.suffix, self.bridge = suffix, bridge
            self._made(f"bridge {bridge}", functools.partial(_del_link, bridge))
            _sysctl(f"ipv6/conf/{bridge}/disable_ipv6", "1")
            # Never route what hosts send beyond the bridge, even where ip_forward is on:
            # forwarding is decided by the receiving link's setting.
            _sysctl(f"ipv4/conf/{bridge}/forwarding", "0")
            _cmd(["ip", "link", "set", "dev", bridge, "up"], deadline)
            return
        raise RuntimeError(f"no free bridge name after {_NAME_TRIES} tries")

    def _make_dirs(self, tmp_dir: str | os.PathLike[str] | None, deadline: float | None) -> None:
        self._root = tempfile.mkdtemp(prefix=f"zraynet-{self.suffix}-", dir=tmp_dir)
        self._made(f"directory {self._root}", lambda _: shutil.rmtree(self._root, ignore_errors=True))
        self._mntns_dir = _MNTNS_DIR.format(suffix=self.suffix)
        os.mkdir(self._mntns_dir, 0o700)
        self._made(f"directory {self._mntns_dir}", lambda _: _rmdir(self._mntns_dir))
        _cmd(["mount", "--bind", self._mntns_dir, self._mntns_dir], deadline)
        self._made(f"mount {self._mntns_dir}", functools.partial(_unmount, self._mntns_dir))
        _cmd(["mount", "--make-private", self._mntns_dir], deadline)

    def _claim_subnet(self, deadline: float | None) -> None:
        """Give the bridge .1 of a /24 that no route of the machine overlaps. Two test runs
        may claim the same one at once: each then sees the other's route and draws again."""
        for x in random.sample(range(_SUBNET_CHOICES), _SUBNET_CHOICES):
            subnet = ipaddress.IPv4Network(_SUBNET.format(x))
            if _route_clash(subnet, self.bridge, deadline):
                continue
            cidr = f"{subnet.network_address + 1}/{subnet.prefixlen}"
            _cmd(["ip", "addr", "add", cidr, "dev", self.bridge], deadline)
            if _route_clash(subnet, self.bridge, deadline):
                _cmd(["ip", "addr", "del", cidr, "dev", self.bridge], deadline)
                continue
            self.subnet, self.address = subnet, str(subnet.network_address + 1)
            return
        raise RuntimeError(f"every /24 of {_SUBNET.format('*')} overlaps a route of this machine "
                           "(see `ip -4 route show table all`)")

    def _make_netns(self, netns: str, mntns: str, tmpdir: str, deadline: float | None) -> None:
        _cmd(["ip", "netns", "add", netns], deadline)
        self._made(f"network namespace {netns}", functools.partial(_del_netns, netns))
        # A persistent mount namespace, bound onto `mntns`, so that every process of the
        # host shares one /dev/shm and temp dir (a broker and a driver started apart).
        open(mntns, "x").close()
        self._made(f"file {mntns}", lambda _: _unlink(mntns))
        self._made(f"mount namespace {mntns}", functools.partial(_unmount, mntns))
        # slave, as `ip netns exec` does: unmounts in the root (`ip netns del` of another
        # host) reach the host's copy, which would otherwise keep that namespace alive.
        _cmd(["nsenter", f"--net={_NETNS_DIR}/{netns}", "unshare", f"--mount={mntns}",
              "--propagation", "slave", "sh", "-c", _MNTNS_SETUP, "sh",
              self.shm_size, self.tmp_size, tmpdir], deadline)

    def _make_link(self, netns: str, veth: str, address: str, deadline: float | None) -> None:
        # The peer is made inside the namespace: no second root-side name to clash or leak.
        _cmd(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns], deadline)
        # Deleting a veth deletes its peer at once; `ip netns del` does it only later, from
        # a kernel worker, so `ip link` would still list the link when destroy() returns.
        self._made(f"link {veth}", functools.partial(_del_link, veth))
        _sysctl(f"ipv6/conf/{veth}/disable_ipv6", "1")
        _cmd(["ip", "link", "set", "dev", veth, "master", self.bridge, "up"], deadline)
        inside = (f"addr add {address}/{self.subnet.prefixlen} dev eth0\n"
                  "link set dev lo up\nlink set dev eth0 up\n"
                  f"route add default via {self.address} dev eth0\n")
        _cmd(["ip", "-n", netns, "-batch", "-"], deadline, stdin=inside)

    def _link_ready(self, veth: str) -> bool:
        """The host's link is up at both ends and its bridge port forwards (with STP off a
        port forwards at once, but only after the kernel's link watcher saw the carrier)."""
        return (_read(f"/sys/class/net/{veth}/operstate") == "up"
                and _read(f"/sys/class/net/{veth}/brport/state") == _BR_STATE_FORWARDING
                and _read(f"/sys/class/net/{self.bridge}/operstate") == "up")


class Host:
    """One machine of a Network: its own address, /dev/shm and temp dir ($TMPDIR).

    `netns`, `veth`: its network namespace and the root-side end of its link."""

    def __init__(self, *, name: str, address: str, netns: str, veth: str, mntns: str, tmpdir: str) -> None:
        """Use Network.host()."""
        self.name, self.address, self.netns, self.veth = name, address, netns, veth
        self.tmpdir = tmpdir  # a fresh tmpfs inside the host; an empty directory outside
        self._mntns = mntns
        self._procs: list[subprocess.Popen[Any]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} netns={self.netns}>"

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[Any]:
        """Start argv in this host, like subprocess.Popen (same keywords).

        env defaults to os.environ; TMPDIR is always the host's. cwd is entered inside
        the host. The process gets its own session; kill_all() ends it and its children."""
        if self._closed:
            raise RuntimeError(f"{self!r}: its network is destroyed")
        if isinstance(argv, (str, bytes)):
            raise TypeError("argv is a list of arguments, not a command line")
        cwd = os.fspath(kw.pop("cwd", None) or os.getcwd())
        env = {**(os.environ if env is None else env), "TMPDIR": self.tmpdir}
        kw.setdefault("start_new_session", True)  # a ^C to the test reaches only the test
        # nsenter execs argv (no fork, no shell): Popen.pid is argv's pid.
        cmd = ["nsenter", f"--net={_NETNS_DIR}/{self.netns}", f"--mount={self._mntns}",
               f"--wdns={cwd}", "--", *argv]
        self._procs = [p for p in self._procs if p.poll() is None]
        proc = subprocess.Popen(cmd, env=env, **kw)
        self._procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float | None = 10.0, *, check: bool = False,
            env: Mapping[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a short command in this host and return its exit code and text output.

        Raises subprocess.TimeoutExpired (after killing its process group) if it runs past `timeout`,
        CalledProcessError if `check` and it fails."""
        with self.popen(argv, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                # its whole group (its own, see popen), so that no child keeps the pipes
                # open; an unreaped child's group id cannot have been reused
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
        done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check:
            done.check_returncode()
        return done

    def pids(self) -> list[int]:
        """Every process in this host's network or mount namespace, however started
        (also daemons that left their session)."""
        ours = self._namespaces()
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _in(int(entry), ours)]

    def kill_all(self, *, timeout: float | None = 10.0) -> None:
        """SIGKILL every process in this host and wait until they have exited; raises
        TimeoutError if some outlive `timeout` (a process stuck in the kernel)."""
        deadline = _deadline(timeout)
        # First those started by popen(), which may still be in nsenter, not yet inside:
        # they are our children, so their pids cannot have been reused.
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(_left(deadline, f"killing {self!r}'s processes"))
        self._procs.clear()
        while pids := self.pids():  # again: a process may have forked before it died
            pidfds = [fd for fd in map(self._kill, pids) if fd is not None]
            try:
                for fd in pidfds:  # readable once the process has exited
                    if not select.select([fd], [], [], _left(deadline, f"killing {self!r}'s processes"))[0]:
                        raise TimeoutError(f"{self!r}: processes {pids} outlived SIGKILL")
            finally:
                for fd in pidfds:
                    os.close(fd)

    def _kill(self, pid: int) -> int | None:
        """SIGKILL `pid` if it is still in this host; its pidfd, to wait on, or None.
        The namespace is checked after the pidfd is taken, so a pid reused by another
        process meanwhile is never signalled."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        try:
            if _in(pid, self._namespaces()):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                return fd
        except ProcessLookupError:
            pass
        os.close(fd)
        return None

    def _namespaces(self) -> set[tuple[int, int]]:
        return {ns for ns in (_ns_id(f"{_NETNS_DIR}/{self.netns}"), _ns_id(self._mntns)) if ns is not None}


class _LinkEvents:
    """Link change notifications from the kernel (rtnetlink), to wait for a link's state
    without polling: the state is read again after each notification."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.bind((0, _RTMGRP_LINK))
        self._sock.setblocking(False)

    def __enter__(self) -> _LinkEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def wait(self, ready: Callable[[], bool], deadline: float | None, what: str) -> None:
        while not ready():
            if select.select([self._sock], [], [], _left(deadline, f"{what} coming up"))[0]:
                self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._sock.recv(65536)
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno != errno.ENOBUFS:  # overflow: events lost, but the state is read anew
                raise


# -- commands and kernel state ---------------------------------------------------------

def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None, what: str) -> float | None:
    """Seconds left before `deadline` (None: no deadline); TimeoutError once it passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"timed out {what}")
    return left


def _cmd(argv: Sequence[str], deadline: float | None, *, stdin: str | None = None) -> str:
    """Run a setup command; its stdout. RuntimeError with its stderr if it fails."""
    line = shlex.join(argv)
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              stdin=None if stdin is not None else subprocess.DEVNULL,
                              timeout=_left(deadline, line))
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"timed out: {line}") from None
    if done.returncode != 0:
        raise RuntimeError(f"`{line}` failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _route_clash(subnet: ipaddress.IPv4Network, own_link: str, deadline: float | None) -> bool:
    """Whether a route of any table, other than `own_link`'s, overlaps `subnet`."""
    for route in json.loads(_cmd(["ip", "-j", "-4", "route", "show", "table", "all"], deadline) or "[]"):
        dst = route.get("dst", "default")
        if dst == "default" or route.get("dev") == own_link:
            continue
        if ipaddress.IPv4Network(dst, strict=False).overlaps(subnet):
            return True
    return False


def _ns_id(path: str) -> tuple[int, int] | None:
    """Identity of the namespace `path` (a /proc/*/ns link or a bind of one); None if gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _in(pid: int, namespaces: set[tuple[int, int]]) -> bool:
    """Whether `pid` is in one of `namespaces` (a zombie has none left: it is gone)."""
    return _ns_id(f"/proc/{pid}/ns/net") in namespaces or _ns_id(f"/proc/{pid}/ns/mnt") in namespaces


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _sysctl(key: str, value: str) -> None:
    path = f"/proc/sys/net/{key}"
    if os.path.exists(path):  # no ipv6 directory on a kernel booted with ipv6.disable=1
        with open(path, "w") as f:
            f.write(value)


def _del_link(name: str, deadline: float | None) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        try:
            _cmd(["ip", "link", "del", "dev", name], deadline)
        except RuntimeError:
            if os.path.exists(f"/sys/class/net/{name}"):
                raise


def _del_netns(name: str, deadline: float | None) -> None:
    if os.path.exists(f"{_NETNS_DIR}/{name}"):
        _cmd(["ip", "netns", "del", name], deadline)


def _unmount(path: str, deadline: float | None) -> None:
    if _is_mount(path):
        _cmd(["umount", "--lazy", path], deadline)


def _is_mount(path: str) -> bool:
    """os.path.ismount misses a directory bound onto itself (same device, other inode)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)  # paths made here need no unescaping


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)  # never rmtree: a mount left inside must fail this, not be emptied
    except FileNotFoundError:
        pass
