"""The wire protocol (zray._protocol), with Hypothesis: encode/decode round trips, and
every malformed header, frame or spec is rejected with ProtocolError, nothing else."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import messages, spec_like, values

from zray import _protocol as P
from zray.exceptions import ProtocolError


def test_every_message_type_is_named_and_numbered_once():
    assert set(P.NAMES) == set(P._ARITY)
    assert len(set(P.NAMES.values())) == len(P.NAMES)
    for number, name in P.NAMES.items():
        assert getattr(P, name) == number


@settings(max_examples=300, deadline=None)
@given(messages())
def test_round_trip(msg):
    mtype, fields = msg
    frame = P.encode(mtype, *fields)
    got_type, got_fields = P.decode(frame)
    assert got_type == mtype and type(got_type) is int
    assert got_fields == fields
    # Byte-identical re-encoding: bool stays bool, bytes stay bytes, str stays str.
    assert P.encode(got_type, *got_fields) == frame
    assert P.decode(memoryview(frame)) == (got_type, got_fields)


@pytest.mark.parametrize("mtype", sorted(P._ARITY), ids=lambda t: P.NAMES[t])
def test_wrong_arity_is_rejected(mtype):
    arity = P._ARITY[mtype]
    for n in {0, arity - 1, arity + 1} - {arity, -1}:
        with pytest.raises(ProtocolError, match="fields"):
            P.decode(P.encode(mtype, *([0] * n)))


@pytest.mark.parametrize("header", [
    [P.VERSION + 1, P.SUBMIT, []],            # a newer protocol
    [0, P.SUBMIT, []],
    ["1", P.SUBMIT, []],
    [P.VERSION, 99, 1],                        # unknown type
    [P.VERSION, -1],
    [P.VERSION, "3", []],
    [P.VERSION, 3.0, []],
    [P.VERSION, None, []],
    [P.VERSION],                               # too short
    [],
    {"v": 1},
    17,
    b"\x01\x03",
])
def test_bad_headers_are_rejected(header):
    with pytest.raises(ProtocolError):
        P.decode(msgpack.packb(header, use_bin_type=True))


@pytest.mark.parametrize("frame", [b"", b"\xc1", b"\x93\x01", b"\x93\x01\x03", b"\xdb\xff\xff\xff\xff",
                                   b"\xdd\xff\xff\xff\xff", b"\x92\x01\x03extra", b"\xa3\xff\xfe\xfd"])
def test_undecodable_frames_are_rejected(frame):
    with pytest.raises(ProtocolError):
        P.decode(frame)


def test_truncations_of_a_valid_frame_are_rejected():
    frame = P.encode(P.HELLO, "driver", 1234, b"job", {"namespace": "x", "log_to_driver": True})
    for n in range(len(frame)):
        with pytest.raises(ProtocolError):
            P.decode(frame[:n])


def _decode_or_protocol_error(frame) -> None:
    try:
        mtype, fields = P.decode(frame)
    except ProtocolError:
        return
    # Accepted: it must be a real message of the right shape.
    assert mtype in P._ARITY and len(fields) == P._ARITY[mtype]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_of_random_bytes_raises_only_protocol_error(frame):
    _decode_or_protocol_error(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=8) | values)
def test_decode_of_random_msgpack_raises_only_protocol_error(obj):
    _decode_or_protocol_error(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3) | values, min_size=2, max_size=8))
def test_decode_of_near_valid_headers_raises_only_protocol_error(obj):
    obj[0] = P.VERSION if obj[0] in (0, 1, 2, 3) else obj[0]  # often the right version
    _decode_or_protocol_error(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.data())
def test_corrupted_valid_frames_raise_only_protocol_error(noise, data):
    mtype, fields = data.draw(messages())
    frame = bytearray(P.encode(mtype, *fields))
    at = data.draw(st.integers(0, len(frame) - 1))
    frame[at:at + len(noise)] = noise
    _decode_or_protocol_error(bytes(frame))


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=16) | values | spec_like(P.TASK_FIELDS, P.T_ID, P.T_RES)
       | spec_like(P.ACTOR_FIELDS, P.A_ID, P.A_RES))
def test_check_task_and_actor_raise_only_protocol_error(spec):
    for check in (P.check_task, P.check_actor):
        try:
            assert check(spec) is spec
        except ProtocolError:
            pass
