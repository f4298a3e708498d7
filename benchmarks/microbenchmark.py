#!/usr/bin/env python
"""Run zray's microbenchmarks: ``python benchmarks/microbenchmark.py [--compare-ray]``.

Thin wrapper around :func:`zray._bench.main.main` (the same entry point
as ``zray microbenchmark``); see that package for the options and workloads.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from zray._bench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
