"""Property tests of the peer frame decoders (issue 12, finding 3), no processes.

Random and adversarial bytes and values reach every decoder of :mod:`agentflow.cluster.peerwire`;
the only error any of them raises is :class:`FrameError`, what they return is typed, a declared
size never turns into an allocation of that size, and a sealed frame opens only unchanged, in
order, in its own direction.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentflow.cluster import peerwire
from agentflow.cluster.codec import FrameError, encode_message
from agentflow.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = b"k" * 32

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "shape": peerwire.check_shape,
    "unpack": peerwire.unpack_bounded,
    "hello": peerwire.decode_hello,
    "challenge": peerwire.decode_challenge,
    "sealed": peerwire.decode_sealed,
}


def _only_frame_errors(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except FrameError:
        return None


@pytest.mark.parametrize("name", sorted(DECODERS))
@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_frame_errors(name: str, data: bytes) -> None:
    _only_frame_errors(DECODERS[name], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@SETTINGS
@given(value=values)
def test_any_msgpack_value_raises_only_frame_errors(name: str, value: Any) -> None:
    _only_frame_errors(DECODERS[name], msgpack.packb(value, use_bin_type=True))


hello_fields = st.fixed_dictionaries(
    {
        "k": st.sampled_from(["hello", "challenge", 1]),
        "v": st.one_of(st.just(peerwire.VERSION), values),
        "cluster": st.one_of(st.just("agentflow"), values),
        "from": st.one_of(st.just("m2"), values),
        "to": st.one_of(st.just("m1"), values),
        "nonce": st.one_of(
            st.binary(min_size=16, max_size=16),
            st.integers(min_value=0, max_value=(1 << 64) - 1),
            values,
        ),
        "info": st.one_of(st.dictionaries(st.text(max_size=8), st.text(max_size=8)), values),
    }
)


@settings(SETTINGS, max_examples=60)
@given(fields=hello_fields)
def test_a_hello_is_refused_or_fully_typed(fields: dict[str, Any]) -> None:
    hello = _only_frame_errors(peerwire.decode_hello, msgpack.packb(fields, use_bin_type=True))
    if hello is None:
        return
    assert isinstance(hello, peerwire.Hello)
    assert type(hello.nonce) is bytes and len(hello.nonce) == 16
    assert all(type(x) is str for x in (hello.cluster, hello.from_, hello.to))
    assert all(type(k) is str and type(v) is str for k, v in hello.info.items())


# Headers that declare far more than follows: bin32, str32, array32, map32, and a nested chain.
HUGE = [
    b"\xc6\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xdd\x00\x01\x00\x00" * 64,
]


@pytest.mark.parametrize("name", sorted(DECODERS))
@SETTINGS
@given(header=st.sampled_from(HUGE), tail=st.binary(max_size=200))
def test_declared_sizes_are_never_allocated(name: str, header: bytes, tail: bytes) -> None:
    tracemalloc.start()
    try:
        _only_frame_errors(DECODERS[name], header + tail)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10, f"{peak} bytes traced for a {len(header + tail)}-byte input"


def test_a_frame_of_millions_of_containers_is_refused_before_unpacking() -> None:
    count = 1 << 21  # four times the value limit; the 16 MiB case runs in test_peer_limits
    data = b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count
    tracemalloc.start()
    try:
        with pytest.raises(FrameError, match="more than"):
            peerwire.decode_sealed(data)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


ids = st.text(min_size=1, max_size=12)
u63 = st.integers(min_value=0, max_value=(1 << 63) - 1)
entries = st.builds(
    Entry,
    term=u63,
    index=u63,
    type=st.sampled_from(list(EntryType)),
    data=st.binary(max_size=64),
)
snapshots = st.builds(
    Snapshot,
    metadata=st.builds(
        SnapshotMetadata,
        index=u63,
        term=u63,
        conf_state=st.builds(
            ConfState,
            voters=st.frozensets(ids, max_size=5),
            learners=st.frozensets(ids, max_size=3),
        ),
    ),
    data=st.binary(max_size=64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(list(MessageType)),
    from_=ids,
    to=ids,
    term=u63,
    log_term=u63,
    index=u63,
    entries=st.lists(entries, max_size=5).map(tuple),
    commit=u63,
    reject=st.booleans(),
    reject_hint=u63,
    snapshot=st.one_of(st.none(), snapshots),
    context=st.binary(max_size=16),
)


@SETTINGS
@given(batch=st.lists(messages, max_size=6))
def test_sealed_messages_arrive_unchanged(batch: list[Message]) -> None:
    sealer = peerwire.Sealer(KEY, peerwire.CLIENT)
    unsealer = peerwire.Unsealer(KEY, peerwire.CLIENT)
    frame = sealer.seal({"k": "msgs", "m": [encode_message(m) for m in batch]})
    opened = unsealer.open(frame[peerwire.LEN.size :])
    assert peerwire.decode_sealed(opened)["m"] == batch


@settings(SETTINGS, max_examples=40)
@given(raw=st.lists(values, min_size=12, max_size=12))
def test_a_message_of_wrong_types_is_refused(raw: list[Any]) -> None:
    body = msgpack.packb({"k": "msgs", "m": [raw]}, use_bin_type=True)
    decoded = _only_frame_errors(peerwire.decode_sealed, body)
    if decoded is not None:
        (msg,) = decoded["m"]
        assert isinstance(msg, Message) and type(msg.term) is int and msg.term >= 0


@SETTINGS
@given(
    bodies=st.lists(st.binary(min_size=1, max_size=64), min_size=2, max_size=5),
    flip=st.integers(min_value=0),
    mode=st.sampled_from(["flip", "truncate", "swap", "replay", "direction", "key"]),
)
def test_a_changed_replayed_or_reordered_frame_fails_its_mac(
    bodies: list[bytes], flip: int, mode: str
) -> None:
    sealer = peerwire.Sealer(KEY, peerwire.CLIENT)
    frames = [sealer.seal_bytes(b)[peerwire.LEN.size :] for b in bodies]
    direction, key = peerwire.CLIENT, KEY
    if mode == "flip":
        bit = flip % (len(frames[0]) * 8)
        changed = bytearray(frames[0])
        changed[bit // 8] ^= 1 << (bit % 8)
        frames[0] = bytes(changed)
    elif mode == "truncate":
        frames[0] = frames[0][: flip % len(frames[0])]
    elif mode == "swap":
        frames[0], frames[1] = frames[1], frames[0]
    elif mode == "replay":
        frames[1] = frames[0]
    elif mode == "direction":
        direction = peerwire.SERVER
    else:
        key = b"x" * 32
    unsealer = peerwire.Unsealer(key, direction)
    with pytest.raises(FrameError):
        for frame in frames:
            unsealer.open(frame)


@SETTINGS
@given(batch=st.lists(messages, max_size=6))
def test_the_senders_estimate_covers_what_the_receiver_counts(batch: list[Message]) -> None:
    body = msgpack.packb({"k": "msgs", "m": [encode_message(m) for m in batch]}, use_bin_type=True)
    estimate = 8 + sum(peerwire.message_count(m) for m in batch)
    peerwire.check_shape(body, max_objects=estimate)
