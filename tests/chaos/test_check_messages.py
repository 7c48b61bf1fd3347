"""check_messages: every acknowledged send is delivered, first deliveries keep send order per
pair, nothing comes again after the ack that covers it, and a failed send is never delivered."""

from __future__ import annotations

from typing import Any

from agentflow.testing.chaos.checkers import check_messages
from tests.chaos.check_builders import Hist

A, B = "chaos-agent-0", "chaos-agent-1"


def item(seq: int, cursor: int, sender: str = A) -> dict[str, Any]:
    return {"sender": sender, "seq": seq, "message_id": f"m-{sender}-{seq}", "cursor": cursor}


def good() -> Hist:
    h = Hist()
    for seq in (1, 2, 3):
        h.op("send", seq * 10, sender=A, receiver=B, seq=seq, result={"message_id": f"m{seq}"})
    h.op("send", 40, type="info", sender=A, receiver=B, seq=4)  # never took effect
    h.op("send", 45, type="fail", sender=A, receiver=B, seq=5, error="422")
    h.op("send", 50, sender=A, receiver=B, seq=5, result={"message_id": "m5"})  # sent again
    h.op("receive", 60, process="c2", agent=B, result={"messages": [item(1, 1), item(2, 2)]})
    # The ack of 1 is lost with its master: 1 comes again, then an ack up to 2 holds.
    h.op("ack", 70, type="info", process="c2", agent=B, upto=1)
    h.op(
        "receive",
        80,
        process="c2",
        agent=B,
        result={"messages": [item(1, 1), item(2, 2), item(3, 3), item(5, 4)]},
    )
    h.op("ack", 90, process="c2", agent=B, upto=2)
    h.op("receive", 100, process="c2", agent=B, result={"messages": [item(3, 3), item(5, 4)]})
    h.op("ack", 110, process="c2", agent=B, upto=4)
    h.op("receive", 120, process="c2", agent=B, result={"messages": []})
    return h


def test_a_good_history_passes() -> None:
    result = check_messages(good().ops)
    assert result.ok, result.anomalies
    assert result.verdict == "PASS"
    assert result.stats == {
        "ok_sends": 4,
        "deliveries": 8,
        "redeliveries": 4,
        "ack_checked_deliveries": 8,
    }


def test_a_lost_message_is_an_anomaly() -> None:
    h = good()
    h.op("send", 130, sender=A, receiver=B, seq=6, result={"message_id": "m6"})
    (line,) = check_messages(h.ops).anomalies
    assert line.startswith("message chaos-agent-0->chaos-agent-1 #6 lost: send by c1")


def test_reordered_first_deliveries_are_an_anomaly() -> None:
    h = good()
    h.op("send", 130, sender=A, receiver=B, seq=6, result={"message_id": "m6"})
    h.op("send", 140, sender=A, receiver=B, seq=7, result={"message_id": "m7"})
    h.op("receive", 150, process="c2", agent=B, result={"messages": [item(7, 5), item(6, 6)]})
    (line,) = check_messages(h.ops).anomalies
    assert "messages chaos-agent-0->chaos-agent-1 #6 and #7 reordered" in line


def test_concurrent_sends_may_arrive_in_either_order() -> None:
    h = good()
    h.op("send", 130, 200, sender=A, receiver=B, seq=6, result={"message_id": "m6"})
    h.op("send", 140, 150, process="c3", sender=A, receiver=B, seq=7, result={})
    h.op("receive", 250, process="c2", agent=B, result={"messages": [item(7, 5), item(6, 6)]})
    assert check_messages(h.ops).ok


def test_a_delivery_after_its_ack_is_an_anomaly() -> None:
    h = good()
    h.op("receive", 130, process="c2", agent=B, result={"messages": [item(3, 3)]})
    (line,) = check_messages(h.ops).anomalies
    assert "#3 (cursor 3) delivered again by receive by c2" in line
    assert "acknowledged up to 4" in line


def test_a_delivered_message_whose_send_failed_is_an_anomaly() -> None:
    h = good()
    h.op("send", 130, type="fail", sender=A, receiver=B, seq=8, error="422")
    h.op("receive", 140, process="c2", agent=B, result={"messages": [item(8, 5)]})
    (line,) = check_messages(h.ops).anomalies
    assert "#8 delivered" in line and "though its send failed" in line


def test_without_cursors_acks_go_unchecked_and_the_verdict_says_so() -> None:
    h = good()
    h.ops = [
        op.__class__(
            **{
                **op.to_json(),
                "result": {
                    "messages": [
                        {k: v for k, v in m.items() if k != "cursor"} for m in op.result["messages"]
                    ]
                },
            }
        )
        if op.f == "receive"
        else op
        for op in h.ops
    ]
    result = check_messages(h.ops)
    assert result.ok and result.verdict == "UNKNOWN"
    assert "8 deliveries carry no cursor" in result.inconclusive[0]
