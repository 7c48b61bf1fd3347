"""Property tests of the decoding layer (finding 6): random and adversarial JSON texts and socket
frames either decode to a value that survives strict JSON and the log's 64-bit integers, or are
refused with the one error type (ClientError, 400/422) and nothing else."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow import jsonbound
from agentflow.api.decoding import CLOSE_BINARY, CLOSE_INVALID, FrameError, receive_frame
from agentflow.errors import ClientError, ValidationError

SETTINGS = settings(max_examples=300, deadline=None)

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1 << 63, (1 << 63) - 1, -(1 << 63), -(1 << 63) - 1, 1 << 64]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
tokens = st.sampled_from(
    [
        *("NaN", "Infinity", "-Infinity", "1e999", "-1e999", str(1 << 64), "9" * 30, "1.5e-400"),
        *("[", "]", "{", "}", ",", ":", '"\\ud800"', '"a"', "null", "0", "-0", "\x00", "\ufeff"),
    ]
)
adversarial = st.lists(tokens, max_size=40).map("".join)


def _strict_round_trip(value: Any) -> None:
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    assert json.loads(text) == value
    jsonbound.check_value(value)


def _decoded_or_refused(text: str | bytes) -> None:
    try:
        value = jsonbound.loads(text)
    except ClientError:
        return
    _strict_round_trip(value)


@SETTINGS
@given(values)
def test_any_json_value_decodes_strictly_or_is_refused(value: Any) -> None:
    _decoded_or_refused(json.dumps(value, allow_nan=True))


@SETTINGS
@given(st.one_of(adversarial, st.text(max_size=200)))
def test_any_text_decodes_strictly_or_is_refused(text: str) -> None:
    _decoded_or_refused(text)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_decode_strictly_or_are_refused(data: bytes) -> None:
    _decoded_or_refused(data)


@SETTINGS
@given(values)
def test_check_value_accepts_exactly_what_strict_json_carries(value: Any) -> None:
    try:
        jsonbound.check_value(value)
    except ValidationError:
        return
    _strict_round_trip(value)


@SETTINGS
@given(st.one_of(values, st.binary(), st.lists(st.binary())))
def test_answers_are_always_strict_json(value: Any) -> None:
    text = jsonbound.dumps(value)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in an answer"))


@pytest.mark.parametrize(
    "text", ["NaN", '{"a": Infinity}', "[-Infinity]", "1e999", str(1 << 64), str(-(1 << 63) - 1)]
)
def test_non_finite_and_oversized_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        jsonbound.loads(text)


def test_limits_hold_at_their_edges() -> None:
    assert jsonbound.loads(str(jsonbound.INT64_MAX)) == jsonbound.INT64_MAX
    assert jsonbound.loads(str(jsonbound.INT64_MIN)) == jsonbound.INT64_MIN
    nested = "[" * jsonbound.MAX_DEPTH + "]" * jsonbound.MAX_DEPTH
    assert jsonbound.loads(nested) is not None
    with pytest.raises(ValidationError):
        jsonbound.loads("[" + nested + "]")
    with pytest.raises(ValidationError):
        jsonbound.loads("[" * 200_000 + "]" * 200_000)  # deeper than the interpreter recurses
    with pytest.raises(ValidationError):
        jsonbound.loads("9" * 5000)  # past int()'s own digit limit: still a 422, not a crash


def test_stored_values_are_answered_not_failed() -> None:
    stored = {"nan": math.nan, "inf": -math.inf, "big": 1 << 70, "text": "\ud800", "raw": b"\xff"}
    assert json.loads(jsonbound.dumps(stored)) == {
        "nan": None,
        "inf": None,
        "big": str(1 << 70),
        "text": "?",
        "raw": "\ufffd",
    }


class _Socket:
    """Just what receive_frame reads of a WebSocket: one message."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message

    async def receive(self) -> dict[str, Any]:
        return self.message


def _frame(message: dict[str, Any]) -> dict[str, Any] | FrameError:
    try:
        return asyncio.run(receive_frame(_Socket(message)))  # type: ignore[arg-type]
    except FrameError as exc:
        return exc


@SETTINGS
@given(st.one_of(adversarial, st.text(max_size=200), values.map(json.dumps)))
def test_any_text_frame_is_an_object_or_a_refusal(text: str) -> None:
    got = _frame({"type": "websocket.receive", "text": text})
    if isinstance(got, FrameError):
        assert isinstance(got.error, ClientError)
        assert got.close_code in (None, CLOSE_INVALID)
        assert got.ref is None or isinstance(got.ref, str | int)
        return
    assert isinstance(got, dict)
    _strict_round_trip(got)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_binary_frame_closes_with_1003(data: bytes) -> None:
    got = _frame({"type": "websocket.receive", "bytes": data})
    assert isinstance(got, FrameError) and got.close_code == CLOSE_BINARY


def test_a_refused_frame_keeps_its_ref() -> None:
    got = _frame({"type": "websocket.receive", "text": '{"ref": "r9", "x": NaN}'})
    assert isinstance(got, FrameError)
    assert got.ref == "r9" and got.close_code is None and got.error.status == 422
