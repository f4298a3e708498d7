"""@remote on classes: ActorClass, ActorHandle, ActorMethod; exit_actor (as ray.actor).

An actor is a worker process holding one instance. Its handle pickles, so it can
be passed to tasks and other actors; a non-detached actor ends when no handle to
it is left anywhere (the handle holds a ref to a lifetime token its creator owns).
"""
from __future__ import annotations

import inspect
from typing import Any

from . import _concurrency, _options, _runtime_env, _strategies
from . import _protocol as P
from . import _serialization as S
from ._context import ActorExit, current_context, runtime_or_init, worker_host
from ._generator import open_stream
from ._object_ref import ObjectRef
from .exceptions import ActorAlreadyExistsError, ActorClassInheritanceException

__all__ = ["ActorClass", "ActorClassInheritanceException", "ActorHandle", "ActorMethod",
           "exit_actor", "method"]


def method(*args: Any, **options: Any) -> Any:
    """Set options of one actor method: `@zray.method(num_returns=2)`."""
    if args and callable(args[0]) and len(args) == 1 and not options:
        return args[0]
    if args:
        raise TypeError("use @zray.method(num_returns=...) with keyword arguments only")
    _options.check(options, _options.METHOD_OPTIONS, "zray.method")

    def deco(fn):
        fn.__zray_method_options__ = options
        return fn
    return deco


_NOT_CALLS = frozenset({"__init__", "__new__", "__del__", "__getattr__", "__getattribute__",
                        "__setattr__", "__delattr__", "__getstate__", "__setstate__",
                        "__reduce__", "__reduce_ex__", "__init_subclass__"})


def _method_table(cls: type) -> tuple[dict, bool]:
    methods, is_async = {}, False
    for name, member in inspect.getmembers(cls):
        fn = member
        if isinstance(inspect.getattr_static(cls, name, None), (staticmethod, classmethod)):
            fn = member
        elif not (inspect.isfunction(member) or inspect.ismethoddescriptor(member)):
            continue
        # As Ray: every method, _private ones and the dunders the class defines itself
        # (__call__, __len__, ...) too; not object's, nor the instance's plumbing.
        if name.startswith("__") and (not inspect.isfunction(member) or name in _NOT_CALLS):
            continue
        opts = getattr(fn, "__zray_method_options__", {})
        if "num_returns" not in opts and (inspect.isgeneratorfunction(fn)
                                          or inspect.isasyncgenfunction(fn)):
            opts = {**opts, "num_returns": "streaming"}   # as in Ray
        methods[name] = opts
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            is_async = True
    return methods, is_async


