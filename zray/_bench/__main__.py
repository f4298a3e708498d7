"""Runs the microbenchmark: ``python -m zray._bench`` (zray importable), or as a
plain script, ``python zray/_bench/__main__.py``: how ``--compare-ray`` runs the
Ray side under Ray's interpreter, which lacks zray's dependencies."""

import importlib
import importlib.util
import os
import sys

# Name under which a plain script run loads this directory as a package: not
# ``zray._bench``, whose import would run zray/__init__.py (pyzmq, structlog...).
_SCRIPT_PACKAGE = "_zray_bench"


def _load_directory_as_package():
    """Load this directory as the top-level package ``_zray_bench``; its name.

    Its modules import each other relatively and import neither zray nor ray
    at module level, so they run under any interpreter with Ray (and numpy).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    # Python put this directory first on sys.path.  Its modules (main, tasks,
    # proc...) would then shadow top-level modules of the same name, here and
    # in Ray's workers, which get the driver's sys.path: drop it.  The package
    # is found through sys.modules instead.
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        del sys.path[0]
    spec = importlib.util.spec_from_file_location(
        _SCRIPT_PACKAGE, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[_SCRIPT_PACKAGE] = package
    spec.loader.exec_module(package)
    return _SCRIPT_PACKAGE


def _main_function():
    if __package__:  # python -m zray._bench
        from .main import main

        return main
    return importlib.import_module(_load_directory_as_package() + ".main").main


if __name__ == "__main__":
    sys.exit(_main_function()())
