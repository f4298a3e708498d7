"""MultiOutputNode: several nodes as one DAG; execute() gives the list of their results."""
from __future__ import annotations

from typing import Any

from .dag_node import DAGNode, _Execution

__all__ = ["MultiOutputNode"]


class MultiOutputNode(DAGNode):
    """`MultiOutputNode([a, b]).execute(x)` returns [a's result, b's result]."""

    def __init__(self, args: list | tuple, other_args_to_resolve: dict | None = None) -> None:
        if not isinstance(args, (list, tuple)):
            raise ValueError(f"MultiOutputNode takes a list of nodes, got {type(args).__name__}")
        super().__init__(tuple(args), {}, {}, other_args_to_resolve)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        return list(args)

    def __str__(self) -> str:
        return f"MultiOutputNode({len(self._bound_args)} nodes)"