class ActorClass:
    """A class made remote: `Cls.remote(*args)` creates an actor and returns its handle."""

    # type[Any], not type: mypy reads cls.__init__ off a bare `type` as an instance's
    # (unsound); here it is the class's own, unbound, whose signature checks arguments.
    def __init__(self, cls: type[Any], options: dict) -> None:
        self._cls = cls
        self._name = cls.__name__
        self._options = _options.check(dict(options), _options.ACTOR_OPTIONS, f"actor class {self._name}")
        self._methods, self._is_async = _method_table(cls)
        self._groups = _concurrency.check_groups(self._options.get("concurrency_groups"),
                                                 self._methods, f"actor class {self._name}")
        self._init_sig: inspect.Signature | None
        try:   # (no __init__ of its own: it takes no arguments, as Ray checks)
            self._init_sig = inspect.signature(
                cls.__init__ if cls.__init__ is not object.__init__ else _no_init)
        except (TypeError, ValueError):
            self._init_sig = None
        self._class_id: bytes | None = None
        self._blob: bytes | None = None
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{self._name}()', "
                        f"use '{self._name}.remote()'.")

    def __reduce__(self):
        return (ActorClass, (self._cls, self._options))

    def __mro_entries__(self, bases: tuple) -> tuple:
        # `class Sub(Actor)` with Actor a @remote class: as Ray, say what to do instead.
        raise ActorClassInheritanceException(
            f"Attempted to define a subclass of actor class {self._name!r}. Inheriting from "
            "actor classes is not supported: inherit from the plain class and make the "
            "subclass an actor class with @remote.")

    def options(self, **options: Any) -> _BoundClass:
        if "concurrency_groups" in options:   # (as Ray: fixed by the class's @remote)
            raise ValueError("Setting 'concurrency_groups' is not supported in '.options()'.")
        merged = {**self._options, **options}
        _options.check(merged, _options.ACTOR_OPTIONS, f"actor class {self._name}")
        return _BoundClass(self, merged)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._remote(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy actor creation for a DAG (zray.dag): a ClassNode; each execute() of
        its DAG creates an actor with these arguments."""
        return self._bind(args, kwargs, {})

    def _bind(self, args: tuple, kwargs: dict, options: dict) -> Any:
        from .dag.class_node import ClassNode
        if self._init_sig is not None:
            try:
                self._init_sig.bind(None, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"wrong arguments for {self._name}.__init__: {exc}") from None
        return ClassNode(self, args, kwargs, options)

    def _remote(self, args: tuple, kwargs: dict, options: dict) -> ActorHandle:
        rt = runtime_or_init()
        if self._init_sig is not None:
            try:
                self._init_sig.bind(None, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"wrong arguments for {self._name}.__init__: {exc}") from None
        if self._class_id is None:
            try:
                class_id, blob = S.dumps_function(self._cls)
            except Exception as exc:
                raise TypeError(S.describe_pickling_error(
                    f"the actor class {self._name}", self._cls, exc)) from exc
            S.check_function_size(self._cls, len(blob), f"actor class {self._name}")
            self._class_id, self._blob = class_id, blob
        rt.submitter.ensure_function(self._class_id, self._blob)
        job = _job_of(rt, options, self._name)   # (its directories packed, or the error)
        task_id = rt.ids.task_id()
        actor_id = P.object_id(task_id, 0xFFFFFFFF)
        name = options.get("name")
        if name == "":   # (checked here, as Ray does: options may still name it)
            raise ValueError(f"An actor's name cannot be an empty string (actor class {self._name}).")
        namespace = options.get("namespace") or rt.namespace
        # (JobConfig(default_actor_lifetime=...) of the driver, unless lifetime= says)
        detached = (options.get("lifetime") or rt.info.get("default_actor_lifetime")) == "detached"
        meta = {"class_name": self._name, "methods": self._methods, "is_async": self._is_async,
                "max_task_retries": options.get("max_task_retries", 0)}
        if self._groups:   # (to its host with its arguments; named in its handle)
            meta["concurrency_groups"] = sorted(self._groups)
            kwargs = {**kwargs, _concurrency.KWARG: self._groups}
        token = rt.owner.new_actor_token(actor_id, not detached)
        handle = ActorHandle(actor_id, token, meta)
        if name:
            try:
                created, existing = rt.head_call("register_actor", [
                    actor_id, name, namespace, S.dumps(handle)[0], bool(options.get("get_if_exists"))])
            except ValueError as exc:   # the name is taken (Ray's type for it)
                rt.owner.disown_actor_token(actor_id)
                raise ActorAlreadyExistsError(str(exc)) from None
            if not created:
                rt.owner.disown_actor_token(actor_id)
                return S.loads(existing)
        res = _options.resources_of(options, 0)
        if options.get("num_cpus") is None:
            res["_default_cpu"] = 1.0
        strategy = options.get("scheduling_strategy")
        res = _strategies.apply(res, strategy, f"actor {self._name}")
        if strategy is None and rt.kind != "driver":
            res = _strategies.inherited(res)
        concurrency = options.get("max_concurrency")
        if concurrency is None:
            concurrency = 1000 if self._is_async else 1
        args_blob, deps, held = rt.submitter.serialize_args(args, kwargs, f"{self._name}.__init__")
        spec = P.actor_spec(actor_id, rt.ident, self._class_id, args_blob, res,
                            options.get("max_restarts", 0), options.get("max_task_retries", 0),
                            concurrency, name, namespace, detached, self._is_async, self._name,
                            bool(options.get("get_if_exists")), job)
        rt.submitter.create_actor(spec, deps, held)
        return handle


class _BoundClass:
    def __init__(self, cls: ActorClass, options: dict) -> None:
        self._cls, self._options = cls, options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._cls._remote(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundClass:
        return self._cls.options(**{**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return self._cls._bind(args, kwargs, self._options)


class ActorHandle:
    """A handle to an actor: `handle.method.remote(*args)` queues a call."""

    def __init__(self, actor_id: bytes, token: ObjectRef | None, meta: dict) -> None:
        self._actor_id = actor_id
        self._token = token
        self._meta = meta

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_"):
            if name in ("__ray_ready__", "__ray_terminate__"):   # every actor has them
                return ActorMethod(self, name, {})
            # (read without __getattr__: unpickling asks for names before _meta is set)
            meta = self.__dict__.get("_meta")
            opts = meta["methods"].get(name) if meta is not None else None
            if opts is None:
                raise AttributeError(name)
            return ActorMethod(self, name, opts)
        opts = self._meta["methods"].get(name)
        if opts is None:
            raise AttributeError(f"'{self._meta['class_name']}' actor has no method '{name}'")
        # A fresh bound method each time, as Ray does: caching it on the handle made a
        # handle <-> method cycle, so a dropped handle (and its actor) lived until the
        # cyclic GC ran, which in a worker may be never.
        return ActorMethod(self, name, opts)

    def __reduce__(self):
        token = self._token if self._token is not None else _own_token(self._actor_id)
        return (ActorHandle, (self._actor_id, token, self._meta))

    def __repr__(self) -> str:
        return f"Actor({self._meta['class_name']}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _actor_id_hex(self) -> str:
        return self._actor_id.hex()


class ActorMethod:
    """One method of an actor handle: `.remote(*args)` and `.options(num_returns=..)`."""

    def __init__(self, handle: ActorHandle, name: str, options: dict) -> None:
        self._handle, self._name, self._options = handle, name, options
        self._qualname = f"{handle._meta['class_name']}.{name}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'{self._qualname}()', try '{self._qualname}.remote()'.")

    def options(self, **options: Any) -> ActorMethod:
        _options.check(options, _options.METHOD_OPTIONS, f"actor method {self._qualname}")
        if "concurrency_group" in options:
            _concurrency.check_call(options["concurrency_group"],
                                    self._handle._meta.get("concurrency_groups"), self._qualname)
        return ActorMethod(self._handle, self._name, {**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call for a DAG (zray.dag): a ClassMethodNode (a tuple of them, one per
        result, if num_returns > 1) that calls .remote() at the DAG's .execute()."""
        from .dag.class_node import bind_actor_method
        return bind_actor_method(self._handle, self._name, self._options, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        rt = runtime_or_init()
        h = self._handle
        opts = self._options
        nret = opts.get("num_returns", 1)
        if type(nret) is not int:   # a generator method
            nret = _options.wire_nret(nret, opts)
        task_id = rt.ids.task_id()
        oids = [P.object_id(task_id, i) for i in range(nret if nret >= 0 else 1)]
        refs = rt.owner.new_refs(oids)
        args_blob, deps, held = rt.submitter.serialize_args(args, kwargs, self._qualname)
        retry_exc = opts.get("retry_exceptions", False)
        if isinstance(retry_exc, (list, tuple)):
            retry_exc = S.dumps(list(retry_exc))[0]
        retries = opts.get("max_task_retries", h._meta.get("max_task_retries", 0))
        spec = P.task_spec(task_id, rt.ident, b"", args_blob, nret, {}, retries, retry_exc,
                           opts.get("name") or self._qualname, rt.job, h._actor_id,
                           _concurrency.call_method(self._name, opts.get("concurrency_group")))
        rt.owner.keep(task_id, h._token)   # the actor lives until this call is done
        out = open_stream(rt, task_id, nret, refs[0]) if nret < 0 else None
        rt.submitter.submit(spec, deps, held, oids)
        if nret == 1:
            return refs[0]
        return out if nret < 0 else None if nret == 0 else refs


def _no_init(self: Any) -> None:
    """Stands for object.__init__ in an actor class's signature check."""


def _job_of(rt: Any, options: dict, name: str) -> list:
    """The job field of an actor's creation: with its runtime_env, if it has one."""
    renv = _runtime_env.validate(options.get("runtime_env"), f"actor {name}")
    return rt.job if renv is None else _runtime_env.job_for(rt, renv)


def _own_token(actor_id: bytes) -> ObjectRef | None:
    """The lifetime token of the actor this process hosts, as a ref of this process:
    its handle from get_runtime_context().current_actor has none (held by the actor
    itself it must not keep it alive), but passed on it keeps it alive as any handle."""
    spec = getattr(worker_host(), "spec", None)
    if spec is None or spec[P.A_ID] != actor_id:
        return None
    return runtime_or_init().owner.adopt_ref(actor_id, spec[P.A_OWNER])


def exit_actor() -> None:
    """End the current actor after this call (from inside an actor method)."""
    ctx = current_context()
    if ctx is None or ctx.actor_id is None:
        raise TypeError("exit_actor() may only be called inside an actor method")
    raise ActorExit()
