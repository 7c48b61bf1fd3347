"""One chaos client: a thread with an SDK `Client` of its own that issues a seeded random mix of
operations and records each as an `Op` (names and fields as in `history.Op`).

How an outcome is classified (from :mod:`agentflow.errors` and the SDK's retry loop in
``client/_sync.py``): the SDK retries transport errors, 502/503/504, `NotLeaderError` and
`UnavailableError` for ``retry_for_s``, then raises `UnavailableError`. So:

- a `ClientError` (4xx problem: `ValidationError`, `NotFoundError`, `ConflictError`,
  `StaleTokenError`, `TimeoutExpiredError` of a lock wait, ...) is ``fail``: the master refused
  it and it did not take effect — *unless the operation is not safe to replay*: the SDK may
  have sent it once, lost the answer, and sent it again, and the 4xx is then the answer to the
  repeat (a cancel of a task the first try cancelled: 409; a release of a lock the first try
  released: 409/404). For those (``cancel``, ``lock-release``) a 4xx is ``info``;
- every other `AgentFlowError` (`ServiceError`: 503 no leader or no quorum, 429 overloaded; a
  500) and every transport error (`httpx.HTTPError`, `OSError`, timeouts) is ``info``: it may
  have happened. 429 is counted as ``info`` too: a refusal by a full inbox is decided when the
  command applies, and a retried send may have been delivered by the try before it.

Everything else an operation raises is a bug of this module: it is recorded as ``info`` and
listed in `ClientThread.unexpected`, which the tests require to stay empty.

After an ``info`` the thread takes a new process name (``c<k>.<n>``), as Jepsen does: the
indeterminate operation may still be in flight, and one process's operations must not overlap.

Writes that every retry makes safe, and how: a submit carries its idempotency key, a workflow
its key, a send its message id, a lock acquire its request id (the same grant on a retry).
Locks and messages go through `Client.request` (the SDK's retrying transport) rather than
`Client.lock` / `Agent`: those wait up to 30 s for an answer on their sockets, and an
operation here must end (as ``info`` if need be) within a few seconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from agentflow.client import Client
from agentflow.errors import AgentFlowError, ClientError
from agentflow.testing.chaos.history import FAIL, INFO, OK, Op, Outcome, Recorder
from agentflow.testing.chaos.storage import StorageClient

__all__ = [
    "AGENT_PREFIX",
    "LOCK_PREFIX",
    "MAX_RETRIES",
    "PARKED_GROUP",
    "ClientThread",
    "Invoker",
    "Shared",
    "Slot",
    "ack",
    "drain",
    "lock_holders",
    "outcome_of",
    "receive",
    "task_argv",
    "task_state",
]

REQUEST_TIMEOUT_S = 2.0  # one HTTP request of a client
RETRY_FOR_S = 3.0  # how long the SDK retries across masters before an op ends as info
MAX_RETRIES = 8  # per task, so that lost workers rarely exhaust one
RETRY_BACKOFF_S = 0.01  # doubled per retry: a fail-always task spends 2.5 s waiting in all
LOCK_TTL_S = 3.0  # short, so that a paused or cut-off holder loses its lock
LOCK_WAIT_S = 1.0
# A holder stalls now and then past its TTL between appends, as a process paused by the
# scheduler or a collector would: its lease ends, another holder may take the lock, and its
# next append carries a token the storage host's fence must refuse.
HOLDER_STALL_CHANCE = 0.1
HOLDER_STALL_S = LOCK_TTL_S + 1.0
LOCKS = 2
LOCK_PREFIX = "chaos-lock-"
AGENT_PREFIX = "chaos-agent-"
PARKED_GROUP = "parked"  # no worker serves it: its tasks are registers
PARKED_TASKS = 4  # registers shared by all clients
PRIORITIES = ("urgent", "high", "medium", "low")
RECENT_TASKS = 10  # what a client cancels and reads from
INBOX_READ = 100  # messages per receive
UNSAFE_TO_REPLAY = frozenset({"cancel", "lock-release"})
RULE_WEIGHTS = {"ok": 70, "fail-once": 10, "fail-always": 5, "slow": 15}


def outcome_of(f: str, exc: BaseException) -> Outcome | None:
    """How an operation that raised ``exc`` ended; None if no system could have raised it."""
    if isinstance(exc, ClientError):
        return INFO if f in UNSAFE_TO_REPLAY else FAIL
    if isinstance(exc, AgentFlowError | httpx.HTTPError | OSError):
        return INFO
    return None


def task_argv(python: str, storage_url: str, rule: str) -> list[str]:
    """The command of a chaos task (see :mod:`agentflow.testing.chaos.taskbody`)."""
    module = "agentflow.testing.chaos.taskbody"
    return [python, "-m", module, "--storage", storage_url, "--rule", rule]


@dataclass(slots=True)
class Shared:
    """What every client of one workload shares: the parked tasks (registers), and names."""

    seed: int
    clients: int
    storage_url: str
    python: str
    locks: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    parked: list[str] = field(default_factory=list)
    mutex: threading.Lock = field(default_factory=threading.Lock)
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.locks = tuple(f"{LOCK_PREFIX}{k}" for k in range(LOCKS))
        self.agents = tuple(f"{AGENT_PREFIX}{k}" for k in range(self.clients))


class Slot:
    """The one operation a client has in flight; `abandon` records it as ``info`` when the
    workload stops waiting, and from then on the thread records nothing."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._mutex = threading.Lock()
        self._pending: tuple[str, str, Mapping[str, Any], int] | None = None
        self.closed = False

    def begin(self, process: str, f: str, args: Mapping[str, Any]) -> int | None:
        """The invocation time, or None once abandoned."""
        with self._mutex:
            if self.closed:
                return None
            invoke_ns = time.monotonic_ns()
            self._pending = (process, f, args, invoke_ns)
            return invoke_ns

    def end(self, outcome: Outcome, result: Mapping[str, Any], error: str | None) -> Op | None:
        with self._mutex:
            pending, self._pending = self._pending, None
            if self.closed or pending is None:
                return None
            process, f, args, invoke_ns = pending
            return self._recorder.record(
                process, f, args, invoke_ns=invoke_ns, outcome=outcome, result=result, error=error
            )

    def abandon(self) -> None:
        with self._mutex:
            self.closed = True
            pending, self._pending = self._pending, None
            if pending is not None:
                process, f, args, invoke_ns = pending
                why = "still pending when the workload stopped"
                self._recorder.record(
                    process, f, args, invoke_ns=invoke_ns, outcome=INFO, error=why
                )


