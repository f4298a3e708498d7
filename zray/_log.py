"""Structured loggers for zray's components; the library never configures logging.

structlog is imported on the first log call, not at `import zray`, to keep the
cold start short (it costs ~35 ms here).
"""
from __future__ import annotations

import os
from typing import Any


class _LazyLogger:
    __slots__ = ("_context", "_logger")

    def __init__(self, **context: Any) -> None:
        self._context = context
        self._logger = None

    def _get(self):
        if self._logger is None:
            import structlog
            self._logger = structlog.get_logger("zray").bind(pid=os.getpid(), **self._context)
        return self._logger

    def bind(self, **context: Any) -> _LazyLogger:
        return _LazyLogger(**self._context, **context)

    def debug(self, event: str, **kw: Any) -> None:
        self._get().debug(event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._get().info(event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._get().warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._get().error(event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._get().exception(event, **kw)


def get_logger(component: str, **context: Any) -> _LazyLogger:
    """A logger bound with the component name and pid (and whatever else is given)."""
    return _LazyLogger(component=component, **context)
