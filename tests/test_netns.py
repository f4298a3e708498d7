"""zray._netns: hosts in their own network and mount namespaces reach each other and the
root namespace over tcp, see nothing of each other's /dev/shm and temp dir, and a
Network leaves nothing behind, also when processes still run or setup failed."""
from __future__ import annotations

import contextlib
import glob
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest
from conftest import pid_alive

from zray import _netns
from zray._netns import Network, available, why_unavailable

pytestmark = [pytest.mark.skipif(not available(), reason=why_unavailable()), pytest.mark.timeout(30)]

STEP_S = 10.0  # bound on each command run in a host

# Listens on argv[1], prints its port once listening (the test's readiness signal), then
# greets argv[2] clients with the address they came from.
SERVER = textwrap.dedent("""
    import socket, sys
    srv = socket.create_server((sys.argv[1], 0))
    print(srv.getsockname()[1], flush=True)
    for _ in range(int(sys.argv[2])):
        conn, peer = srv.accept()
        with conn:
            conn.sendall(f"hello {peer[0]}".encode())
""")

# Prints what the server at argv[1]:argv[2] sends, or "refused".
CLIENT = textwrap.dedent("""
    import socket, sys
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as conn:
            print(conn.makefile().read())
    except ConnectionRefusedError:
        print("refused")
""")


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_names() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def traces(suffix: str) -> set[str]:
    """Namespaces, links, mounts and directories of the network with this name suffix."""
    found = {name for name in netns_names() | link_names() if name.startswith("zr") and suffix in name}
    with open("/proc/self/mountinfo") as f:
        found |= {line.split()[4] for line in f if suffix in line}
    found |= set(glob.glob(f"/run/zray-net-{suffix}"))
    return found | set(glob.glob(os.path.join(tempfile.gettempdir(), f"zraynet-{suffix}-*")))


@pytest.fixture
def networks():
    """Makes Networks; destroys them after the test and checks they left nothing."""
    made: list[Network] = []

    def make(**kw) -> Network:
        made.append(Network.create(**kw))
        return made[-1]

    yield make
    for net in made:
        net.destroy()
    assert {net.suffix: traces(net.suffix) for net in made} == {net.suffix: set() for net in made}


@pytest.fixture
def net(networks) -> Network:
    return networks()


@contextlib.contextmanager
def serving(host, clients: int):
    """A SERVER in `host` for `clients` connections: yields its port once it listens."""
    with host.popen([sys.executable, "-c", SERVER, host.address, str(clients)],
                    stdout=subprocess.PIPE, text=True) as server:
        yield int(server.stdout.readline())
        assert server.wait(STEP_S) == 0


def client(host, address: str, port: int) -> str:
    return host.run([sys.executable, "-c", CLIENT, address, str(port)], STEP_S, check=True).stdout.strip()


# -- tcp between hosts and the root namespace -------------------------------------------

def test_another_host_and_the_root_reach_a_server_by_its_hosts_address(net):
    a, b = net.host("a"), net.host("b")
    with serving(a, clients=2) as port:
        assert client(b, a.address, port) == f"hello {b.address}"  # from B's own address: no NAT
        with socket.create_connection((a.address, port), timeout=STEP_S) as conn:
            assert conn.makefile().read() == f"hello {net.address}"


def test_a_port_nobody_listens_on_is_refused_not_dropped(net):
    a, b = net.host("a"), net.host("b")
    assert client(a, b.address, 9) == "refused"  # nothing runs in B


def test_a_host_reaches_the_root_by_the_networks_address_and_has_its_own_loopback(net):
    a = net.host("a")
    with socket.create_server((net.address, 0)) as srv, socket.create_server(("127.0.0.1", 0)) as local:
        srv.settimeout(STEP_S)
        argv = [sys.executable, "-c", CLIENT, net.address, str(srv.getsockname()[1])]
        with a.popen(argv, stdout=subprocess.PIPE, text=True) as proc:
            conn, peer = srv.accept()
            with conn:
                conn.sendall(b"hi")
            assert proc.stdout.read().strip() == "hi"
        assert peer[0] == a.address
        # the root's 127.0.0.1 is not the host's: the same port there is refused
        assert client(a, "127.0.0.1", local.getsockname()[1]) == "refused"


