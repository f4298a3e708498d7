"""ClassNode (`Cls.bind(*args)`: an actor to create at execute()) and ClassMethodNode
(`class_node.method.bind(...)` or `handle.method.bind(...)`: an actor call)."""
from __future__ import annotations

from typing import Any

from .dag_node import DAGNode, _Execution
from .input_node import InputNode

__all__ = ["ClassMethodNode", "ClassNode"]

PARENT_CLASS_NODE_KEY = "parent_class_node"
PREV_CLASS_METHOD_CALL_KEY = "prev_class_method_call"
IS_CLASS_METHOD_OUTPUT_KEY = "is_class_method_output"


class ClassNode(DAGNode):
    """An actor class bound to its constructor's arguments. Each execute() creates a
    new actor (execute() on the class node itself returns its handle). Method calls
    bound on it run in the order they were bound: executing one first makes the calls
    bound before it, as Ray does."""

    def __init__(self, cls: Any, cls_args: tuple, cls_kwargs: dict, cls_options: dict,
                 other_args_to_resolve: dict | None = None) -> None:
        self._body = cls           # the ActorClass
        self._last_call: ClassMethodNode | None = None
        super().__init__(cls_args, cls_kwargs, cls_options, other_args_to_resolve)
        if any(isinstance(n, InputNode) for n in self._get_all_child_nodes()):
            raise ValueError("InputNode handles user dynamic input the DAG, and cannot be used "
                             "as args, kwargs, or other_args_to_resolve in ClassNode constructor "
                             "because it is not available at class construction or binding time.")

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        cls = self._body.options(**self._bound_options) if self._bound_options else self._body
        return cls.remote(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "remote":
            return super().__getattr__(name)
        methods = getattr(self.__dict__.get("_body"), "_methods", {})
        if name not in methods:
            if name == "bind":
                return super().__getattr__(name)
            raise AttributeError(f"'{self._body.__name__}' actor class has no method '{name}'")
        return _UnboundClassMethodNode(self, name, {})

    def __str__(self) -> str:
        return f"ClassNode({self._body.__name__})"


class _UnboundClassMethodNode:
    """`class_node.method`: becomes a ClassMethodNode with .bind(...)."""

    def __init__(self, actor: ClassNode, method_name: str, options: dict) -> None:
        self._actor, self._method_name, self._options = actor, method_name, options

    def bind(self, *args: Any, **kwargs: Any) -> ClassMethodNode:
        node = ClassMethodNode(self._method_name, args, kwargs, self._options, {
            PARENT_CLASS_NODE_KEY: self._actor,
            PREV_CLASS_METHOD_CALL_KEY: self._actor._last_call})
        self._actor._last_call = node
        return node

    def options(self, **options: Any) -> _UnboundClassMethodNode:
        return _UnboundClassMethodNode(self._actor, self._method_name, options)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(".remote() cannot be used on ClassMethodNodes. Use .bind() instead "
                             "to express an symbolic actor call.")


class ClassMethodNode(DAGNode):
    """An actor method call: its actor is a ClassNode (created at execute()) or a live
    actor handle. With IS_CLASS_METHOD_OUTPUT_KEY it is instead one of the results of a
    call with num_returns > 1 (args: (that call's node, index))."""

    def __init__(self, method_name: str, method_args: tuple, method_kwargs: dict,
                 method_options: dict, other_args_to_resolve: dict) -> None:
        self._method_name = method_name
        self._is_output = bool(other_args_to_resolve.get(IS_CLASS_METHOD_OUTPUT_KEY, False))
        super().__init__(method_args, method_kwargs, method_options, other_args_to_resolve)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict, other: dict) -> Any:
        if self._is_output:
            refs, index = args
            return refs[index]
        method = getattr(other[PARENT_CLASS_NODE_KEY], self._method_name)
        if self._bound_options:
            method = method.options(**self._bound_options)
        return method.remote(*args, **kwargs)

    def get_method_name(self) -> str:
        return self._method_name

    @property
    def is_class_method_call(self) -> bool:
        return not self._is_output

    @property
    def is_class_method_output(self) -> bool:
        return self._is_output

    def __str__(self) -> str:
        return f"ClassMethodNode({self._method_name}())"


def bind_actor_method(handle: Any, method_name: str, options: dict, args: tuple,
                      kwargs: dict) -> ClassMethodNode | tuple[ClassMethodNode, ...]:
    """`handle.method.bind(...)` on a live actor: a node, or a tuple of one node per
    result if the method has num_returns > 1 (as Ray's)."""
    node = ClassMethodNode(method_name, args, kwargs, options, {PARENT_CLASS_NODE_KEY: handle,
                                                                 PREV_CLASS_METHOD_CALL_KEY: None})
    nret = options.get("num_returns", 1)
    if not isinstance(nret, int) or nret <= 1:
        return node
    return tuple(ClassMethodNode(f"return_idx_{i}", (node, i), {}, {},
                                 {IS_CLASS_METHOD_OUTPUT_KEY: True, PARENT_CLASS_NODE_KEY: handle})
                 for i in range(nret))
