"""FunctionNode: `f.bind(*args)`, a task to submit at the DAG's execute()."""
from __future__ import annotations

from typing import Any

from .dag_node import DAGNode, _Execution

__all__ = ["FunctionNode"]


class FunctionNode(DAGNode):
    """A remote function bound to its arguments (and the options of `.options()`)."""

    def __init__(self, func_body: Any, func_args: tuple, func_kwargs: dict, func_options: dict,
                 other_args_to_resolve: dict | None = None) -> None:
        self._body = func_body     # the RemoteFunction
        super().__init__(func_args, func_kwargs, func_options, other_args_to_resolve)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        fn = self._body.options(**self._bound_options) if self._bound_options else self._body
        return fn.remote(*args, **kwargs)

    def __str__(self) -> str:
        return f"FunctionNode({getattr(self._body, '_name', self._body)})"