class Invoker:
    """Times, runs and classifies one operation after another under one process name."""

    def __init__(self, name: str, slot: Slot, shared: Shared) -> None:
        self._name = name
        self._generation = 0
        self.slot = slot
        self.shared = shared

    @property
    def process(self) -> str:
        return self._name if not self._generation else f"{self._name}.{self._generation}"

    def __call__(
        self, f: str, args: Mapping[str, Any], call: Callable[[], Mapping[str, Any]]
    ) -> Op | None:
        """The recorded op (None once the slot is abandoned)."""
        if self.slot.begin(self.process, f, args) is None:
            return None
        try:
            op = self.slot.end(OK, call(), None)
        except Exception as exc:
            outcome = outcome_of(f, exc)
            if outcome is None:
                with self.shared.mutex:
                    self.shared.unexpected.append(f"{f} {dict(args)}: {exc!r}")
                outcome = INFO
            op = self.slot.end(outcome, {}, f"{type(exc).__name__}: {exc}")
        if op is not None and op.type == INFO:
            self._generation += 1
        return op


def lock_holders(client: Client, lock: str) -> dict[str, Any]:
    info = client.lock_info(lock)
    return {"holders": [{"holder": h["session"], "token": h["token"]} for h in info["holders"]]}


def receive(client: Client, agent: str) -> dict[str, Any]:
    answer = client.request("GET", f"/api/v1/agents/{agent}/inbox", params={"limit": INBOX_READ})
    messages = [
        {
            "sender": m["content"]["sender"],
            "seq": m["content"]["seq"],
            "message_id": m["id"],
            "cursor": m["cursor"],
        }
        for m in answer["messages"]
    ]
    return {"messages": messages}


def ack(client: Client, agent: str, upto: int) -> dict[str, Any]:
    client.request("POST", f"/api/v1/agents/{agent}/ack", json={"cursor": upto})
    return {}


def task_state(client: Client, task_id: str) -> dict[str, Any]:
    info = client.get(task_id)
    return {"status": info.status, "attempt": info.attempts, "priority": info.priority}