def test_nothing_is_routed_beyond_the_network(net):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read()
    a = net.host("a")
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == forwarding  # left as it was
    with open(f"/proc/sys/net/ipv4/conf/{net.bridge}/forwarding") as f:
        assert f.read().strip() == "0"  # and off for what hosts send, whatever ip_forward says
    routes = a.run(["ip", "-4", "route"], STEP_S, check=True).stdout.splitlines()
    expected = [["default", "via", net.address], [str(net.subnet), "dev", "eth0"]]
    assert [route.split()[:3] for route in routes] == expected
    assert a.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0"], STEP_S, check=True).stdout == ""
    assert a.run(["ls", "/sys/class/net"], STEP_S, check=True).stdout.split() == ["eth0", "lo"]


def test_a_hosts_link_forwards_when_host_returns(net):
    a = net.host("a")
    with open(f"/sys/class/net/{a.veth}/brport/state") as f:
        assert f.read().strip() == "3"  # BR_STATE_FORWARDING: no first packet is lost


# -- /dev/shm and temp dir -------------------------------------------------------------

def test_each_host_has_its_own_dev_shm(net):
    a, b = net.host("a"), net.host("b")
    token = secrets.token_hex(4)
    in_a, in_b, in_root = f"zrnet-a-{token}", f"zrnet-b-{token}", f"zrnet-root-{token}"
    with open(f"/dev/shm/{in_root}", "x"):
        pass
    try:
        write_and_list = ["sh", "-c", 'touch /dev/shm/"$1" && ls -A /dev/shm', "sh"]
        assert a.run([*write_and_list, in_a], STEP_S, check=True).stdout.split() == [in_a]
        assert b.run([*write_and_list, in_b], STEP_S, check=True).stdout.split() == [in_b]
        # a later process of A sees what the first wrote, and nothing of B's
        assert a.run(["ls", "-A", "/dev/shm"], STEP_S, check=True).stdout.split() == [in_a]
        assert not os.path.exists(f"/dev/shm/{in_a}") and not os.path.exists(f"/dev/shm/{in_b}")
    finally:
        os.unlink(f"/dev/shm/{in_root}")


def test_each_host_has_its_own_empty_temp_dir(net):
    a, b = net.host("a"), net.host("b")
    make_file = ("import os, tempfile; d = tempfile.gettempdir(); print(d, len(os.listdir(d))); "
                 "open(os.path.join(d, 'mine'), 'x').close()")
    dir_a, count_a = a.run([sys.executable, "-c", make_file], STEP_S, check=True).stdout.split()
    dir_b, count_b = b.run([sys.executable, "-c", make_file], STEP_S, check=True).stdout.split()
    assert (dir_a, count_a, dir_b, count_b) == (a.tmpdir, "0", b.tmpdir, "0")
    assert dir_a != dir_b
    mine_a = os.path.join(a.tmpdir, "mine")
    assert a.run(["test", "-e", mine_a], STEP_S).returncode == 0
    assert b.run(["test", "-e", mine_a], STEP_S).returncode == 1  # not even at A's path
    assert not os.path.exists(mine_a)  # nor in the root namespace


def test_run_kills_a_command_past_its_timeout(net):
    a = net.host("a")
    with pytest.raises(subprocess.TimeoutExpired):
        # returns (does not wait out the 60 s): the child holding stdout is killed too
        a.run(["sh", "-c", "sleep 60; true"], 0.2)


# -- cleanup ---------------------------------------------------------------------------

