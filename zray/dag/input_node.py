"""InputNode: what a DAG's execute() is given, and InputAttributeNode: a part of it
(`inp[0]`, `inp["key"]`, `inp.name`), as ray.dag.InputNode."""
from __future__ import annotations

from typing import Any

from .dag_node import DAGNode, _Execution

__all__ = ["DAGInputData", "InputAttributeNode", "InputNode"]


class InputNode(DAGNode):
    """The input of a DAG; made in a `with` block, one per DAG.

    >>> with InputNode() as inp:
    ...     dag = add.bind(inp[0], inp.y)
    >>> zray.get(dag.execute(1, y=2))
    3

    execute(v) with one positional argument gives v itself (so `inp[0]`, `inp["k"]`
    and `inp.k` index, look up or read an attribute of v); with several arguments or
    keywords, `inp[i]` is the i-th positional one and `inp["k"]` / `inp.k` keyword k.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise ValueError("InputNode should not take any args or kwargs: give the input "
                             "to the DAG's .execute()")
        super().__init__((), {}, {})
        self._in_context = False
        self._attribute_nodes: dict = {}

    def __enter__(self) -> InputNode:
        self._in_context = True
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __getitem__(self, key: int | str) -> InputAttributeNode:
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise TypeError(f"index a DAG's input with an int or a str, not {type(key).__name__}")
        return self._attribute(key, "__getitem__")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("bind", "remote"):
            return super().__getattr__(name)
        return self._attribute(name, "__getattr__")

    def _attribute(self, key: int | str, how: str) -> InputAttributeNode:
        nodes = self.__dict__.setdefault("_attribute_nodes", {})
        if (key, how) not in nodes:
            nodes[(key, how)] = InputAttributeNode(self, key, how)
        return nodes[(key, how)]

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        if not self._in_context:
            raise ValueError("An InputNode must be made in a `with InputNode() as inp:` block "
                             "that builds its DAG.")
        if run.input_node is None:
            run.input_node = self
        elif run.input_node is not self:
            raise ValueError("Each DAG should only have one unique InputNode.")
        if len(run.args) == 1 and not run.kwargs:
            return run.args[0]
        if not run.args and not run.kwargs:
            raise ValueError("This DAG has an InputNode: give its input to .execute(...)")
        return DAGInputData(*run.args, **run.kwargs)

    def __str__(self) -> str:
        return "InputNode()"


class InputAttributeNode(DAGNode):
    """One part of a DAG's input: inp[key] (how "__getitem__") or inp.key ("__getattr__")."""

    def __init__(self, dag_input_node: InputNode, key: int | str, accessor_method: str) -> None:
        super().__init__((), {}, {}, {"dag_input_node": dag_input_node})
        self._key = key
        self._accessor_method = accessor_method

    @property
    def key(self) -> int | str:
        return self._key

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        data = other["dag_input_node"]
        if isinstance(data, DAGInputData) or isinstance(self._key, int) \
                or self._accessor_method == "__getitem__":
            return data[self._key]
        return getattr(data, self._key)

    def __str__(self) -> str:
        return f"InputNode()[{self._key!r}]"


class DAGInputData:
    """The input of an execute() given several arguments: [i] is the i-th positional
    one, ["k"] (and .k) keyword k."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise ValueError("Please only use int index or str as first-level key to access "
                         "fields of dag input.")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._kwargs[name]
        except KeyError:
            raise AttributeError(f"the DAG's input has no keyword argument {name!r}") from None
