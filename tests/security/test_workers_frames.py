"""Property tests of the worker frame decoder (``agentflow.workerwire``): random and
adversarial msgpack frames either decode to a typed, bounded frame or raise ``FrameError``,
never anything else, and never allocate in proportion to a size the frame declares."""

from __future__ import annotations

import math
import struct
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentflow import wire, workerwire
from agentflow.wire import FrameError
from agentflow.workerwire import Bye, Drain, Heartbeat, Hello, Outcome, Report, decode_worker_frame

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = ["hello", "report", "heartbeat", "drain", "bye", "assign", "", "x" * 100]
INT64_MAX = (1 << 63) - 1

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)
field_names = st.sampled_from(
    [
        "worker_id", "slots", "resources", "labels", "running", "prefetch", "gpus", "secret",
        "group", "hostname", "seq", "started", "output", "outcomes", "status", "token",
        "task_id", "exit_code", "reason", "result", "workspaces", "bases", "workspace",
    ]
)  # fmt: skip


def decodes_or_refuses(data: bytes) -> workerwire.WorkerFrame | None:
    try:
        frame = decode_worker_frame(data)
    except FrameError:
        return None
    _assert_bounded(frame)
    return frame


def _assert_bounded(frame: workerwire.WorkerFrame) -> None:
    """Whatever decoded is typed and within the log's ranges."""
    assert isinstance(frame, Hello | Report | Heartbeat | Drain | Bye)
    if isinstance(frame, Hello):
        assert 1 <= frame.slots <= workerwire.MAX_SLOTS
        assert all(math.isfinite(v) and v >= 0 for v in frame.resources.values())
        assert all(isinstance(v, str) for v in frame.labels.values())
        held = frame.running
    elif isinstance(frame, Report):
        assert 0 <= frame.seq <= INT64_MAX
        held = frame.started + tuple((t, tok) for t, tok, _, _ in frame.output)
        assert all(isinstance(d, bytes) for *_, d in frame.output)
        assert all(s in ("stdout", "stderr") for _, _, s, _ in frame.output)
        held += tuple((t, tok) for t, tok, _ in frame.bases)
        assert all(len(sha) in (40, 64) for *_, sha in frame.bases)
        for outcome in frame.outcomes:
            assert outcome.status in workerwire.OUTCOME_STATUSES
            assert outcome.workspace is None or "base" in outcome.workspace
            assert outcome.exit_code is None or -(1 << 31) <= outcome.exit_code < 1 << 31
            held += ((outcome.task_id, outcome.token),)
    elif isinstance(frame, Heartbeat):
        held = frame.running
    else:
        return
    assert all(isinstance(t, str) and 0 <= tok <= INT64_MAX for t, tok in held)


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)


@SETTINGS
@given(st.sampled_from(KINDS), st.dictionaries(field_names, values, max_size=8))
def test_random_maps_decode_or_are_refused(kind: str, fields: dict[str, Any]) -> None:
    decodes_or_refuses(msgpack.packb({**fields, "t": kind}, use_bin_type=True))


@SETTINGS
@given(values)
def test_any_msgpack_value_decodes_or_is_refused(value: Any) -> None:
    decodes_or_refuses(msgpack.packb(value, use_bin_type=True))


ids = st.text(min_size=1, max_size=workerwire.MAX_ID_CHARS)
tokens = st.integers(min_value=0, max_value=INT64_MAX)
outcomes = st.builds(
    Outcome,
    task_id=ids,
    token=tokens,
    status=st.sampled_from(sorted(workerwire.OUTCOME_STATUSES)),
    exit_code=st.none() | st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1),
    reason=st.none() | st.text(max_size=64),
    result=st.none() | st.text(max_size=64),
)
reports = st.builds(
    Report,
    seq=tokens,
    started=st.lists(st.tuples(ids, tokens), max_size=4).map(tuple),
    output=st.lists(
        st.tuples(ids, tokens, st.sampled_from(["stdout", "stderr"]), st.binary(max_size=64)),
        max_size=4,
    ).map(tuple),
    outcomes=st.lists(outcomes, max_size=4).map(tuple),
)


def _report_wire(report: Report) -> dict[str, Any]:
    return {
        "t": "report",
        "seq": report.seq,
        "started": [list(s) for s in report.started],
        "output": [list(o) for o in report.output],
        "outcomes": [
            {
                "task_id": o.task_id,
                "token": o.token,
                "status": o.status,
                "exit_code": o.exit_code,
                "reason": o.reason,
                "result": o.result,
            }
            for o in report.outcomes
        ],
    }


@SETTINGS
@given(reports)
def test_valid_reports_round_trip(report: Report) -> None:
    assert decode_worker_frame(wire.pack(_report_wire(report))) == report


BAD_VALUES = [
    math.nan,
    math.inf,
    -math.inf,
    -1,
    1 << 63,
    (1 << 64) - 1,
    True,
    "7",
    b"7",
    None,
    [],
    {},
    380_000_000,
]


