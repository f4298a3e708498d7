"""DAGNode: a call bound to its arguments but not made yet (Ray's lazy DAG API).

`f.bind(x)`, `Cls.bind(x)`, `handle.method.bind(x)` and `InputNode` make nodes;
`node.execute(*input)` walks the graph bottom-up and makes the real calls, each node
once per execute() however many nodes use it, and returns what the root's call
returns (ObjectRefs, or an actor handle for a class node). A node's arguments may
hold other nodes at the top level or inside lists, tuples, dicts and sets; these are
replaced by the refs (or handles) their calls return, so a node nested in a list
reaches the task as a ref, as a ref nested in a list does.
"""
from __future__ import annotations

import uuid
from typing import Any

__all__ = ["DAGNode"]


class DAGNode:
    """The base of every node: bound args, kwargs, options, and the nodes this one
    depends on besides its arguments (`other`: the actor of a method call, ...)."""

    def __init__(self, args: tuple, kwargs: dict, options: dict,
                 other_args_to_resolve: dict | None = None) -> None:
        self._bound_args = tuple(args or ())
        self._bound_kwargs = dict(kwargs or {})
        self._bound_options = dict(options or {})
        self._bound_other_args_to_resolve = dict(other_args_to_resolve or {})
        self._stable_uuid = uuid.uuid4().hex

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Make the calls of this node and of every node it depends on; the DAG's
        InputNode stands for `args`/`kwargs`. Returns this node's result: ObjectRef(s),
        an actor handle (a class node) or a list of them (MultiOutputNode)."""
        return _Execution(args, kwargs).value(self)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        """This node's call, its args, kwargs and other nodes already replaced by values."""
        raise NotImplementedError

    # -- as Ray's DAGNode ----------------------------------------------------------------
    def get_args(self) -> tuple:
        return self._bound_args

    def get_kwargs(self) -> dict:
        return dict(self._bound_kwargs)

    def get_options(self) -> dict:
        return dict(self._bound_options)

    def get_other_args_to_resolve(self) -> dict:
        return dict(self._bound_other_args_to_resolve)

    def get_stable_uuid(self) -> str:
        return self._stable_uuid

    def _get_all_child_nodes(self) -> list[DAGNode]:
        """The nodes this one depends on directly (also those nested in containers)."""
        found: list[DAGNode] = []
        _find([self._bound_args, self._bound_kwargs, self._bound_other_args_to_resolve], found)
        return found

    def __getattr__(self, name: str) -> Any:
        if name == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self).__name__}")
        if name == "remote":
            raise AttributeError(f".remote() cannot be used on {type(self).__name__}. To run "
                                 "the calls of this node's DAG, use .execute().")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")


def _find(value: Any, found: list[DAGNode]) -> None:
    if isinstance(value, DAGNode):
        if not any(value is n for n in found):
            found.append(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _find(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _find(item, found)


class _Execution:
    """One execute(): the input, and each node's result once computed."""

    def __init__(self, args: tuple, kwargs: dict) -> None:
        self.args, self.kwargs = args, kwargs
        self.results: dict[str, Any] = {}
        self.input_node: DAGNode | None = None

    def value(self, node: DAGNode) -> Any:
        key = node._stable_uuid
        if key not in self.results:
            args = self.replace(node._bound_args)
            kwargs = self.replace(node._bound_kwargs)
            other = self.replace(node._bound_other_args_to_resolve)
            self.results[key] = node._execute_impl(self, args, kwargs, other)
        return self.results[key]

    def replace(self, value: Any) -> Any:
        """`value` with the nodes in it replaced by their results."""
        if isinstance(value, DAGNode):
            return self.value(value)
        if isinstance(value, list):
            return [self.replace(v) for v in value]
        if isinstance(value, tuple):
            items = [self.replace(v) for v in value]
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
        if isinstance(value, dict):
            return type(value)((k, self.replace(v)) for k, v in value.items())
        if isinstance(value, (set, frozenset)):
            return type(value)(self.replace(v) for v in value)
        return value
