"""The shape of the code base (STYLE.md): one public surface, small modules and
functions, no import circles. These fail when a change lets the house go untidy."""
from __future__ import annotations

import ast
import pathlib
import statistics

import zray

ROOT = pathlib.Path(zray.__file__).parent
TESTS = pathlib.Path(__file__).parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
MAX_MEDIAN_MODULE_LINES = 200
MAX_TEST_FILE_LINES = 700

PUBLIC = [
    "ActorClass", "ActorHandle", "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator",
    "available_resources", "cancel", "cluster_resources", "exceptions", "get", "get_actor",
    "get_gpu_ids", "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes",
    "put", "remote", "shutdown", "timeline", "util", "wait",
]


def modules() -> dict[str, pathlib.Path]:
    """Dotted name -> file, for every module of the package."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: pathlib.Path, known: dict) -> set[str]:
    """The package's modules that `name` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    found.add(target)
                elif base in known:
                    found.add(base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
    found.discard(name)
    return found


def test_public_surface_is_pinned():
    assert sorted(zray.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(zray, name) is not None


def test_no_import_circles():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    # A package imports its submodules to re-export them; a submodule importing its own
    # package's __init__ is then a circle only in name, so edges into a parent package
    # from its children are left out.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_modules_and_functions_are_small():
    sizes = {}
    long_functions = []
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        sizes[path] = text.count("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT.parent)}:{node.name} ({n} lines)")
    too_big = [f"{p.relative_to(ROOT.parent)} ({n} lines)" for p, n in sizes.items()
               if n > MAX_MODULE_LINES]
    assert not too_big, f"modules over {MAX_MODULE_LINES} lines: {too_big}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
    assert statistics.median(sizes.values()) < MAX_MEDIAN_MODULE_LINES


def test_test_files_are_split_by_concept():
    too_big = [f"{p.name} ({p.read_text().count(chr(10))} lines)" for p in TESTS.glob("*.py")
               if p.read_text().count("\n") > MAX_TEST_FILE_LINES]
    assert not too_big, f"test files over {MAX_TEST_FILE_LINES} lines: {too_big}"
