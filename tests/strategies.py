"""Hypothesis strategies shared by the pure tests: wire values, messages, and lists
shaped like task and actor specs (right length, fields often right, often not)."""
from __future__ import annotations

from hypothesis import strategies as st

from zray import _protocol as P

_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
            | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=40))
# Everything a field may hold: msgpack's data model (map keys that survive a round trip).
values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=5)
                   | st.dictionaries(st.text(max_size=8) | st.integers(-1000, 1000) | st.binary(max_size=8),
                                     inner, max_size=5)),
    max_leaves=25)

message_types = st.sampled_from(sorted(P._ARITY))


@st.composite
def messages(draw):
    mtype = draw(message_types)
    return mtype, draw(st.lists(values, min_size=P._ARITY[mtype], max_size=P._ARITY[mtype]))


_field = values | st.binary(min_size=16, max_size=16) | st.integers(-2, 3)
_amounts = st.dictionaries(st.sampled_from(["CPU", "GPU", "x"]) | st.text(max_size=2) | st.integers(0, 3),
                           st.floats() | st.integers(-2, 3) | _scalars, max_size=3)


@st.composite
def spec_like(draw, n: int, id_at: int, res_at: int):
    """A list of n random fields, with an id and a resource map where a spec has them."""
    spec = draw(st.lists(_field, min_size=n, max_size=n))
    spec[id_at] = draw(st.binary(min_size=16, max_size=16) | _field)
    spec[1] = draw(st.just(b"owner") | _field)
    spec[res_at] = draw(_amounts | _field)
    return spec


# Resource maps check_task accepts: names a node may or may not have, amounts >= 0.
resource_maps = st.dictionaries(st.sampled_from(["CPU", "GPU", "x", "memory", "_default_cpu", "nope"]),
                                st.sampled_from([0, 0.5, 1, 2, 3]) | st.floats(0, 1e9), max_size=4)


@st.composite
def near_task_specs(draw):
    """A valid task spec with a few fields replaced by anything: about half still pass
    check_task (a spec_like almost never does), so that what the node accepts reaches
    the scheduler."""
    spec = P.task_spec(draw(st.binary(min_size=16, max_size=16)), b"owner", b"f" * 16, b"",
                       draw(st.integers(0, 3)), draw(resource_maps), draw(st.integers(-1, 3)),
                       draw(st.booleans()), "task", draw(st.none() | st.just(["job", "ns"])))
    for at in draw(st.lists(st.integers(0, P.TASK_FIELDS - 1), max_size=2)):
        spec[at] = draw(_field)
    return spec


@st.composite
def near_actor_specs(draw):
    """A valid actor spec with a few fields replaced by anything (see near_task_specs)."""
    spec = P.actor_spec(draw(st.binary(min_size=16, max_size=16)), b"owner", b"c" * 16, b"",
                        draw(resource_maps), draw(st.integers(-1, 2)), draw(st.integers(-1, 2)),
                        draw(st.integers(1, 4)), None, "ns", draw(st.booleans()), False, "Cls",
                        False, None)
    for at in draw(st.lists(st.integers(0, P.ACTOR_FIELDS - 1), max_size=2)):
        spec[at] = draw(_field)
    return spec
