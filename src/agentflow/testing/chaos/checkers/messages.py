"""Every acknowledged message is delivered at least once, in order per sender and receiver,
never again after its ack.

A message is named by (sender, receiver, seq): seq rises from 1 per pair, and a `receive`
result lists ``{sender, seq, message_id}`` items (``cursor`` too: the receiver's inbox cursor,
what `ack` takes as ``upto``; without it an integer ``message_id`` stands in).

- every ``ok`` send is in some ``ok`` receive of its receiver;
- per pair, first deliveries follow send order: a message whose ``ok`` send completed before
  another's ``ok`` send was invoked is first delivered before it (in cursor order when every
  item of the receiver has one, else in the receivers' invocation order);
- once an ``ok`` ack(upto=X) by an agent has completed, no receive by that agent invoked later
  returns a cursor <= X (redelivery before the ack is at-least-once doing its job);
- a message whose send ended ``fail`` (and was not sent again, ok or info) is never delivered.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentflow.testing.chaos.checkers.common import CheckerResult, ok_ops, op_line
from agentflow.testing.chaos.history import FAIL, Op, StorageRecord

__all__ = ["check_messages"]

NAME = "messages"
_Key = tuple[str, str, int]  # sender, receiver, seq


@dataclass(frozen=True, slots=True)
class _Delivery:
    key: _Key
    op: Op  # the receive that returned it
    index: int  # its place in that receive's result
    position: int | None  # its inbox cursor


def check_messages(ops: Sequence[Op], storage: Sequence[StorageRecord] = ()) -> CheckerResult:
    sends: dict[_Key, list[Op]] = defaultdict(list)
    for op in ops:
        if op.f == "send":
            sends[_send_key(op)].append(op)
    deliveries = list(_deliveries(ops))
    first: dict[_Key, _Delivery] = {}
    for d in _in_inbox_order(deliveries):
        first.setdefault(d.key, d)
    anomalies: list[str] = []
    for key, tried in sorted(sends.items()):
        ok = [op for op in tried if op.ok]
        if ok and key not in first:
            anomalies.append(f"message {_name(key)} lost: {op_line(ok[0])} never delivered")
        if key in first and all(op.type == FAIL for op in tried):
            anomalies.append(
                f"message {_name(key)} delivered ({op_line(first[key].op)}) though its send "
                f"failed ({op_line(tried[0])})"
            )
    anomalies.extend(_reordered(first, sends))
    checked, found = _after_ack(ops, deliveries)
    anomalies.extend(found)
    stats = {
        "ok_sends": sum(any(op.ok for op in tried) for tried in sends.values()),
        "deliveries": len(deliveries),
        "redeliveries": len(deliveries) - len(first),
        "ack_checked_deliveries": checked,
    }
    unchecked = len(deliveries) - checked
    notes = (
        [f"{unchecked} deliveries carry no cursor: not checked against acks"] if unchecked else []
    )
    return CheckerResult.of(NAME, anomalies, stats, notes)


def _send_key(op: Op) -> _Key:
    return str(op.args["sender"]), str(op.args["receiver"]), int(op.args["seq"])


def _name(key: _Key) -> str:
    return f"{key[0]}->{key[1]} #{key[2]}"


def _position(item: Mapping[str, Any]) -> int | None:
    value = item.get("cursor", item.get("message_id"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _deliveries(ops: Sequence[Op]) -> Iterator[_Delivery]:
    for op in ok_ops(ops, "receive"):
        agent = str(op.args["agent"])
        for i, item in enumerate(op.result.get("messages") or ()):
            key = (str(item["sender"]), agent, int(item["seq"]))
            yield _Delivery(key, op, i, _position(item))


def _in_inbox_order(deliveries: Sequence[_Delivery]) -> list[_Delivery]:
    by_agent: dict[str, list[_Delivery]] = defaultdict(list)
    for d in deliveries:
        by_agent[d.key[1]].append(d)
    ordered: list[_Delivery] = []
    for items in by_agent.values():
        if all(d.position is not None for d in items):
            items.sort(key=lambda d: (d.position, d.op.invoke_ns))
        else:
            items.sort(key=lambda d: (d.op.invoke_ns, d.op.complete_ns, d.index))
        ordered.extend(items)
    return ordered


def _reordered(first: Mapping[_Key, _Delivery], sends: Mapping[_Key, list[Op]]) -> Iterator[str]:
    """Per pair, walk first deliveries in inbox order keeping the highest seq seen: a lower
    seq after it is reordered if its ok send completed before that one's ok send began."""
    by_pair: dict[tuple[str, str], list[_Delivery]] = defaultdict(list)
    for d in _in_inbox_order(list(first.values())):
        by_pair[d.key[:2]].append(d)
    for items in by_pair.values():
        top: _Delivery | None = None
        for d in items:
            sent = _ok_send(sends, d.key)
            if sent is None:
                continue
            if top is not None and d.key[2] < top.key[2]:
                top_sent = _ok_send(sends, top.key)
                if top_sent is not None and sent.complete_ns < top_sent.invoke_ns:
                    yield (
                        f"messages {_name(d.key)} and #{top.key[2]} reordered: #{top.key[2]} "
                        f"first delivered by {op_line(top.op)}, #{d.key[2]} only by "
                        f"{op_line(d.op)}, though it was sent first ({op_line(sent)})"
                    )
                continue
            top = d


def _ok_send(sends: Mapping[_Key, list[Op]], key: _Key) -> Op | None:
    return next((op for op in sends.get(key, ()) if op.ok), None)


def _after_ack(ops: Sequence[Op], deliveries: Sequence[_Delivery]) -> tuple[int, list[str]]:
    """Deliveries by receives invoked after an ok ack covering them (n log n: per agent, acks
    by completion with the running highest `upto`, a bisect per receive)."""
    acks: dict[str, list[Op]] = defaultdict(list)
    for op in ok_ops(ops, "ack"):
        acks[str(op.args["agent"])].append(op)
    table: dict[str, tuple[list[int], list[Op]]] = {}
    for agent, done in acks.items():
        done.sort(key=lambda o: o.complete_ns)
        highest: list[Op] = []
        for op in done:
            if not highest or int(op.args["upto"]) > int(highest[-1].args["upto"]):
                highest.append(op)
            else:
                highest.append(highest[-1])
        table[agent] = ([o.complete_ns for o in done], highest)
    checked, found = 0, []
    for d in deliveries:
        if d.position is None:
            continue
        checked += 1
        ends, highest = table.get(d.key[1], ([], []))
        n = bisect.bisect_left(ends, d.op.invoke_ns)
        if n and d.position <= int(highest[n - 1].args["upto"]):
            ack = highest[n - 1]
            found.append(
                f"message {_name(d.key)} (cursor {d.position}) delivered again by "
                f"{op_line(d.op)} after {op_line(ack)} acknowledged up to {ack.args['upto']}"
            )
    return checked, found
