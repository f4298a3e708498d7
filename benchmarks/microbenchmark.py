#!/usr/bin/env python
"""Run zray's microbenchmarks: ``python benchmarks/microbenchmark.py [--compare-ray]``.

Thin wrapper around :func:`zray._microbenchmark.main` (the same entry point
as ``zray microbenchmark``); see that module for the options.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from zray._microbenchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
