"""Turning the dashboard off and choosing its port: include_dashboard=False serves
nothing (and the timeline still works); a port asked for that is taken is an error
naming it; without one, the next free port; ZRAY_TASK_EVENTS=0 records nothing;
`zray start --head` serves it too and prints where."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest
from conftest import leftovers, wait_gone, zray_pids
from helpers import poll
from test_dashboard import _listens

import zray
from zray import _init, dashboard

T = 30


@zray.remote
def one():
    return 1


def test_include_dashboard_false_serves_nothing(capfd):
    ctx = zray.init(num_cpus=1, include_dashboard=False)
    assert ctx.dashboard_url is None and ctx.address_info["webui_url"] is None
    assert "dashboard" not in capfd.readouterr().err
    head = _init._cluster.pids[0]
    with open(f"/proc/{head}/cmdline", "rb") as f:
        assert b"--dashboard-fd" not in f.read()
    assert not _listens(head), "no port is open"
    assert zray.get(one.remote(), timeout=T) == 1
    poll(lambda: any(e["name"] == "one" for e in zray.timeline()), T, "the task in the timeline")


@zray.remote
def recording():
    from zray._runtime.events import EVENTS
    return EVENTS.on


def test_task_events_off_records_nothing(monkeypatch):
    monkeypatch.setenv("ZRAY_TASK_EVENTS", "0")   # the brokers and workers inherit it
    zray.init(num_cpus=1)
    assert zray.get(recording.remote(), timeout=T) is False
    zray.shutdown()
    monkeypatch.delenv("ZRAY_TASK_EVENTS")
    zray.init(num_cpus=1)
    assert zray.get(recording.remote(), timeout=T) is True


def test_dashboard_port_taken_is_an_error_and_bad_options_are_refused():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            zray.init(num_cpus=1, dashboard_port=port)
        assert not zray.is_initialized()
    finally:
        taken.close()
    with pytest.raises(ValueError, match="dashboard_port"):
        zray.init(num_cpus=1, dashboard_port="eighty")
    with pytest.raises(TypeError, match="include_dashboard"):
        zray.init(num_cpus=1, include_dashboard="yes")
    ctx = zray.init(num_cpus=1, dashboard_port=port)
    assert ctx.dashboard_url == f"127.0.0.1:{port}"


def test_without_a_port_the_next_free_one():
    first = dashboard.bind()
    try:
        second = dashboard.bind()
        try:
            ports = [s.getsockname()[1] for s in (first, second)]
            assert ports[0] != ports[1] and all(p >= dashboard.DEFAULT_PORT for p in ports)
        finally:
            second.close()
    finally:
        first.close()


@pytest.mark.slow
def test_zray_start_head_serves_the_dashboard():
    before_pids, before_files = zray_pids(), leftovers()
    run = [sys.executable, "-m", "zray.cli"]
    out = subprocess.run(run + ["start", "--head", "--port", "0", "--num-cpus", "1",
                                "--node-ip-address", "127.0.0.1", "--dashboard-port", "0"],
                         capture_output=True, text=True, timeout=T)
    try:
        assert out.returncode == 0, out.stderr
        url = next(line.split()[-1] for line in out.stdout.splitlines()
                   if line.startswith("Its dashboard:"))
        nodes = poll(lambda: json.loads(urllib.request.urlopen(url + "/api/nodes", timeout=T).read()),
                     T, "the head's node")
        assert [n["state"] for n in nodes] == ["ALIVE"]
    finally:
        stopped = subprocess.run(run + ["stop"], capture_output=True, text=True, timeout=T)
    assert stopped.returncode == 0, stopped.stderr
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"zray stop left {pids} {files}"


@zray.remote
def where():
    return zray.get_runtime_context().get_node_id()


@pytest.mark.slow
def test_the_timeline_gathers_every_node():
    """A node on tcp (CurveZMQ) reports to the head as the embedded one does."""
    from zray.testing import Cluster
    with Cluster(head_node_args={"num_cpus": 1}, separate_hosts=False) as cluster:
        cluster.add_node(num_cpus=1, resources={"far": 1})
        zray.init(address=cluster.address)
        try:
            nodes = {zray.get(where.remote(), timeout=T),
                     zray.get(where.options(resources={"far": 1}).remote(), timeout=T)}
            assert len(nodes) == 2

            def both():
                events = zray.timeline()
                procs = {e["pid"] for e in events if e["ph"] == "X" and e["name"] == "where"}
                return events if len(procs) == 2 else None
            events = poll(both, T, "tasks of both nodes in the timeline")
            names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
            assert names == {f"node {n[:12]}" for n in nodes}
        finally:
            zray.shutdown()