class ClientThread:
    """One client: its own SDK client, agent, random stream and process name."""

    def __init__(
        self, k: int, shared: Shared, recorder: Recorder, client: Client, pause_s: float
    ) -> None:
        self.k = k
        self.pause_s = pause_s
        self.shared = shared
        self.client = client
        self.storage = StorageClient(shared.storage_url, timeout_s=REQUEST_TIMEOUT_S)
        self.rng = random.Random(f"{shared.seed}/{k}")
        self.invoke = Invoker(f"c{k}", Slot(recorder), shared)
        self.agent = shared.agents[k]
        self._seq: dict[str, int] = {}
        self._bodies: dict[str, dict[str, Any]] = {}  # idempotency key → submitted fields
        self._recent: list[str] = []
        self._made = 0  # keys and holders made by this client
        self._stop = threading.Event()  # the workload's, once running: it cuts a stall short

    def close(self) -> None:
        self.storage.close()
        self.client.close()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        ops: Sequence[Callable[[], None]] = (
            self.submit,
            self.resubmit,
            self.workflow,
            self.cancel,
            self.read,
            self.parked_submit,
            self.set_priority,
            self.parked_read,
            self.lock_cycle,
            self.lock_read,
            self.send,
            self.receive,
        )
        weights = (20, 4, 5, 4, 8, 3, 8, 8, 10, 3, 12, 8)
        while not stop.is_set() and not self.invoke.slot.closed:
            self.rng.choices(ops, weights)[0]()
            stop.wait(self.rng.uniform(0.0, 2 * self.pause_s))

    def _name(self, kind: str) -> str:
        self._made += 1
        return f"chaos-{self.shared.seed}-c{self.k}-{kind}{self._made}"

    def _learn(self, task_id: str) -> None:
        self._recent = [*self._recent, task_id][-RECENT_TASKS:]

    # -- tasks ------------------------------------------------------------------------------

    def _submit(self, key: str, fields: dict[str, Any], args: dict[str, Any]) -> str | None:
        def call() -> dict[str, Any]:
            return {"task_id": self.client.submit(**fields).id}

        op = self.invoke("submit", args, call)
        return str(op.result["task_id"]) if op is not None and op.ok else None

    def submit(self) -> None:
        rule = self.rng.choices(list(RULE_WEIGHTS), list(RULE_WEIGHTS.values()))[0]
        key = self._name("t")
        fields = {
            "args": task_argv(self.shared.python, self.shared.storage_url, rule),
            "idempotency_key": key,
            "title": key,
            "max_retries": MAX_RETRIES,
            "retry_backoff_s": RETRY_BACKOFF_S,
        }
        self._bodies[key] = fields
        task_id = self._submit(key, fields, {"key": key, "rule": rule})
        if task_id is not None:
            self._learn(task_id)

    def resubmit(self) -> None:
        """The same key and fields again: the master must answer with the same task."""
        if not self._bodies:
            return self.submit()
        key = self.rng.choice(sorted(self._bodies))
        fields = self._bodies[key]
        rule = fields["args"][-1]
        args: dict[str, Any] = {"key": key, "rule": rule, "again": True}
        if fields.get("group") == PARKED_GROUP:  # the register's submit, replayed
            args.update(group=PARKED_GROUP, priority=fields["priority"])
        self._submit(key, fields, args)
        return None

    def workflow(self) -> None:
        key = self._name("w")
        names = ["a", "b", "c"][: self.rng.randint(2, 3)]
        rules = {n: self.rng.choice(("ok", "ok", "ok", "fail-once")) for n in names}
        spec = {
            "name": key,  # final reads find a workflow by its name: views do not show the key
            "idempotency_key": key,
            "defaults": {"max_retries": MAX_RETRIES, "retry_backoff_s": RETRY_BACKOFF_S},
            "tasks": [
                {
                    "id": n,
                    "args": task_argv(self.shared.python, self.shared.storage_url, rules[n]),
                    "dependencies": [] if n == "a" else ["a"],
                }
                for n in names
            ],
        }

        def call() -> dict[str, Any]:
            view = self.client.submit_workflow(spec)
            return {
                "workflow_id": view["id"],
                "task_ids": {t["key"]: t["id"] for t in view["tasks"]},
            }

        op = self.invoke("workflow", {"key": key, "names": names, "rules": rules}, call)
        if op is not None and op.ok:
            for task_id in op.result["task_ids"].values():
                self._learn(task_id)

    def cancel(self) -> None:
        if not self._recent:
            return
        task_id = self.rng.choice(self._recent)
        self.invoke(
            "cancel", {"task_id": task_id}, lambda: {"status": self.client.cancel(task_id).status}
        )

    def read(self) -> None:
        if self._recent:
            task_id = self.rng.choice(self._recent)
            self.invoke("task-read", {"task_id": task_id}, lambda: task_state(self.client, task_id))

    # -- parked tasks: registers ------------------------------------------------------------

    def parked_submit(self) -> None:
        with self.shared.mutex:
            full = len(self.shared.parked) >= PARKED_TASKS
        if full:
            return self.parked_read()
        key, priority = self._name("p"), self.rng.choice(PRIORITIES)
        fields = {
            "args": task_argv(self.shared.python, self.shared.storage_url, "ok"),
            "idempotency_key": key,
            "title": key,
            "group": PARKED_GROUP,
            "priority": priority,
        }
        self._bodies[key] = fields
        args = {"key": key, "rule": "ok", "group": PARKED_GROUP, "priority": priority}
        task_id = self._submit(key, fields, args)
        if task_id is not None:
            with self.shared.mutex:
                self.shared.parked.append(task_id)
        return None

    def _parked(self) -> str | None:
        with self.shared.mutex:
            return self.rng.choice(self.shared.parked) if self.shared.parked else None

    def set_priority(self) -> None:
        task_id, priority = self._parked(), self.rng.choice(PRIORITIES)
        if task_id is None:
            return self.parked_submit()
        args = {"task_id": task_id, "priority": priority, "group": PARKED_GROUP}

        def call() -> dict[str, Any]:
            self.client.set_priority(task_id, priority)
            return {}

        self.invoke("set-priority", args, call)
        return None

    def parked_read(self) -> None:
        task_id = self._parked()
        if task_id is not None:
            args = {"task_id": task_id, "group": PARKED_GROUP}
            self.invoke("task-read", args, lambda: task_state(self.client, task_id))

    # -- locks ------------------------------------------------------------------------------

    def lock_cycle(self) -> None:
        """Acquire, 1-3 fenced appends through the storage host, release."""
        lock, holder = self.rng.choice(self.shared.locks), self._name("h")

        def acquire() -> dict[str, Any]:
            body = {"session": holder, "ttl_s": LOCK_TTL_S, "wait_s": LOCK_WAIT_S}
            body["request_id"] = holder  # a retried acquire gets the same grant
            path = f"/api/v1/locks/{lock}/acquire"
            answer = self.client.request(
                "POST", path, json=body, timeout_s=LOCK_WAIT_S + REQUEST_TIMEOUT_S
            )
            return {"token": int(answer["token"])}

        op = self.invoke("lock-acquire", {"lock": lock, "holder": holder}, acquire)
        if op is None or not op.ok:
            return
        token = int(op.result["token"])
        for i in range(self.rng.randint(1, 3)):
            stall = self.rng.random() < HOLDER_STALL_CHANCE
            self._stop.wait(HOLDER_STALL_S if stall else self.rng.uniform(0.0, 0.3))
            self._append(lock, holder, token, f"{holder}#{i}")

        def release() -> dict[str, Any]:
            body = {"session": holder, "token": token}
            self.client.request("POST", f"/api/v1/locks/{lock}/release", json=body)
            return {}

        self.invoke("lock-release", {"lock": lock, "holder": holder, "token": token}, release)

    def _append(self, lock: str, holder: str, token: int, data: str) -> None:
        def call() -> dict[str, Any]:
            answer = self.storage.write(f"lock:{lock}", holder, token, data)
            return {"accepted": bool(answer["accepted"])}

        args = {"lock": lock, "holder": holder, "token": token, "data": data}
        self.invoke("fenced-append", args, call)

    def lock_read(self) -> None:
        lock = self.rng.choice(self.shared.locks)
        self.invoke("lock-read", {"lock": lock}, lambda: lock_holders(self.client, lock))

    # -- messages ---------------------------------------------------------------------------

    def send(self) -> None:
        others = [a for a in self.shared.agents if a != self.agent]
        if not others:
            return
        to = self.rng.choice(others)
        seq = self._seq[to] = self._seq.get(to, 0) + 1
        message_id = f"chaos-{self.shared.seed}-{self.agent}-{to}-{seq}"
        body = {
            "id": message_id,  # a retried send is delivered once
            "from": self.agent,
            "to": to,
            "type": "chaos",
            "content": {"sender": self.agent, "seq": seq},
        }

        def call() -> dict[str, Any]:
            self.client.request("POST", "/api/v1/messages", json=body)
            return {"message_id": message_id}

        self.invoke("send", {"sender": self.agent, "receiver": to, "seq": seq}, call)

    def receive(self) -> None:
        drain(self.invoke, self.client, self.agent, rounds=1)


def drain(invoke: Invoker, client: Client, agent: str, *, rounds: int) -> bool:
    """Up to ``rounds`` of receive, then ack up to the last message; True once a receive came
    back ok and empty (the inbox is drained)."""
    for _ in range(rounds):
        op = invoke("receive", {"agent": agent}, lambda: receive(client, agent))
        if op is None or not op.ok:
            return False
        messages = op.result["messages"]
        if not messages:
            return True
        upto = int(messages[-1]["cursor"])
        invoke("ack", {"agent": agent, "upto": upto}, partial(ack, client, agent, upto))
    return False
