"""Simulated API clients of the system model: each talks to the node it believes leads.

A client has at most one request outstanding (the driver tracks it). It submits tasks with
idempotency keys (reusing an old key now and then: the answer must be the first task),
submits small workflows, cancels tasks it knows, takes a lock without waiting, renews and
releases it, and while it believes it holds the lock writes to the fenced resource with its
token; as an agent it sends messages to the other clients' agents, reads its own inbox (from
the state of the node it talks to) and acknowledges what it read. Its beliefs are
conservative, as a correct client's are: a lease runs from when the request was *sent*.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from agentflow.errors import AgentFlowError
from agentflow.state.commands import (
    AckMessages,
    AcquireLock,
    CancelTask,
    CancelWorkflow,
    Command,
    ConnectAgent,
    NewTask,
    ReleaseLock,
    RenewLock,
    SendMessage,
    SubmitTasks,
    SubmitWorkflow,
)
from agentflow.state.locks import Grant, Waiting
from agentflow.state.messages import AgentBox, Sent

if TYPE_CHECKING:
    from agentflow.testing.sim._system_driver import SystemDriver

__all__ = ["SystemClient"]

LOCKS = ("L1", "L2")
_AGENT_TTL_MS = 10**9
_TTLS_MS = (40, 100, 250, 600)
_LATE_RENEW = 0.3  # how often a client whose lease passed renews it anyway


def _task(rng: random.Random, task_id: str, key: str | None = None, **extra: object) -> NewTask:
    return NewTask(
        id=task_id,
        title=task_id,
        description="",
        spec={"command": "true"},
        max_retries=rng.choice((0, 0, 1, 2)),
        retry_backoff_s=rng.choice((0.0, 0.02, 0.1)),
        idempotency_key=key,
        **extra,  # type: ignore[arg-type]
    )


class SystemClient:
    def __init__(self, driver: SystemDriver, number: int) -> None:
        self.number = number
        self.agent = f"a{number}"
        self._driver = driver
        self._rng = driver.rng
        # Late renewals draw from their own stream, so the rest of the schedule is the same
        # with or without them.
        self._late_rng = random.Random(f"late.{driver.sim.config.seed}.{number}")
        self._seq = 0
        self._keys: list[str] = []
        self._known: list[str] = []  # task ids it was answered with
        self._workflows: list[str] = []  # workflow ids it was answered with
        self._lock: tuple[str, int, int] | None = None  # name, token, believed until
        self._waiting: tuple[str, int] | None = None  # in a lock's queue: name, give up at
        self._last_token = 0  # the newest grant it held (an older one is never taken again)
        self.connected = False
        self._cursor = 0  # the inbox cursor it read up to
        self._acked = 0

    # -- acting -------------------------------------------------------------------------------

    def act(self, now_ms: int) -> Command | None:
        """The next request to send, or None (nothing to send now)."""
        self._seq += 1
        if self._lock is not None and now_ms >= self._lock[2]:
            name, token, _ = self._lock
            self._drop_lock()  # its lease may have ended: it no longer counts on it
            if self._late_rng.random() < _LATE_RENEW:
                # A late client (paused past its lease) still asks to renew: the lock must
                # refuse it once the grant's expiry passed (checked by every replica); granted
                # (its own belief was conservative), the lease runs again from now.
                ttl = self._late_rng.choice(_TTLS_MS)
                session = f"s{self.number}"
                return RenewLock(now_ms=now_ms, name=name, session=session, token=token, ttl_ms=ttl)
        if not self.connected:
            return ConnectAgent(now_ms=now_ms, agent_id=self.agent, ttl_ms=_AGENT_TTL_MS)
        roll = self._rng.random()
        if roll < 0.2:
            return self._submit(now_ms)
        if roll < 0.26:
            return self._workflow(now_ms)
        if roll < 0.27 and self._workflows:
            return CancelWorkflow(now_ms=now_ms, workflow_id=self._rng.choice(self._workflows))
        if roll < 0.30 and self._known:
            task_id = self._rng.choice(self._known)
            self._driver.ledger.cancels.setdefault(task_id, now_ms)
            return CancelTask(now_ms=now_ms, task_id=task_id)
        if roll < 0.70:
            return self._locking(now_ms)
        if roll < 0.85:
            return self._send(now_ms)
        return self._read_inbox(now_ms)

    def _submit(self, now_ms: int) -> Command:
        if self._keys and self._rng.random() < 0.25:
            key = self._rng.choice(self._keys)
        else:
            key = f"k{self.number}.{self._seq}"
            self._keys.append(key)
        task = _task(self._rng, f"t{self.number}.{self._seq}", key)
        return SubmitTasks(now_ms=now_ms, tasks=[task], place=self._rng.random() < 0.5)

    def _workflow(self, now_ms: int) -> Command:
        base = f"w{self.number}.{self._seq}"
        first = _task(self._rng, f"{base}.a", key="a")
        second = _task(
            self._rng,
            f"{base}.b",
            key="b",
            dependencies=[first.id],
            trigger=self._rng.choice(("all_success", "all_done")),
        )
        return SubmitWorkflow(
            now_ms=now_ms,
            workflow_id=base,
            name=base,
            failure_policy=self._rng.choice(("fail_fast", "continue")),
            tasks=[first, second],
            idempotency_key=f"wk{base}",
            place=self._rng.random() < 0.5,
        )

    def _locking(self, now_ms: int) -> Command | None:
        session = f"s{self.number}"
        if self._waiting is not None:
            return self._check_wait(session, now_ms)
        if self._lock is None:
            name = self._rng.choice(LOCKS)
            ttl = self._rng.choice(_TTLS_MS)
            wait = self._rng.random() < 0.4
            return AcquireLock(
                now_ms=now_ms,
                name=name,
                session=session,
                ttl_ms=ttl,
                wait=wait,
                wait_timeout_ms=self._rng.choice((50, 200, 600)) if wait else None,
            )
        name, token, _ = self._lock
        roll = self._rng.random()
        if roll < 0.5:
            self._driver.ledger.write(self.number, name, token, now_ms)
            return None
        if roll < 0.8:
            ttl = self._rng.choice(_TTLS_MS)
            # A renewal sets the expiry to now + ttl, shorter or longer: until it is answered
            # the client counts on the shorter of the two.
            self._lock = (name, token, min(self._lock[2], now_ms + ttl))
            self._driver.ledger.believe(self.number, name, token, self._lock[2], now_ms)
            return RenewLock(now_ms=now_ms, name=name, session=session, token=token, ttl_ms=ttl)
        self._drop_lock()  # from the moment it asks to release, it counts on nothing
        return ReleaseLock(now_ms=now_ms, name=name, session=session, token=token)

    def _check_wait(self, session: str, now_ms: int) -> Command | None:
        """Waiting in a lock's queue: a grant shows in the leader's state (with the expiry it
        was given when the queue woke it); past its deadline it stops looking."""
        assert self._waiting is not None
        name, give_up = self._waiting
        node = self._driver.target()
        grant = None
        if node is not None:
            holders = self._driver.machine(node).locks.holders(name)
            grant = next((g for g in holders if g.session == session), None)
        if grant is not None and grant.token > self._last_token and now_ms < grant.expiry_ms:
            self._waiting = None
            self._last_token = grant.token
            self._lock = (name, grant.token, grant.expiry_ms)
            self._driver.ledger.believe(self.number, name, grant.token, grant.expiry_ms, now_ms)
            self._driver.sim.count("lease_woken")
        elif now_ms >= give_up:
            self._waiting = None
        return None

    def _drop_lock(self) -> None:
        if self._lock is not None:
            self._driver.ledger.forget(self.number, self._lock[0])
            self._lock = None

    def _send(self, now_ms: int) -> Command | None:
        peers = [c for c in self._driver.connected_agents() if c != self.agent]
        if not peers:
            return None
        return SendMessage(
            now_ms=now_ms,
            id=f"m{self.number}.{self._seq}",
            sender=self.agent,
            to=self._rng.choice(peers),
            type="note",
            content=self._seq,
        )

    def _read_inbox(self, now_ms: int) -> Command | None:
        node = self._driver.target()
        if node is None:
            return None
        sm = self._driver.machine(node)
        self._cursor = max(self._cursor, self._acked)
        after = self._cursor
        read = sm.messages.read(self.agent, after=after, now_ms=now_ms, limit=20)
        # A node behind may not hold what was read elsewhere: read only what follows.
        self._driver.ledger.read_inbox(self.agent, [(c, m.index, m.id) for c, m in read], after)
        if read:
            self._cursor = read[-1][0]
        if self._cursor > self._acked:
            return AckMessages(now_ms=now_ms, agent_id=self.agent, cursor=self._cursor)
        return None

    # -- answers --------------------------------------------------------------------------

    def answered(self, command: Command, result: object, now_ms: int) -> None:
        """The entry of ``command`` applied on the node it was sent to, with ``result``."""
        ledger = self._driver.ledger
        if isinstance(command, SubmitTasks) and isinstance(result, list):
            for new, (task_id, _created) in zip(command.tasks, result, strict=True):
                ledger.submitted(new.idempotency_key, task_id, "task")
                self._known.append(task_id)
        elif isinstance(command, SubmitWorkflow) and isinstance(result, dict):
            if result.get("created"):
                self._workflows.append(command.workflow_id)
                for new in command.tasks:
                    ledger.submitted(None, new.id, "workflow")
        elif isinstance(command, AcquireLock) and isinstance(result, Grant):
            until = command.now_ms + command.ttl_ms
            ledger.believe(self.number, command.name, result.token, until, now_ms)
            self._lock = (command.name, result.token, until)
            self._last_token = max(self._last_token, result.token)
            self._driver.sim.count("lease_granted")
        elif isinstance(command, AcquireLock) and isinstance(result, Waiting):
            deadline = command.now_ms + (command.wait_timeout_ms or 0)
            self._waiting = (command.name, deadline + 100)
        elif isinstance(command, RenewLock) and isinstance(result, Grant):
            late = self._lock is None and self._waiting is None
            if late or (self._lock is not None and self._lock[1] == command.token):
                until = command.now_ms + command.ttl_ms
                ledger.believe(self.number, command.name, command.token, until, now_ms)
                self._lock = (command.name, command.token, until)
        elif isinstance(command, ConnectAgent) and isinstance(result, AgentBox):
            self.connected = True
        elif isinstance(command, SendMessage) and isinstance(result, Sent):
            ledger.sent.setdefault(command.to, []).append(command.id)
            self._driver.sim.count("message_sent")
        elif isinstance(command, AckMessages) and isinstance(result, AgentBox):
            self._acked = max(self._acked, command.cursor)
            self._driver.sim.count("inbox_acked")
        elif isinstance(result, AgentFlowError):
            self._driver.sim.count(f"refused_{type(command).__name__}")
