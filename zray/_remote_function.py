"""@remote on functions: RemoteFunction, .options(), .remote()."""
from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any

from . import _options, _runtime_env, _strategies
from . import _protocol as P
from . import _serialization as S
from ._context import runtime_or_init
from ._generator import open_stream


class RemoteFunction:
    """A function that runs as a task: `f.remote(*args)` returns ObjectRef(s) at once.

    >>> @zray.remote
    ... def add(a, b): return a + b
    >>> zray.get(add.remote(1, 2))
    3
    """

    def __init__(self, function: Callable, options: dict) -> None:
        if inspect.iscoroutinefunction(function):   # (ValueError: Ray's type for it)
            raise ValueError(f"'{function.__qualname__}' is an async function: 'async def' cannot "
                             "be a remote function. Wrap it (def f(): return asyncio.run(g())), or "
                             "use an async actor for coroutines.")
        if inspect.isasyncgenfunction(function):
            raise TypeError(f"'{function.__qualname__}' is an async generator; remote functions "
                            "must be plain functions or generators (use an async actor's method "
                            "for an async generator).")
        self._function = function
        self._options = _options.check(dict(options), _options.TASK_OPTIONS,
                                       f"remote function {function.__qualname__}")
        self._generator = inspect.isgeneratorfunction(function)
        _check_generator(self._options, self._generator)
        self._name = getattr(function, "__qualname__", repr(function))
        self._signature = _signature(function)
        self._func_id: bytes | None = None
        self._blob: bytes | None = None
        self._prepared: tuple | None = None   # of self._options, made on first use
        self._user_of: Any = None   # a weakref to the submitter that counts this one's use
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = f"{getattr(self._function, '__module__', None) or '__main__'}.{self._name}"
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{name}()', try '{name}.remote()'.")

    def __reduce__(self):
        return (RemoteFunction, (self._function, self._options))

    def options(self, **options: Any) -> _Bound:
        """This function with some options changed, for the next .remote() call."""
        merged = {**self._options, **options}
        _options.check(merged, _options.TASK_OPTIONS, f"remote function {self._name}")
        _check_generator(merged, self._generator)
        return _Bound(self, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        if self._prepared is None:
            self._prepared = self._prepare(self._options)
        return self._remote(args, kwargs, self._prepared)

    def _prepare(self, options: dict) -> tuple:
        """What a task spec needs of a set of options, worked out once per set."""
        retry_exc = options.get("retry_exceptions", False)
        if isinstance(retry_exc, (list, tuple)):
            retry_exc = S.dumps(list(retry_exc))[0]
        res = _strategies.apply(_options.resources_of(options, 1),
                                options.get("scheduling_strategy"), f"remote function {self._name}")
        nret = _options.wire_nret(options.get("num_returns", "streaming" if self._generator else 1),
                                  options)
        return (res, nret, options.get("max_retries", 3), retry_exc, options.get("name") or self._name,
                _runtime_env.validate(options.get("runtime_env"), f"remote function {self._name}"),
                options.get("scheduling_strategy") is None)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call for a DAG (zray.dag): a FunctionNode that calls .remote() with
        these arguments at the DAG's .execute()."""
        return self._bind(args, kwargs, {})

    def _bind(self, args: tuple, kwargs: dict, options: dict) -> Any:
        from .dag.function_node import FunctionNode
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"wrong arguments for remote function {self._name}: {exc}") from None
        return FunctionNode(self, args, kwargs, options)

    def _ensure_pickled(self) -> tuple[bytes, bytes]:
        func_id, blob = self._func_id, self._blob   # set together, once
        if func_id is None or blob is None:
            try:
                func_id, blob = S.dumps_function(self._function)
            except Exception as exc:
                raise TypeError(S.describe_pickling_error(
                    f"the remote function {self._name}", self._function, exc)) from exc
            S.check_function_size(self._function, len(blob), f"remote function {self._name}")
            self._func_id, self._blob = func_id, blob
        return func_id, blob

    def _remote(self, args: tuple, kwargs: dict, prepared: tuple) -> Any:
        rt = runtime_or_init()
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"wrong arguments for remote function {self._name}: {exc}") from None
        func_id, blob = self._ensure_pickled()
        submitter = rt.submitter
        if self._user_of is None or self._user_of() is not submitter:   # once per runtime
            self._user_of = weakref.ref(submitter)
            submitter.use_function(func_id, self)   # its blob goes when this one does
        submitter.ensure_function(func_id, blob)
        res, nret, retries, retry_exc, name, renv, inherit = prepared
        if inherit and rt.kind != "driver":   # (a driver is in no placement group)
            res = _strategies.inherited(res)
        task_id = rt.ids.task_id()
        oids = [P.object_id(task_id, i) for i in range(nret if nret >= 0 else 1)]
        refs = rt.owner.new_refs(oids)
        args_blob, deps, held = rt.submitter.serialize_args(args, kwargs, f"remote function {self._name}")
        spec = P.task_spec(task_id, rt.ident, func_id, args_blob, nret, res, retries, retry_exc,
                           name, rt.job if renv is None else _runtime_env.job_for(rt, renv))
        rt.owner.keep(task_id, self)   # lives until its tasks are done (they need its blob)
        out = open_stream(rt, task_id, nret, refs[0]) if nret < 0 else None
        rt.submitter.submit(spec, deps, held, oids)
        if nret == 1:
            return refs[0]
        return out if nret < 0 else None if nret == 0 else refs


class _Bound:
    """A RemoteFunction with options set by .options()."""

    def __init__(self, fn: RemoteFunction, options: dict) -> None:
        self._fn, self._options = fn, options
        self._prepared = fn._prepare(options)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._remote(args, kwargs, self._prepared)

    def options(self, **options: Any) -> _Bound:
        return self._fn.options(**{**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._bind(args, kwargs, self._options)


def _check_generator(options: dict, generator: bool) -> None:
    n = options.get("num_returns")
    if n in ("streaming", "dynamic") and not generator:
        raise ValueError(f"num_returns={n!r} can only be used with generator functions (functions "
                         "that use 'yield'). The decorated function is not a generator function.")


def _signature(function: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None
