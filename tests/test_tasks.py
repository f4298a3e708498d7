"""Tasks and futures on a real embedded cluster."""
from __future__ import annotations

import pytest

import zray
from zray.exceptions import GetTimeoutError, RayTaskError


@zray.remote
def double(x):
    return x * 2


@zray.remote
def fail(msg):
    raise ValueError(msg)


def test_task_result(shared):
    assert zray.get(double.remote(21)) == 42


def test_get_list_keeps_order(shared):
    refs = [double.remote(i) for i in range(200)]
    assert zray.get(refs) == [2 * i for i in range(200)]


def test_error_is_both_types_with_remote_traceback(shared):
    with pytest.raises(ValueError) as info:
        zray.get(fail.remote("boom"))
    err = info.value
    assert isinstance(err, RayTaskError)
    assert isinstance(err.cause, ValueError) and err.cause.args == ("boom",)
    assert "raise ValueError(msg)" in str(err)
    assert err.__cause__ is err.cause


def test_top_level_ref_is_resolved_nested_stays_ref(shared):
    @zray.remote
    def kinds(a, b, c=None):
        return type(a).__name__, type(b[0]).__name__, type(c).__name__

    r = zray.put(3)
    assert zray.get(kinds.remote(r, [r], c=r)) == ("int", "ObjectRef", "int")


def test_get_timeout(shared):
    @zray.remote
    def sleeper():
        import time
        time.sleep(3)

    with pytest.raises(GetTimeoutError) as info:
        zray.get(sleeper.remote(), timeout=0.2)
    assert isinstance(info.value, TimeoutError)
