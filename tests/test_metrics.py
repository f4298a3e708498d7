"""zray.util.metrics (Ray's Counter, Gauge, Histogram): Ray's argument checks and errors,
and the values recorded in tasks, actors and the driver reaching the head's /metrics
(parsed by Prometheus' own parser) as Ray names them, one series per process; nothing
runs in a program that records none; the head skips malformed reports."""
from __future__ import annotations

import os
import pickle
import urllib.request
import warnings

import pytest
from conftest import leftovers, wait_gone, zray_pids
from helpers import poll, run_driver
from prometheus_client.parser import text_string_to_metric_families

import zray
from zray.brokers._app_metrics import AppMetrics
from zray.util.metrics import Counter, Gauge, Histogram

pytestmark = pytest.mark.module_cluster
T = 30


@pytest.fixture(scope="module")
def dash():
    """The module's cluster and its /metrics URL."""
    before_pids, before_files = zray_pids(), leftovers()
    ctx = zray.init(num_cpus=2)
    yield "http://" + ctx.dashboard_url + "/metrics"
    zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"module leaked {pids} {files}"


def families(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=T) as r:
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def samples(url: str, family: str) -> list:
    fam = families(url).get(family)
    return list(fam.samples) if fam is not None else []


# -- Ray's checks, in the driver (no cluster needed) ------------------------------------