def test_destroy_kills_what_runs_and_removes_all_it_made(tmp_path):
    before_ns, before_links = netns_names(), link_names()
    net = Network.create(tmp_dir=tmp_path)
    a, b = net.host("a"), net.host("b")
    made_ns, made_links = {a.netns, b.netns}, {net.bridge, a.veth, b.veth}
    assert made_ns <= netns_names() and made_links <= link_names()
    sleeper = a.popen(["sleep", "1000"])
    # a daemon that left its parent's session: killed because it is in the namespace
    with b.popen(["sh", "-c", "setsid sleep 1000 & echo $!"], stdout=subprocess.PIPE, text=True) as starter:
        daemon = int(starter.stdout.readline())
    assert daemon in b.pids()

    net.destroy()
    assert sleeper.returncode == -signal.SIGKILL
    assert not pid_alive(daemon)
    changed = (netns_names() ^ before_ns) | (link_names() ^ before_links)
    assert {name for name in changed if net.suffix in name} == set()  # others' may come and go
    assert traces(net.suffix) == set()
    assert os.listdir(tmp_path) == []
    net.destroy()  # twice is harmless
    with pytest.raises(RuntimeError, match="destroyed"):
        net.host("c")
    with pytest.raises(RuntimeError, match="destroyed"):
        a.popen(["true"])


def test_destroy_after_a_failed_host_setup_removes_the_pieces(networks, monkeypatch):
    net = networks()
    real_cmd = _netns._cmd

    def fail_inside(argv, deadline, **kw):
        if "-batch" in argv:  # after the namespaces and the link were made
            raise RuntimeError("injected failure")
        return real_cmd(argv, deadline, **kw)

    monkeypatch.setattr(_netns, "_cmd", fail_inside)
    with pytest.raises(RuntimeError, match="injected"):
        net.host("a")
    monkeypatch.undo()
    assert {f"zr{net.suffix}-1", f"zr{net.suffix}v1"} <= traces(net.suffix)
    net.destroy()
    assert traces(net.suffix) == set()


def test_a_failed_create_removes_what_it_made(monkeypatch):
    real_cmd = _netns._cmd
    bridges = []

    def fail_late(argv, deadline, **kw):
        if argv[:3] == ["ip", "link", "add"]:
            bridges.append(argv[4])
        if "--make-private" in argv:  # after the bridge and the directories were made
            raise RuntimeError("injected failure")
        return real_cmd(argv, deadline, **kw)

    monkeypatch.setattr(_netns, "_cmd", fail_late)
    with pytest.raises(RuntimeError, match="injected"):
        Network.create()
    (bridge,) = bridges
    assert traces(bridge.removeprefix("zrbr")) == set()


def test_two_networks_alive_at_once_do_not_collide(networks, monkeypatch):
    one = networks()
    # The second first draws the first's name and /24, as a parallel test run may, and
    # claims the /24 before it sees the first's route (the race of two runs): it must
    # notice both, give the /24 back, and draw again.
    taken = one.subnet.network_address.packed[2]
    real_token_hex, real_sample, real_clash = secrets.token_hex, _netns.random.sample, _netns._route_clash
    suffixes = iter([one.suffix])
    monkeypatch.setattr(_netns.secrets, "token_hex", lambda n: next(suffixes, None) or real_token_hex(n))
    monkeypatch.setattr(_netns.random, "sample", lambda population, k: [
        taken, *real_sample([x for x in population if x != taken], k - 1)])
    checked = []

    def unseen_at_first(subnet, own_link, deadline):
        checked.append(subnet)
        return len(checked) > 1 and real_clash(subnet, own_link, deadline)

    monkeypatch.setattr(_netns, "_route_clash", unseen_at_first)
    two = networks()
    monkeypatch.undo()
    assert checked[:2] == [one.subnet, one.subnet]  # claimed, then seen taken
    h1, h2 = one.host(), two.host()  # both named host1
    assert one.suffix != two.suffix and one.bridge != two.bridge
    assert not one.subnet.overlaps(two.subnet)
    assert len({h1.netns, h2.netns}) == len({h1.veth, h2.veth}) == len({h1.address, h2.address}) == 2
    assert h1.tmpdir != h2.tmpdir
    with serving(h1, clients=1) as port1, serving(h2, clients=1) as port2:
        for host, port, net in ((h1, port1, one), (h2, port2, two)):
            with socket.create_connection((host.address, port), timeout=STEP_S) as conn:
                assert conn.makefile().read() == f"hello {net.address}"