# Where a bad value goes, and the values of BAD_VALUES that are valid there after all.
PLACES = {
    "seq": {380_000_000},
    "task_id": {"7"},
    "token": {380_000_000},
    "status": set(),
    "exit_code": {None, -1, 380_000_000},
    "started": {380_000_000},
    "output": {b"7"},
}


@SETTINGS
@given(reports.filter(lambda r: r.outcomes), st.sampled_from(BAD_VALUES), st.data())
def test_a_bad_value_in_any_report_field_is_refused(
    report: Report, bad: object, data: st.DataObject
) -> None:
    place = data.draw(st.sampled_from(sorted(PLACES)))
    if any(bad is ok or (type(bad) is type(ok) and bad == ok) for ok in PLACES[place]):
        return
    frame = _report_wire(report)
    if place == "seq":
        frame["seq"] = bad
    elif place == "started":
        frame["started"] = [["t-1", bad]]
    elif place == "output":
        frame["output"] = [["t-1", 1, "stdout", bad]]
    else:
        frame["outcomes"][0][place] = bad
    with pytest.raises(FrameError):
        decode_worker_frame(wire.pack(frame))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resources", {"cpu": math.nan}),
        ("resources", {"cpu": math.inf}),
        ("resources", {"cpu": -1}),
        ("labels", {"a": 1}),
        ("running", [["t-1", 1 << 63]]),
        ("slots", 0),
        ("slots", 1 << 64 - 1),
        ("prefetch", -2),  # -1 is the automatic queue
        ("protocol", 0),
        ("gpus", [{"index": 0, "name": "x", "memory_mb": math.nan}]),
        ("secret", 5),
        ("worker_id", "w" * 1000),
    ],
)
def test_a_bad_hello_field_is_refused(field: str, value: object) -> None:
    hello = {"t": "hello", "worker_id": "w1", "slots": 1, field: value}
    with pytest.raises(FrameError):
        decode_worker_frame(wire.pack(hello))


def test_statuses_are_an_enum() -> None:
    for status in ("bogus", "running", "", "COMPLETED", None, 3):
        frame = {"t": "report", "outcomes": [{"task_id": "t", "token": 1, "status": status}]}
        with pytest.raises(FrameError, match="status"):
            decode_worker_frame(wire.pack(frame))


def _declared(header: bytes) -> bytes:
    """A report whose ``output`` array holds one item starting with ``header`` (and no body)."""
    return b"\x82\xa1t\xa6report\xa6output\x91\x94\xa1t\x01\xa6stdout" + header


@pytest.mark.parametrize(
    "header",
    [
        b"\xc6" + struct.pack(">I", 0xFFFFFFFF),  # bin32 of 4 GiB
        b"\xdb" + struct.pack(">I", 0xFFFFFFFF),  # str32 of 4 GiB
        b"\xdd" + struct.pack(">I", 0xFFFFFFFF),  # array32 of 4 G items
        b"\xdf" + struct.pack(">I", 0xFFFFFFFF),  # map32 of 4 G entries
        b"\xc9" + struct.pack(">I", 0xFFFFFFFF) + b"\x01",  # ext32
        b"\xce" + struct.pack(">I", 380_000_000),  # the declared size as an integer
    ],
)
def test_declared_sizes_are_never_allocated(header: bytes) -> None:
    data = _declared(header)
    assert len(data) < 100
    tracemalloc.start()
    try:
        with pytest.raises(FrameError):
            decode_worker_frame(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_deep_nesting_and_many_containers_are_refused() -> None:
    deep = b"\x81\xa1t\xa5hello" + b"\x91" * 100_000
    with pytest.raises(FrameError):
        decode_worker_frame(deep)
    spread = [[{}] * (wire.MAX_FRAME_ENTRIES // 3) for _ in range(4)]
    with pytest.raises(FrameError, match="entries"):
        decode_worker_frame(msgpack.packb({"t": "heartbeat", "running": spread}))
    with pytest.raises(FrameError):
        decode_worker_frame(b"\x00" * (wire.MAX_FRAME_BYTES + 1))


def test_output_is_bounded_per_chunk_and_per_report() -> None:
    chunk = b"x" * (workerwire.MAX_OUTPUT_CHUNK_BYTES + 1)
    with pytest.raises(FrameError, match="binary"):
        decode_worker_frame(wire.pack({"t": "report", "output": [["t", 1, "stdout", chunk]]}))
    full = b"x" * workerwire.MAX_OUTPUT_CHUNK_BYTES
    items = [["t", 1, "stdout", full]] * (
        workerwire.MAX_REPORT_OUTPUT_BYTES // workerwire.MAX_OUTPUT_CHUNK_BYTES + 1
    )
    with pytest.raises(FrameError, match="output bytes"):
        decode_worker_frame(wire.pack({"t": "report", "output": items}))
