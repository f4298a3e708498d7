"""The dashboard's pages in a real headless Chromium (the OS packages chromium and
chromium-driver, driven by selenium): the cluster page shows the node and the task
counts, and they update live without a reload; every page renders, with no script
error. Skipped when Chromium is not installed, unless ZRAY_REQUIRE_BROWSER is set
(CI sets it: there the browser test must run, or fail)."""
from __future__ import annotations

import os
import shutil

import pytest

import zray

T = 30


def _missing() -> str | None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


if _missing() is not None:
    if os.environ.get("ZRAY_REQUIRE_BROWSER"):
        pytest.fail(f"ZRAY_REQUIRE_BROWSER is set but {_missing()}", pytrace=False)
    pytest.skip(_missing() or "", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(T)
    try:
        yield driver
    finally:
        driver.quit()


@zray.remote
def square(x):
    return x * x


@zray.remote
def fails():
    raise ValueError("shown-in-the-browser")


@zray.remote
class Keeper:
    def ping(self):
        print("keeper pinged")
        return "pong"


def card(driver, label: str) -> int:
    """The number on the summary card labelled `label` (e.g. "tasks finished"), read in
    one script call (the cards are swapped in as the page updates)."""
    cards = driver.execute_script(
        "return Array.from(document.querySelectorAll('.card')).map(c => c.innerText)")
    for text in cards:
        lines = text.splitlines()
        if len(lines) == 2 and lines[1] == label:
            return int(lines[0].replace(",", ""))
    raise AssertionError(f"no card {label!r} in {cards}")


def no_script_errors(driver) -> None:
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"the page logged errors: {severe}"


def test_cluster_page_shows_nodes_and_counts_live(browser):
    ctx = zray.init(num_cpus=2)
    base = "http://" + ctx.dashboard_url
    zray.get([square.remote(i) for i in range(10)], timeout=T)
    browser.get(base + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Cluster"
    wait = WebDriverWait(browser, T, poll_frequency=0.2)
    listed = "return Array.from(document.querySelectorAll('table.nodes td code')).map(c => c.title)"
    wait.until(lambda d: ctx["node_id"] in d.execute_script(listed))   # the node is listed
    wait.until(lambda d: card(d, "tasks finished") >= 10)
    browser.execute_script("window.__zrayNoReload = 1")
    zray.get([square.remote(i) for i in range(25)], timeout=T)
    wait.until(lambda d: card(d, "tasks finished") >= 35)
    assert browser.execute_script("return window.__zrayNoReload") == 1, "updated without a reload"
    assert "live" in browser.find_element(By.ID, "live").text
    no_script_errors(browser)


def test_every_page_renders(browser):
    ctx = zray.init(num_cpus=2)
    base = "http://" + ctx.dashboard_url
    k = Keeper.remote()
    assert zray.get(k.ping.remote(), timeout=T) == "pong"
    with pytest.raises(ValueError):
        zray.get(fails.remote(), timeout=T)
    zray.get([square.remote(i) for i in range(5)], timeout=T)
    wait = WebDriverWait(browser, T, poll_frequency=0.2)
    browser.get(base + "/tasks")
    wait.until(lambda d: "shown-in-the-browser" in d.page_source)   # a failure's traceback
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    assert "shown-in-the-browser" in browser.find_element(By.CSS_SELECTOR, "details pre").text
    browser.get(base + "/actors")
    wait.until(lambda d: "Keeper" in d.find_element(By.CSS_SELECTOR, "main").text)
    browser.get(base + "/stream")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg.stream rect"))
    assert "square" in browser.find_element(By.CSS_SELECTOR, ".legend").text
    browser.get(base + "/logs")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.logs a"))
    browser.find_element(By.CSS_SELECTOR, "table.logs a").click()
    wait.until(lambda d: "keeper pinged" in d.find_element(By.CSS_SELECTOR, "pre.log").text)
    browser.get(base + "/objects")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Objects"
    no_script_errors(browser)
