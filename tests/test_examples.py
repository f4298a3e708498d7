"""The examples, run as a user runs them: the notebook in a real Jupyter kernel, the
RL demo as a script. Skipped unless the `examples` extra is installed
(pip install -e '.[test,examples]')."""
from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

import pytest
from conftest import leftovers, wait_gone, zray_pids

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
KernelManager = pytest.importorskip("jupyter_client.manager").KernelManager

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
TRAIN = os.path.join(EXAMPLES, "rl", "train.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ITER_LINE = re.compile(r"^iter +(\d+) +episodes +(\d+) +mean return +([\d.]+) +policy +([\d.]+) "
                       r"+episodes/s +(\d+)", re.MULTILINE)


# -- the notebook ---------------------------------------------------------------

def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def cell_with(nb, source_part: str):
    cells = [c for c in nb.cells if c.cell_type == "code" and source_part in c.source]
    assert len(cells) == 1, f"no single code cell contains {source_part!r}"
    return cells[0]


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory):
    """examples/notebook.ipynb executed top to bottom in a fresh ipykernel (over ipc://,
    in a temp dir), which nbclient shuts down at the end; with the zray processes
    and files the kernel left (it runs before the per-test leak check)."""
    before_pids, before_files = zray_pids(), leftovers()
    tmp = tmp_path_factory.mktemp("kernel")
    nb = nbformat.read(os.path.join(EXAMPLES, "notebook.ipynb"), as_version=4)
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp / "kernel"))
    client = nbclient.NotebookClient(nb, km=km, timeout=60, resources={"metadata": {"path": EXAMPLES}})
    # Raises CellExecutionError on an error in a cell not tagged raises-exception; with
    # cleanup_kc, shuts the kernel down (and waits for it) even though it is our km.
    client.execute(cleanup_kc=True)
    assert not km.has_kernel, "the kernel is still running"
    return nb, wait_gone(before_pids, before_files)


@pytest.mark.timeout(90)
def test_notebook_runs_in_a_kernel_and_leaves_nothing(executed_notebook):
    nb, (pids, files) = executed_notebook
    assert not pids, f"the kernel left zray processes: {sorted(pids)}"
    assert not files, f"the kernel left files: {sorted(files)}"
    errors = [c for c in nb.cells if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.outputs)]
    assert len(errors) == 1, "only the cell that shows an error may have one"
    assert "raises-exception" in errors[0].metadata.get("tags", [])


@pytest.mark.timeout(90)
def test_notebook_tasks_actor_and_put(executed_notebook):
    nb, _ = executed_notebook
    init_cell = cell_with(nb, "ray.init(num_cpus=2)")
    resources = next(o for o in init_cell.outputs if o.output_type == "execute_result")
    assert "'CPU': 2.0" in resources["data"]["text/plain"]
    assert "View the dashboard at http://127.0.0.1:" in text_of(init_cell)
    out = text_of(cell_with(nb, "def monte_carlo_pi"))
    assert re.search(r"^ObjectRef\([0-9a-f]+\)$", out, re.MULTILINE)
    assert re.search(r"^8 estimates, mean 3\.1\d*$", out, re.MULTILINE)
    assert "| sum of the samples: 499999500000.0" in text_of(cell_with(nb, "def chunk_sum"))
    assert re.search(r"^the actor holds 9 values, mean 3\.1\d*$",
                     text_of(cell_with(nb, "class Tally")), re.MULTILINE)


@pytest.mark.timeout(90)
def test_notebook_wait_returns_the_fast_task_first(executed_notebook):
    out = text_of(cell_with(executed_notebook[0], "def nap"))
    assert out.splitlines() == ["ready first: [0.05] | still running: 1",
                                "after 10 ms more: 0 ready, 1 not ready", "then: 1.0"]


@pytest.mark.timeout(90)
def test_notebook_error_shows_the_remote_traceback(executed_notebook):
    nb, _ = executed_notebook
    error = [o for o in cell_with(nb, "def parse_count").outputs
             if o.output_type == "error"]
    assert error and error[0].ename == "RayTaskError(ValueError)"
    remote = error[0].evalue   # the worker's traceback travels in the message
    assert "zray::parse_count" in remote
    assert "Traceback (most recent call last):" in remote and ", in parse_count" in remote
    assert "ValueError: invalid literal for int() with base 10: 'forty-two'" in remote
    caught = text_of(cell_with(nb, "except ValueError as err"))
    assert caught.strip() == "RayTaskError(ValueError) | is a ValueError: True | is a RayTaskError: True"


@pytest.mark.timeout(90)
def test_notebook_plot_and_shutdown(executed_notebook):
    nb, _ = executed_notebook
    plot = cell_with(nb, "plt.subplots")
    images = [o for o in plot.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert re.search(r"^after 40 tasks: 3\.1\d*$", text_of(plot), re.MULTILINE)
    assert cell_with(nb, "ray.shutdown()").outputs[0]["data"]["text/plain"] == "False"


# -- the RL demo ----------------------------------------------------------------

def run_train(tmp_path, *args: str, timeout: float) -> tuple[str, list[tuple]]:
    out = subprocess.run([sys.executable, TRAIN, "--plot", str(tmp_path / "curve.png"), *args],
                         cwd=tmp_path, capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    iters = [(int(i), int(e), float(m), float(p), int(s)) for i, e, m, p, s in ITER_LINE.findall(out.stdout)]
    return out.stdout, iters


def assert_png(path) -> None:
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.timeout(60)
def test_rl_quick_run_improves_and_saves_the_curve(tmp_path):
    stdout, iters = run_train(tmp_path, "--quick", timeout=50)
    assert [i for i, *_ in iters] == [1, 2, 3, 4, 5]
    assert all(b[1] > a[1] for a, b in itertools.pairwise(iters)), "episodes must grow"
    assert all(s > 0 for *_, s in iters)
    first, rest = iters[0], iters[1:]
    assert max(m for _, _, m, _, _ in rest) > first[2], "the mean return did not improve"
    assert max(p for _, _, _, p, _ in rest) > first[3], "the policy's return did not improve"
    assert "ran 5 iterations" in stdout
    assert_png(tmp_path / "curve.png")


@pytest.mark.timeout(90)
def test_rl_training_solves_cartpole(tmp_path):
    stdout, _ = run_train(tmp_path, "--workers", "2", timeout=80)
    score = re.search(r"^test: mean return ([\d.]+) over 100 episodes$", stdout, re.MULTILINE)
    assert score and float(score.group(1)) >= 475.0, stdout[-2000:]
    assert re.search(r"^solved: \d+ episodes \(\d+ steps\) in [\d.]+ s with 2 workers", stdout, re.MULTILINE)
    assert_png(tmp_path / "curve.png")
