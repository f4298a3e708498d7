"""The CLI round trip, in subprocesses as a user types it: `zray start --head` prints a
join command, which joins another node (a separate host where network namespaces are
available); `zray status` lists both; a driver runs work on the joined node; `zray
stop` leaves no process and no file."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import leftovers, wait_gone, zray_pids

from zray import _netns

pytestmark = pytest.mark.slow
T = 60


def zray_cmd(*args: str, env: dict | None = None, host=None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "zray.cli", *args]
    if host is not None:
        return host.run(argv, timeout=T, env=env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=T, env=env)


def start_head(ip: str) -> tuple[str, str]:
    """`zray start --head`; (address, the join command it printed)."""
    out = zray_cmd("start", "--head", "--port", "0", "--num-cpus", "1", "--node-ip-address", ip)
    assert out.returncode == 0, out.stderr
    join = [line for line in out.stdout.splitlines() if line.startswith("zray start --address")]
    assert len(join) == 1, out.stdout
    return join[0].split()[3], join[0]


DRIVER = """
import sys, zray
zray.init(address=sys.argv[1])
@zray.remote(resources={"joined": 1})
def where():
    return zray.get_runtime_context().get_node_id()
print("RAN-ON", zray.get(where.remote(), timeout=30))
zray.shutdown()
"""


def run_driver(address: str) -> str:
    out = subprocess.run([sys.executable, "-c", DRIVER, address], capture_output=True, text=True,
                         timeout=T)
    assert out.returncode == 0, out.stderr
    return next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("RAN-ON"))


def joined_node_id(join_output: str) -> str:
    return join_output.split("node id ")[1].split(")")[0]


def test_start_join_status_stop_on_one_machine():
    before_pids, before_files = zray_pids(), leftovers()
    address, join = start_head("127.0.0.1")
    try:
        joined = zray_cmd(*join.split()[1:], "--num-cpus", "1", "--resources", '{"joined": 1}',
                          "--node-ip-address", "127.0.0.1")
        assert joined.returncode == 0, joined.stderr
        status = zray_cmd("status", "--address", address)
        assert status.returncode == 0 and "2 node(s) alive" in status.stdout, status.stdout
        assert "joined" in status.stdout
        assert run_driver(address).startswith(joined_node_id(joined.stdout))
    finally:
        stopped = zray_cmd("stop")
    assert stopped.returncode == 0 and stopped.stdout.count("stopped") == 2, stopped.stdout
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"zray stop left {pids} {files}"


@pytest.mark.skipif(not _netns.available(), reason=_netns.why_unavailable() or "-")
def test_a_node_on_another_host_joins_with_the_printed_token():
    before_pids, before_files = zray_pids(), leftovers()
    with _netns.Network.create() as net:
        address, join = start_head(net.address)
        host = net.host()
        try:
            # The token through the environment, as the printed advice says.
            token = join.split("--token ")[1]
            env = dict(os.environ, ZRAY_TOKEN=token)
            joined = zray_cmd("start", "--address", address, "--num-cpus", "1",
                              "--resources", '{"joined": 1}', env=env, host=host)
            assert joined.returncode == 0, joined.stderr
            assert f"({host.address}," in joined.stdout, "it guesses its own address"
            wrong = zray_cmd("start", "--address", address, "--token", "zray2-" + "A" * 43,
                             host=host)
            assert wrong.returncode != 0 and "exited before it was ready" in wrong.stderr, wrong.stderr
            assert run_driver(address).startswith(joined_node_id(joined.stdout))
        finally:
            zray_cmd("stop", host=host)
            zray_cmd("stop")
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"zray stop left {pids} {files}"
