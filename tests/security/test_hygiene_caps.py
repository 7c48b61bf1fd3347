"""Finding 8: one overall cap on retained output and one on the bytes in all inboxes.

Before the fix, each task's tails were bounded (1 MiB) and each inbox (16 MiB), but not their
sum: 200,000 finished tasks could hold 200 GB of output and 100,000 agents 1.6 TB of messages.
The caps live in the state machine's limits, so every replica evicts or refuses the same way.
"""

from __future__ import annotations

from agentflow.errors import OverloadedError
from agentflow.state import StateMachine
from agentflow.state.commands import (
    AckMessages,
    AssignTasks,
    ConnectAgent,
    ReportAttempts,
    SubmitTasks,
    Subscribe,
)
from agentflow.state.machine import StateLimits
from agentflow.state.messages import MessageLimits, Sent
from tests.state.test_machine import Log, done, new, worker
from tests.state.test_messages import send

TAIL = 1000


def _machine(retained_bytes: int) -> Log:
    log = Log()
    log.sm = StateMachine(
        limits=StateLimits(output_tail_bytes=TAIL, output_retained_bytes=retained_bytes)
    )
    worker(log, slots=10)
    return log


def _run(log: Log, tid: str, out: int, *, finish: bool = True) -> None:
    log(SubmitTasks(now_ms=0, tasks=[new(tid)]))
    log(AssignTasks(now_ms=0, assignments=[(tid, "w1")]))
    token = log.sm.tasks[tid].fencing_token or 0
    log(ReportAttempts(now_ms=1, worker_id="w1", output=[(tid, token, "stdout", b"x" * out)]))
    if finish:
        done(log, tid, token)


def test_output_of_the_first_finished_tasks_is_evicted_beyond_the_budget() -> None:
    log = _machine(retained_bytes=2500)
    for tid in ("t1", "t2", "t3"):
        _run(log, tid, TAIL)
    outputs = log.sm.outputs
    assert outputs.held_bytes == 2000 <= outputs.retained_bytes
    evicted = outputs["t1"]["stdout"]
    assert evicted.evicted and evicted.data == b"" and evicted.dropped == TAIL
    assert outputs["t2"]["stdout"].data == b"x" * TAIL  # the newest results stay readable
    assert outputs["t3"]["stdout"].data == b"x" * TAIL
    assert outputs.evicted_tasks == 1
    assert log.sm.tasks["t1"].status.value == "completed"  # only its output went


def test_output_of_running_tasks_is_never_evicted() -> None:
    log = _machine(retained_bytes=1500)
    _run(log, "done", TAIL)
    _run(log, "r1", TAIL, finish=False)
    _run(log, "r2", TAIL, finish=False)
    outputs = log.sm.outputs
    assert outputs["done"]["stdout"].evicted
    assert not outputs["r1"]["stdout"].evicted and not outputs["r2"]["stdout"].evicted
    assert outputs.held_bytes == 2 * TAIL  # over the budget only by what still runs


def test_eviction_survives_a_snapshot_identically() -> None:
    log = _machine(retained_bytes=2500)
    for tid in ("t1", "t2", "t3"):
        _run(log, tid, TAIL)
    restored = StateMachine(limits=log.sm.limits)
    restored.restore(log.sm.snapshot())
    assert restored.digest() == log.sm.digest()
    assert restored.outputs.held_bytes == log.sm.outputs.held_bytes
    assert restored.outputs["t1"]["stdout"].evicted
    other = Log()
    other.sm, other.index = restored, log.index
    _run(log, "t4", TAIL)
    _run(other, "t4", TAIL)
    assert restored.digest() == log.sm.digest()  # the next eviction is the same: t2


def _messaging(total: int) -> Log:
    log = Log()
    limits = MessageLimits(inbox_bytes_max=1000, inbox_total_bytes_max=total)
    log.sm = StateMachine(message_limits=limits)
    return log


def test_all_inboxes_together_refuse_a_send_beyond_their_total() -> None:
    log = _messaging(total=1500)
    assert isinstance(send(log, "a", "b", id="k1", size=800), Sent)
    assert isinstance(send(log, "a", "c", id="k2", size=600), Sent)
    refused = send(log, "a", "d", id="k3", size=200)  # d's own inbox is empty
    assert isinstance(refused, OverloadedError)
    assert refused.status == 429
    assert "all inboxes hold 1400 bytes" in refused.detail and "limit 1500" in refused.detail
    assert "k3" not in log.sm.messages.by_id  # nothing of the refused send was kept
    log(AckMessages(now_ms=0, agent_id="b", cursor=1))
    assert log.sm.messages.inbox_bytes_total == 600
    assert isinstance(send(log, "a", "d", id="k4", size=200), Sent)  # room again


def test_a_topic_send_beyond_the_total_lists_the_rest_undelivered() -> None:
    log = _messaging(total=1000)
    for agent in ("r1", "r2", "r3"):
        log(Subscribe(now_ms=0, agent_id=agent, pattern="news"))
    log(ConnectAgent(now_ms=0, agent_id="r1", ttl_ms=60_000))
    sent = send(log, "a", "topic:news", id="n1", size=400)
    assert isinstance(sent, Sent)
    assert sent.message.recipients == ("r1", "r2")
    assert sent.message.undelivered == ("r3",)
    assert log.sm.messages.inbox_bytes_total == 800


def test_the_inbox_total_survives_a_snapshot() -> None:
    log = _messaging(total=1500)
    send(log, "a", "b", id="k1", size=800)
    restored = StateMachine(message_limits=log.sm.messages.limits)
    restored.restore(log.sm.snapshot())
    assert restored.messages.inbox_bytes_total == 800
