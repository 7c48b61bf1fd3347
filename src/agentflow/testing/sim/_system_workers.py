"""Simulated workers: register, heartbeat, run what they are assigned, report, fail.

A worker talks to the node it believes leads: its heartbeat reaches that node's leader timers
(the in-memory liveness a real leader keeps from session traffic), it learns its assignments
from that node's state, runs each attempt for a simulated time and reports starts and
outcomes (retrying a report until its entry applies). Faults of its own: a crash (it forgets
everything and comes back later as a new instance) and a pause (it goes silent past the loss
timeout with its attempts still running, then registers again listing what it still runs,
then reports what ended meanwhile with its by-now stale tokens; the state must refuse those).
Reports are at least once: an old one may come again much later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentflow.state import StateMachine
from agentflow.state.commands import Command, RegisterWorker, ReportAttempts, TaskOutcome
from agentflow.state.records import TERMINAL_STATUSES, WorkerState

if TYPE_CHECKING:
    from agentflow.testing.sim._system_driver import SystemDriver

__all__ = ["SimWorker"]

_UP, _DOWN, _PAUSED = "up", "down", "paused"


@dataclass(slots=True, kw_only=True)
class _Attempt:
    token: int
    finish_at: int
    status: str
    started_sent: bool = False


class SimWorker:
    def __init__(self, driver: SystemDriver, number: int) -> None:
        self.id = f"w{number}"
        self._driver = driver
        self._rng = driver.rng
        self.state = _UP
        self._until = 0
        self._instance = 1
        self.registered = False
        self._attempts: dict[str, _Attempt] = {}
        self._done: list[TaskOutcome] = []
        self._finished: dict[tuple[str, int], None] = {}  # attempts it ended, by token
        self._echoes: list[tuple[int, TaskOutcome]] = []  # (when, outcome) to report again

    @property
    def _secret_hash(self) -> str:
        return hashlib.sha256(f"{self.id}/{self._instance}".encode()).hexdigest()

    def act(self, now_ms: int, *, faults: bool, busy: bool) -> Command | None:
        """Heartbeat, then the next request to send (None: nothing now)."""
        if self.state != _UP and (now_ms >= self._until or not faults):
            self._wake(now_ms)
        if self.state != _UP:
            return None
        if faults and self._fault(now_ms):
            return None
        node = self._driver.target()
        if node is None:
            return None
        if self.registered:  # a session frame: only an admitted session's count (as live)
            self._driver.touch(node, self.id)
        if busy:
            return None
        sm = self._driver.machine(node)
        record = sm.workers.get(self.id)
        if record is None or record.state in (WorkerState.LOST, WorkerState.OFFLINE):
            self.registered = False
        if not self.registered:
            # Back from a pause: it registers again, listing what it still runs; the
            # outcomes it holds go out after, by then stale if its attempts were requeued.
            return self._register(now_ms)
        self._follow(sm, record.running if record is not None else {}, now_ms)
        return self._report(now_ms)

    def _fault(self, now_ms: int) -> bool:
        roll = self._rng.random()
        if roll < 0.01:
            self.state, self._until = _DOWN, now_ms + self._rng.randint(50, 1000)
            if self.registered:  # its session's socket closes: the leader notes it offline
                self._driver.disconnected(self.id)
            self._driver.sim.trace(f"{now_ms} worker {self.id} crashes")
            self._driver.sim.count("worker_crash")
            return True
        if roll < 0.025:
            self.state, self._until = _PAUSED, now_ms + self._rng.randint(50, 800)
            self._driver.sim.trace(f"{now_ms} worker {self.id} pauses")
            self._driver.sim.count("worker_pause")
            return True
        return False

    def _wake(self, now_ms: int) -> None:
        if self.state == _DOWN:  # a new instance: nothing of the old one survives
            self._instance += 1
            self.registered = False
            self._attempts.clear()
            self._done.clear()
            self._echoes.clear()
        else:  # back from a pause: what finished meanwhile is reported, stale or not
            for task_id, attempt in list(self._attempts.items()):
                if attempt.finish_at <= now_ms:
                    self._end(task_id, attempt)
        self.state = _UP
        self._driver.sim.trace(f"{now_ms} worker {self.id} back")

    def _register(self, now_ms: int) -> Command:
        running = [(task_id, a.token) for task_id, a in self._attempts.items()]
        return RegisterWorker(
            now_ms=now_ms,
            worker_id=self.id,
            group="default",
            slots=2,
            resources={},
            labels={},
            hostname=self.id,
            running=running,
            secret_hash=self._secret_hash,
        )

    def _follow(self, sm: StateMachine, running: dict[str, int], now_ms: int) -> None:
        """Start what the node's state assigns it; end what it was told is over."""
        for task_id, token in running.items():
            mine = self._attempts.get(task_id)
            if (mine is None or mine.token < token) and (task_id, token) not in self._finished:
                status = "completed" if self._rng.random() < 0.8 else "failed"
                finish_at = now_ms + self._rng.randint(5, 120)
                self._attempts[task_id] = _Attempt(token=token, finish_at=finish_at, status=status)
        for task_id, attempt in list(self._attempts.items()):
            task = sm.tasks.get(task_id)
            if task is None:
                continue
            superseded = (task.fencing_token or 0) > attempt.token or any(
                a.fencing_token == attempt.token and a.status is not None for a in task.attempts
            )
            if superseded and not task.cancel_requested:
                del self._attempts[task_id]  # withdrawn, or requeued while it was away
                continue
            if task.cancel_requested and task.status in TERMINAL_STATUSES:
                attempt.status, attempt.finish_at = "cancelled", now_ms
            if attempt.finish_at <= now_ms:
                self._end(task_id, attempt)

    def _end(self, task_id: str, attempt: _Attempt) -> None:
        del self._attempts[task_id]
        self._finished[(task_id, attempt.token)] = None
        self._driver.ledger.claims[(task_id, attempt.token)] = attempt.status
        self._done.append(
            TaskOutcome(
                task_id=task_id,
                fencing_token=attempt.token,
                status=attempt.status,
                exit_code=0 if attempt.status == "completed" else 1,
            )
        )

    def _report(self, now_ms: int) -> Command | None:
        started = [(t, a.token) for t, a in self._attempts.items() if not a.started_sent]
        outcomes = list(self._done)
        # At least once: a report whose answer was lost is sent again, maybe much later
        # (after its task was retried, even on this same worker): it must be refused.
        outcomes += [outcome for at, outcome in self._echoes if at <= now_ms]
        self._echoes = [(at, outcome) for at, outcome in self._echoes if at > now_ms]
        if not started and not outcomes:
            return None
        return ReportAttempts(
            now_ms=now_ms,
            worker_id=self.id,
            started=started,
            outcomes=outcomes,
            place=self._rng.random() < 0.5,
        )

    def answered(self, command: Command, result: object) -> None:
        if isinstance(command, RegisterWorker):
            if isinstance(result, dict):
                self.registered = True
                for task_id, token in result.get("cancel", []):
                    mine = self._attempts.get(task_id)
                    if mine is not None and mine.token == token:
                        del self._attempts[task_id]
            return
        if isinstance(command, ReportAttempts) and isinstance(result, list):
            for task_id, token in command.started:
                mine = self._attempts.get(task_id)
                if mine is not None and mine.token == token:
                    mine.started_sent = True
            reported = {(o.task_id, o.fencing_token) for o in command.outcomes}
            for outcome in command.outcomes:
                if self._rng.random() < 0.2:
                    self._echoes.append((command.now_ms + self._rng.randint(20, 300), outcome))
            self._done = [o for o in self._done if (o.task_id, o.fencing_token) not in reported]
            refused = sum(1 for took in result if took is False)
            if refused:
                self._driver.sim.count("stale_outcomes_refused")
