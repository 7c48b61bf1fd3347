"""Format versions: what the release before them wrote still reads, newer formats are refused
alike on every replica, and a leader writes only what every member reads.

``fixtures_upgrade/main_v1.json`` holds bytes written by main at a1e07e9, the commit before
format versions: three log entries (and the digest of the state they make), a state image with
the machine after them, a peer hello and a worker hello. They are bytes, not code: they stay as
that release wrote them whatever this code becomes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agentflow import wire, workerwire
from agentflow.api.event_hub import EventFilter, EventHub, StreamEvent
from agentflow.cluster.image import IMAGE_FORMAT, Image, restore_error
from agentflow.cluster.peerwire import decode_hello
from agentflow.cluster.versions import (
    advertised_formats,
    cluster_format,
    format_status,
    peer_version_refusal,
    reads,
)
from agentflow.state import StateMachine, decode_command, encode_command
from agentflow.state.commands import CommandDecodeError, ConnectAgent
from agentflow.state.envelope import LOG_FORMAT, LOG_FORMAT_LEGACY
from agentflow.state.events import EntryRejected

FIXTURES = json.loads((Path(__file__).parent / "fixtures_upgrade" / "main_v1.json").read_text())
MAIN_ENTRIES = [bytes.fromhex(e) for e in FIXTURES["entries"]]


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def test_entries_written_by_the_previous_release_apply_to_the_same_state() -> None:
    sm = StateMachine()
    for index, data in enumerate(MAIN_ENTRIES, start=1):
        result = sm.apply_entry(index, data)
        assert not isinstance(result, Exception), result
    assert sm.rejected.total == 0
    assert sm.digest() == FIXTURES["state_digest"]


def test_format_1_is_byte_for_byte_what_the_previous_release_writes() -> None:
    # A leader in a cluster with a member of the previous release writes these very bytes.
    for data in MAIN_ENTRIES:
        command = decode_command(data)
        assert encode_command(command, LOG_FORMAT_LEGACY) == data
        newer = encode_command(command)
        assert newer != data and msgpack.unpackb(newer)[0] == LOG_FORMAT
        assert decode_command(newer) == command


NEWER = [
    _pack([LOG_FORMAT + 1, "CancelTask", {"now_ms": 1, "task_id": "t1"}]),
    _pack([LOG_FORMAT, "RenameTheMoon", {"now_ms": 1}]),  # a command of a later release
    _pack([1, "CancelTask", {"now_ms": 1, "task_id": "t1"}]),  # format 1 has no envelope
    _pack(["CancelTask", "RenameTheMoon", {"now_ms": 1}]),
]


@pytest.mark.parametrize("data", NEWER)
def test_newer_or_malformed_envelopes_are_one_typed_error(data: bytes) -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(data)


def test_a_newer_entry_is_skipped_alike_on_every_replica_with_an_event() -> None:
    newer_format, unknown = NEWER[0], NEWER[1]
    replicas = [StateMachine(), StateMachine()]
    for sm in replicas:
        for index, data in enumerate([*MAIN_ENTRIES, newer_format, unknown], start=1):
            sm.apply_entry(index, data)
    first, second = replicas
    assert first.digest() == second.digest()
    assert first.rejected.total == 2
    reasons = [e.reason for e in first.rejected.last]
    newer = f"entry format {LOG_FORMAT + 1} is newer than this master reads (1..{LOG_FORMAT})"
    assert newer in reasons[0]
    assert "unknown command 'RenameTheMoon'" in reasons[1]
    events = [e for e in first.drain_events() if isinstance(e, EntryRejected)]
    assert [e.index for e in events] == [4, 5]


def test_a_rejected_entry_is_an_event_on_the_stream() -> None:
    sm = StateMachine()
    hub = EventHub(sm, ring_size=100, queue_limit=10, max_subscriptions=1)
    sub = hub.subscribe(
        EventFilter(kinds=frozenset({"entry"})), from_index=None, replay=False, current=False
    )
    sm.apply_entry(1, encode_command(ConnectAgent(now_ms=1, agent_id="a", ttl_ms=60_000)))
    sm.apply_entry(2, NEWER[0])
    hub.on_events(sm.drain_events())
    frames = [e.wire(sm) for e in sub.pending if isinstance(e, StreamEvent)]
    reason = sm.rejected.last[0].reason
    assert frames == [{"index": 2, "kind": "entry", "state": "rejected", "reason": reason}]


def test_an_image_written_by_the_previous_release_restores() -> None:
    data = bytes.fromhex(FIXTURES["image"])
    image = Image.unpack(data)
    assert (image.index, image.term, sorted(image.conf_state.voters)) == (3, 2, ["m1", "m2", "m3"])
    assert image.members["m2"].api_url == "http://127.0.0.1:801"
    assert restore_error(data, StateMachine()) is None
    sm = StateMachine()
    sm.restore(image.machine)
    assert sm.digest() == FIXTURES["state_digest"]


def test_a_new_image_carries_its_format_and_keeps_every_key_the_previous_release_reads() -> None:
    old = msgpack.unpackb(bytes.fromhex(FIXTURES["image"]))
    new = msgpack.unpackb(Image.unpack(bytes.fromhex(FIXTURES["image"])).pack())
    assert new.pop("format") == IMAGE_FORMAT
    assert new == old  # the previous release reads its keys by name: it reads this image


def test_an_image_of_a_newer_format_is_refused_before_it_is_installed() -> None:
    body = msgpack.unpackb(bytes.fromhex(FIXTURES["image"]))
    body["format"] = IMAGE_FORMAT + 1
    why = restore_error(_pack(body), StateMachine())
    assert why is not None and f"image format {IMAGE_FORMAT + 1} is newer" in why


def test_a_peer_hello_of_the_previous_release_is_admitted_and_read_as_format_1() -> None:
    hello = decode_hello(bytes.fromhex(FIXTURES["peer_hello"]))
    assert peer_version_refusal(hello.version) is None
    assert reads(hello.info) == (1, 1)
    assert peer_version_refusal(hello.version + 1) is not None


def test_the_leader_writes_the_highest_format_every_member_reads() -> None:
    new = advertised_formats()
    assert reads(new) == (1, LOG_FORMAT)
    old = decode_hello(bytes.fromhex(FIXTURES["peer_hello"])).info
    members = ["m1", "m2", "m3"]
    assert cluster_format("m1", members, {"m2": new, "m3": new}) == LOG_FORMAT
    assert cluster_format("m1", members, {"m2": new, "m3": old}) == LOG_FORMAT_LEGACY
    # Not heard from yet: it may be of the previous release.
    assert cluster_format("m1", members, {"m2": new}) == LOG_FORMAT_LEGACY
    assert cluster_format("m1", ["m1"], {}) == LOG_FORMAT
    garbage = {"formats": "9-x"}
    assert cluster_format("m1", members, {"m2": new, "m3": garbage}) == LOG_FORMAT_LEGACY
    status = format_status("m1", members, {"m2": new, "m3": old})
    assert status["members"] == {"m1": [1, LOG_FORMAT], "m2": [1, LOG_FORMAT], "m3": [1, 1]}
    assert status["log_written"] == LOG_FORMAT_LEGACY


def test_a_worker_hello_of_the_previous_release_decodes() -> None:
    hello = workerwire.decode_worker_frame(bytes.fromhex(FIXTURES["worker_hello"]))
    assert isinstance(hello, workerwire.Hello)
    assert wire.MIN_PROTOCOL_VERSION <= hello.protocol <= wire.PROTOCOL_VERSION
