"""A tour of the dashboard: a workload of tasks of a few kinds, an actor pool, a failing
task and a large object, on the embedded cluster, while you look at
http://127.0.0.1:8265 (or the port it prints).

    python examples/dashboard_tour.py                  # runs until Ctrl-C
    python examples/dashboard_tour.py --seconds 20     # then stops
    python examples/dashboard_tour.py --screenshots docs   # the README's pictures

--screenshots takes pictures of a few pages with a headless Chromium (the OS's chromium
and chromedriver, and selenium: pip install selenium) while the workload runs.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import threading
import time

import numpy as np

import zray as ray


@ray.remote
def load_shard(i: int) -> np.ndarray:
    time.sleep(random.uniform(0.05, 0.15))
    return np.full(1000, i, dtype=np.float64)


@ray.remote
def featurize(shard: np.ndarray) -> float:
    time.sleep(random.uniform(0.02, 0.2))
    return float(shard.mean())


@ray.remote
def flaky(i: int) -> int:
    if i % 7 == 3:
        raise RuntimeError(f"shard {i} is corrupt")
    return i


@ray.remote
class Aggregator:
    def __init__(self) -> None:
        self.total = 0.0

    def add(self, x: float) -> float:
        time.sleep(0.01)
        self.total += x
        print(f"running total {self.total:.1f}")
        return self.total


def one_round(agg, round_no: int) -> None:
    feats = [featurize.remote(load_shard.remote(round_no * 10 + i)) for i in range(10)]
    for f in feats:
        agg.add.remote(f)
    for r in [flaky.remote(round_no * 3 + i) for i in range(3)]:
        try:
            ray.get(r)
        except RuntimeError:
            pass
    ray.get(feats)


SHOTS = [("/", "dashboard.png"), ("/tasks", "dashboard-tasks.png"),
         ("/stream", "dashboard-stream.png")]


def screenshots(base: str, folder: str) -> None:
    """PNGs of the pages in SHOTS, taken by a headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        for page, name in SHOTS:
            driver.get(base + page)
            time.sleep(2.5)   # one live update of every section
            driver.save_screenshot(os.path.join(folder, name))
            print(f"saved {os.path.join(folder, name)}")
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None, help="stop after this long")
    ap.add_argument("--screenshots", default=None, metavar="DIR",
                    help="after 20 s of work, save PNGs of some pages in DIR, then stop")
    args = ap.parse_args()
    ctx = ray.init(num_cpus=2)
    print(f"dashboard: http://{ctx.dashboard_url}")
    keep = ray.put(np.zeros(2_000_000))   # a large object, in shared memory
    agg = Aggregator.remote()
    stop = threading.Event()

    def work() -> None:
        round_no = 0
        while not stop.is_set():
            one_round(agg, round_no)
            round_no += 1
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        if args.screenshots:
            time.sleep(20)
            screenshots(f"http://{ctx.dashboard_url}", args.screenshots)
        else:
            stop.wait(args.seconds)
    except KeyboardInterrupt:
        pass
    stop.set()
    worker.join()
    del keep
    ray.shutdown()


if __name__ == "__main__":
    main()