def test_arguments_are_checked_as_ray_checks_them():
    with pytest.raises(ValueError, match="Empty name"):
        Counter("")
    with pytest.raises(TypeError, match="tag_keys should be a tuple"):
        Counter("c1", tag_keys=["a"])
    with pytest.raises(TypeError, match="Tag keys must be str"):
        Counter("c1", tag_keys=(1,))
    with pytest.raises(TypeError, match="metric name must be a str"):
        Counter(5)
    c = Counter("c2", "desc", tag_keys=("a", "b"))
    with pytest.raises(ValueError, match="value must be >0, got 0"):
        c.inc(0, tags={"a": "x", "b": "y"})
    with pytest.raises(TypeError, match="value must be int or float"):
        c.inc("1", tags={"a": "x", "b": "y"})
    with pytest.raises(ValueError, match=r"Missing value for tag key\(s\): b\."):
        c.inc(1, tags={"a": "x"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        c.inc(1, tags={"a": 1, "b": "y"})
    with pytest.raises(ValueError, match="Unrecognized tag key zz"):
        c.set_default_tags({"zz": "1"})
    assert c.set_default_tags({"a": "1"}) is c
    c.inc(tags={"b": "2"})                                   # a from the default tags
    c.inc(1, tags={"a": "x", "b": "y", "other": "dropped"})  # as Ray: keys not declared are dropped
    assert c.info == {"name": "c2", "description": "desc", "tag_keys": ("a", "b"),
                      "default_tags": {"a": "1"}}
    g = Gauge("g1", tag_keys=("a",))
    assert g.set(None) is None                               # None: nothing (as Ray)
    with pytest.raises(ValueError, match="Missing value"):
        g.set(3)
    for bad in (None, []):
        with pytest.raises(ValueError, match="boundaries argument should be provided"):
            Histogram("h0", boundaries=bad)
    with pytest.raises(ValueError, match="at index 1"):
        Histogram("h0", boundaries=[1, -1])
    h = Histogram("h1", "hd", boundaries=[2, 1], tag_keys=("a",))
    assert h.info["boundaries"] == [2, 1] and h.boundaries == [2, 1]


def test_bad_names_warn_and_are_discarded_as_in_ray():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = Counter("1bad name")
        Counter("a:b")
    kinds = [w.category for w in caught]
    assert kinds == [UserWarning, FutureWarning], caught
    bad.inc()                                                # discarded, no error


def test_metrics_pickle_as_ray_without_default_tags():
    c = Counter("c3", "d", tag_keys=("a",)).set_default_tags({"a": "x"})
    back = pickle.loads(pickle.dumps(c))
    assert type(back) is Counter and back.info["default_tags"] == {}
    h = pickle.loads(pickle.dumps(Histogram("h2", boundaries=[1.0], tag_keys=("a",))))
    assert h.boundaries == [1.0] and h.info["tag_keys"] == ("a",)


# -- end to end: /metrics --------------------------------------------------------------

@zray.remote
def serve(route, n):
    requests = Counter("app_requests", description="Requests served.", tag_keys=("route",))
    requests.inc(n, tags={"route": route})
    lat = Histogram("app_latency_s", description="Latency.", boundaries=[0.1, 1.0],
                    tag_keys=("route",))
    for v in (0.05, 0.5, 5.0):
        lat.observe(v, tags={"route": route})
    return zray.get_runtime_context().get_worker_id()


@zray.remote
class Thermometer:
    def __init__(self):
        self.gauge = Gauge("app_temperature", description="Degrees.", tag_keys=("room",))

    def read(self, value):
        self.gauge.set(value, tags={"room": "lab"})
        return zray.get_runtime_context().get_worker_id()


def test_task_actor_and_driver_metrics_reach_the_head(dash):
    worker = zray.get(serve.remote("/a", 3), timeout=T)
    actor = Thermometer.remote()
    assert zray.get(actor.read.remote(21.5), timeout=T)
    actor_worker = zray.get(actor.read.remote(-4.25), timeout=T)   # the last value counts
    Counter("app_requests", description="Requests served.", tag_keys=("route",)).inc(
        tags={"route": "/driver"})
    driver = zray.get_runtime_context().get_worker_id()

    def reported():
        fams = families(dash)
        want = ("app_requests", "app_latency_s", "app_temperature")
        return fams if all(f"ray_{n}" in fams for n in want) and \
            len(fams["ray_app_requests"].samples) == 2 else None
    fams = poll(reported, timeout=T, what="application metrics on /metrics")
    assert fams["ray_app_requests"].type == "counter"   # exposed as ray_app_requests_total
    counts = {(s.labels["route"], s.labels["WorkerId"]): s.value
              for s in fams["ray_app_requests"].samples}
    assert counts == {("/a", worker): 3.0, ("/driver", driver): 1.0}
    some = fams["ray_app_requests"].samples[0].labels
    assert some["NodeAddress"] == "127.0.0.1" and some["Component"] == "core_worker"
    assert some["SessionName"].startswith("zray-")
    (temp,) = fams["ray_app_temperature"].samples
    assert (temp.value, temp.labels["room"], temp.labels["WorkerId"]) == (-4.25, "lab", actor_worker)
    assert fams["ray_app_temperature"].documentation == "Degrees."
    hist = {(s.name, s.labels.get("le")): s.value for s in fams["ray_app_latency_s"].samples}
    assert hist == {("ray_app_latency_s_bucket", "0.1"): 1.0, ("ray_app_latency_s_bucket", "1.0"): 2.0,
                    ("ray_app_latency_s_bucket", "+Inf"): 3.0, ("ray_app_latency_s_count", None): 3.0,
                    ("ray_app_latency_s_sum", None): 5.55}


@zray.remote
def count_up(n):
    c = Counter("app_calls", tag_keys=())
    for _ in range(n):
        c.inc()
    return os.getpid()


def test_counts_are_totals_per_process(dash):
    pids = zray.get([count_up.remote(5) for _ in range(4)], timeout=T)

    def total():
        got = samples(dash, "ray_app_calls")
        return got if sum(s.value for s in got) == 20 else None
    got = poll(total, timeout=T, what="20 calls counted")
    assert len(got) == len(set(pids))   # one series per worker process


def test_nothing_runs_without_metrics(dash, tmp_path):
    """A program that records no metric starts no sender thread, in its driver or its
    workers; one that does sends from the processes that record."""
    proc = run_driver(tmp_path, """
        import threading, zray
        from zray.util.metrics import Gauge
        zray.init(num_cpus=1, include_dashboard=False)
        @zray.remote
        def names(record):
            if record:
                Gauge("app_used").set(1)
            return "zray-metrics" in {t.name for t in threading.enumerate()}
        print(zray.get(names.remote(False), timeout=30),
              "zray-metrics" in {t.name for t in threading.enumerate()},
              zray.get(names.remote(True), timeout=30))
        zray.shutdown()
    """)
    assert proc.stdout.split() == ["False", "False", "True"], proc.stdout


# -- the head's side: malformed reports are skipped ----------------------------------

def test_head_skips_malformed_reports():
    m = AppMetrics("/tmp/zray-abc")
    good = {"worker": "w1", "defs": {"x": ["counter", "X.", [], None]}, "series": [["x", "counter", [], 2]]}
    bad_reports = [None, 5, {"worker": 1}, {"worker": "w", "defs": [], "series": []},
                   {"worker": "w", "defs": {"y": ["nope", "", [], None]}, "series": [["y", "nope", [], 1]]},
                   {"worker": "w", "defs": {"h": ["histogram", "", [], [1.0]]},
                    "series": [["h", "histogram", [], [[1], 1, 1]]]},        # a bucket short
                   {"worker": "w", "defs": {"x": ["gauge", "", [], None]},
                    "series": [["x", "gauge", [], 1.0]]},                     # x is a counter
                   {"worker": "w", "defs": {"z": ["gauge", "", ["a"], None]},
                    "series": [["z", "gauge", [], 1.0], ["z", "gauge", ["v"], "1"], "junk"]}]
    kept = m.take("n1", "10.0.0.1", [[{"rows": 0, "metrics": good}, b""]] +
                  [[{"rows": 0, "metrics": r}, b""] for r in bad_reports] +
                  [[{"rows": 3}, b"rows"], "junk"])
    assert kept == [[{"rows": 3}, b"rows"], "junk"]   # task rows go on to the history
    text = "\n".join(m.prometheus()) + "\n"
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert list(fams) == ["ray_x"] and [s.value for s in fams["ray_x"].samples] == [2.0]
    assert m.bad >= 6
