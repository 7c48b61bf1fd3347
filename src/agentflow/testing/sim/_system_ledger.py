"""What the system simulation's clients and workers were told, and the checks on it.

The ledger is the outside world's memory: acknowledged submits, the idempotency keys they
used, cancels asked for, what each worker claims an attempt ended with, lock grants and the
leases clients believe they hold, the fenced resource's highest accepted token, messages
acknowledged to their senders and what each agent read from its inbox. Its checks are the
end-to-end invariants: they fail a seed with `InvariantViolationError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentflow.state import StateMachine
from agentflow.state.records import TERMINAL_STATUSES, TaskRecord, TaskStatus
from agentflow.testing.sim._invariants import InvariantViolationError

__all__ = ["Ledger"]


def _fail(message: str) -> None:
    raise InvariantViolationError(message)


@dataclass(slots=True)
class Ledger:
    tasks: dict[str, str] = field(default_factory=dict)  # acknowledged task id -> how
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> its task id
    cancels: dict[str, int] = field(default_factory=dict)  # task id -> when asked
    claims: dict[tuple[str, int], str] = field(default_factory=dict)  # (task, token) -> status
    granted: dict[str, int] = field(default_factory=dict)  # lock -> highest token committed
    beliefs: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)  # lock -> resource's highest token
    writes: int = 0
    sent: dict[str, list[str]] = field(default_factory=dict)  # agent -> acked message ids
    seen: dict[str, dict[int, tuple[int, str]]] = field(default_factory=dict)  # cursor -> msg

    # -- submits ------------------------------------------------------------------------------

    def submitted(self, key: str | None, task_id: str, how: str) -> None:
        self.tasks.setdefault(task_id, how)
        if key is None:
            return
        first = self.keys.setdefault(key, task_id)
        if first != task_id:
            _fail(f"idempotency key {key} answered task {task_id}, earlier {first}")

    # -- locks and the fenced resource ----------------------------------------------------

    def on_grant(self, name: str, token: int) -> None:
        self.granted[name] = max(self.granted.get(name, 0), token)

    def believe(self, client: int, name: str, token: int, until_ms: int, now_ms: int) -> None:
        """Client ``client`` learned it holds ``name`` with ``token`` until ``until_ms``."""
        holders = self.beliefs.setdefault(name, {})
        for other, (other_token, other_until) in holders.items():
            if other != client and other_until > now_ms:
                _fail(
                    f"at {now_ms} ms client {client} holds lock {name} (token {token}) while "
                    f"client {other} believes it holds it (token {other_token}) until "
                    f"{other_until} ms"
                )
        holders[client] = (token, until_ms)

    def forget(self, client: int, name: str) -> None:
        self.beliefs.get(name, {}).pop(client, None)

    def write(self, client: int, name: str, token: int, now_ms: int) -> None:
        """A believed holder writes to the fenced resource with its token."""
        self.writes += 1
        top = self.accepted.get(name, 0)
        newest = self.granted.get(name, 0)
        if token < top:
            _fail(
                f"at {now_ms} ms client {client}'s lease on {name} (token {token}) overlaps a "
                f"newer holder's (the resource already took token {top})"
            )
        if token < newest:
            _fail(
                f"at {now_ms} ms the fenced resource {name} accepted stale token {token} from "
                f"client {client}: token {newest} was already granted"
            )
        self.accepted[name] = token

    # -- messages -----------------------------------------------------------------------------

    def read_inbox(self, agent: str, read: list[tuple[int, int, str]], after: int) -> None:
        """Agent ``agent`` read (cursor, send index, message id) after cursor ``after``."""
        seen = self.seen.setdefault(agent, {})
        expected = after + 1
        last_index = seen[after][0] if after in seen else 0
        for cursor, index, message_id in read:
            if cursor != expected:
                _fail(f"agent {agent}'s inbox skips from cursor {expected - 1} to {cursor}")
            if index <= last_index:
                _fail(f"agent {agent}'s inbox reorders: cursor {cursor} holds send {index}")
            earlier = seen.setdefault(cursor, (index, message_id))
            if earlier != (index, message_id):
                _fail(f"agent {agent}'s cursor {cursor} held {earlier[1]}, now {message_id}")
            expected += 1
            last_index = index

    # -- after healing --------------------------------------------------------------------
    # (a workflow's dependent ran only once its trigger held, and was skipped only when it
    # could no longer hold: see `_judge_trigger`)

    def unsettled(self, sm: StateMachine) -> list[str]:
        """Acknowledged tasks not yet finished (or not yet applied) in ``sm``."""
        out = []
        for task_id in self.tasks:
            task = sm.tasks.get(task_id)
            if task is None or task.status not in TERMINAL_STATUSES:
                out.append(task_id)
        return out

    def judge(self, sm: StateMachine, now_ms: int) -> None:
        """Every acknowledged task ended by its own rules; every acked message arrived."""
        for task_id, how in self.tasks.items():
            task = sm.tasks.get(task_id)
            if task is None:
                _fail(f"acknowledged {how} task {task_id} was lost")
                continue
            claim = self.claims.get((task_id, task.fencing_token or 0))
            status = task.status
            if status is TaskStatus.COMPLETED and claim != "completed":
                _fail(
                    f"task {task_id} completed, but its attempt {task.fencing_token} said {claim}"
                )
            if status is TaskStatus.FAILED and (
                claim != "failed" or task.retries != task.max_retries
            ):
                _fail(
                    f"task {task_id} failed after {task.retries}/{task.max_retries} retries; "
                    f"its attempt {task.fencing_token} said {claim}"
                )
            if status is TaskStatus.CANCELLED and task_id not in self.cancels and how == "task":
                _fail(f"task {task_id} was cancelled, but no one asked")
            if status in (TaskStatus.TIMED_OUT, TaskStatus.UPSTREAM_FAILED) and how == "task":
                _fail(f"lone task {task_id} ended {status.value}")
            if task.dependencies:
                _judge_trigger(sm, task)
        for agent, ids in self.sent.items():
            arrived = {message_id for _, message_id in self.seen.get(agent, {}).values()}
            box = sm.messages.agents.get(agent)
            if box is not None:
                arrived.update(message.id for _, message in box.inbox)
            missing = [m for m in ids if m not in arrived]
            if missing:
                _fail(f"messages {missing[:5]} acknowledged to their senders never reached {agent}")


def _judge_trigger(sm: StateMachine, task: TaskRecord) -> None:
    """A dependent ran only once its trigger held; it was skipped only when it never could."""
    deps = [sm.tasks.get(d) for d in task.dependencies]
    statuses = [d.status if d is not None else None for d in deps]
    done = all(s in TERMINAL_STATUSES for s in statuses)
    ok = all(s is TaskStatus.COMPLETED for s in statuses)
    if task.attempts and not (done if task.trigger == "all_done" else ok):
        _fail(f"workflow task {task.id} ({task.trigger}) ran after upstream {statuses}")
    if task.status is TaskStatus.UPSTREAM_FAILED and (task.trigger == "all_done" or ok):
        _fail(f"workflow task {task.id} ({task.trigger}) skipped after upstream {statuses}")
