"""The master process's services, assembled: command log, scheduler, sessions, waiters.

:class:`MasterService` owns every background task of a master in one ``TaskGroup`` (started
by :meth:`run`, cancelled on shutdown) and gives the routes what they need: propose, wait for a
task to finish, follow its output, statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket

from agentflow.api.event_hub import EventHub
from agentflow.api.identity import TokenVerifier
from agentflow.api.request_metrics import RequestTimings
from agentflow.api.sessions import SessionHub
from agentflow.api.task_metrics import TaskTimings
from agentflow.api.waiters import KeyedWaiters, wait_for
from agentflow.cluster.history import HISTORY_FILE, History, TaskHistory
from agentflow.cluster.node import ClusterConfig, RaftLog
from agentflow.cluster.seam import MasterLog
from agentflow.config import MasterConfig
from agentflow.errors import AgentFlowError, ConflictError, NotFoundError, OverloadedError
from agentflow.scheduler import Scheduler, SchedulerConfig
from agentflow.scheduler.lockkeeper import LockKeeper
from agentflow.state import StateLimits, StateMachine, TaskRecord, TaskStatus
from agentflow.state.commands import NewTask, SubmitTasks
from agentflow.state.envelope import WORKSPACE_FORMAT
from agentflow.state.events import (
    Event,
    LockChanged,
    MessageDelivered,
    OutputAppended,
    ReplyArrived,
    TaskChanged,
    WorkflowChanged,
)
from agentflow.state.locks import LockLimits
from agentflow.state.messages import MessageLimits
from agentflow.state.records import TERMINAL_STATUSES, WorkflowRecord, WorkflowStatus

__all__ = [
    "MasterService",
    "accept_on_leader",
    "master_log",
    "raft_log",
    "service",
    "state_machine",
    "wall_clock_ms",
]

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def state_machine(config: MasterConfig) -> StateMachine:
    """An empty state machine with the limits ``config`` sets."""
    return StateMachine(
        limits=StateLimits(
            output_tail_bytes=config.output_tail_bytes,
            output_retained_bytes=config.output_retained_bytes,
            live_finished_tasks=config.live_finished_tasks,
            max_finished_tasks=config.max_finished_tasks,
        ),
        lock_limits=LockLimits(lock_delay_ms=int(config.lock_delay_s * 1000)),
        message_limits=MessageLimits(
            history_max=config.message_history,
            inbox_max=config.inbox_max,
            inbox_bytes_max=config.inbox_max_bytes,
            inbox_total_bytes_max=config.inbox_total_bytes,
            history_bytes_max=config.message_history_bytes,
            max_message_bytes=config.max_message_bytes,
        ),
    )


def master_log(config: MasterConfig, machine: StateMachine) -> MasterLog:
    """The command log ``config`` describes: the embedded Raft log (``--store sqlite``) or a
    SQL database's (``--store postgresql://...``; its modules are loaded only then)."""
    if config.sql_store:
        from agentflow.cluster.sql.wiring import sql_log

        return sql_log(config, machine)
    return raft_log(config, machine)


def raft_log(config: MasterConfig, machine: StateMachine) -> RaftLog:
    """The Raft log of the master ``config`` describes, applying to ``machine``."""
    raft_host, raft_port = config.raft_address
    return RaftLog(
        ClusterConfig(
            node_id=config.node_id,
            data_dir=config.data_dir,
            raft_host=raft_host,
            raft_port=raft_port,
            api_url=config.api_url,
            cluster_id=config.cluster_id,
            token=config.peer_token(),
            tls=config.peer_tls(),
            peers=config.peer_map(),
            join=config.join,
            force_new_cluster=config.force_new_cluster,
            snapshot_every=config.snapshot_every,
            # Two ticks per heartbeat, so the election timeout has a finer grain.
            tick_s=config.raft_heartbeat_s / 2,
            heartbeat_tick=2,
            election_tick=max(3, round(config.election_timeout_s / (config.raft_heartbeat_s / 2))),
        ),
        machine,
    )


class MasterService:
    def __init__(
        self,
        config: MasterConfig,
        clock_ms: Callable[[], int] = wall_clock_ms,
        *,
        log: MasterLog | None = None,
    ) -> None:
        """A master over ``log`` (its state machine included); by default the log that
        ``config`` describes (:func:`master_log`), over a state machine with ``config``'s limits."""
        self.config = config
        self.now_ms = clock_ms
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if log is None:
            log = master_log(config, state_machine(config))
        self.log: MasterLog = log
        self.machine = log.machine
        self.scheduler = Scheduler(
            self.log,
            clock_ms,
            SchedulerConfig(
                worker_loss_timeout_s=config.worker_loss_timeout_s,
                lost_worker_retention_s=config.lost_worker_retention_s,
            ),
        )
        self.locks = LockKeeper(self.log, clock_ms)
        self.verifier: TokenVerifier | None = None  # None: no --api-token, the API is open
        if config.api_token:
            self.verifier = TokenVerifier(config.api_token, self.machine, clock_ms)
        self.hub = SessionHub(self.machine, self.verifier.task_key if self.verifier else None)
        self.events = EventHub(
            self.machine,
            ring_size=config.event_ring,
            queue_limit=config.event_queue_max,
            max_subscriptions=config.max_event_sockets,
        )
        self.started_at_ms = clock_ms()
        self._task_waiters = KeyedWaiters()  # by task id, set when it finishes
        self._workflow_waiters = KeyedWaiters()  # by workflow id, set when it ends
        self.lock_waiters = KeyedWaiters()  # by lock session
        self.inbox_waiters = KeyedWaiters()  # by agent id
        self.reply_waiters = KeyedWaiters()  # by the request's correlation id
        self._followers: dict[str, set[asyncio.Queue[OutputAppended | None]]] = {}
        self._finish_times: deque[int] = deque(maxlen=100_000)
        self.history = self._history(config)  # tasks evicted from memory
        self.log.subscribe(self.history.on_events)  # first: a waiter woken below reads it
        self.log.subscribe(self.hub.on_events)
        self.log.subscribe(self._on_events)
        self.log.subscribe(self.events.on_events)
        self.task_timings = TaskTimings(self.machine, lambda: self.log.is_leader)
        self.log.subscribe(self.task_timings.on_events)
        self.request_timings = RequestTimings()  # observed by the app (api/request_metrics)
        self.log.on_leadership(self._leadership_changed)
        self._group: asyncio.TaskGroup | None = None
        self._started = False
        self.closing = False

    def _history(self, config: MasterConfig) -> History:
        """This master's history file, or with a SQL store its history tables (every master
        reads them; the writer writes them)."""
        if config.sql_store:
            from agentflow.cluster.sql.wiring import sql_history

            return sql_history(config, self.machine, lambda: self.log.is_leader, self.now_ms)
        return TaskHistory(config.data_dir / HISTORY_FILE, keep=config.history_max_tasks)

    async def start(self) -> None:
        """Open the log and the peer port; once (``agentflow master`` starts the service before
        the HTTP server, whose startup then finds it started)."""
        if self._started:
            return
        self._started = True
        await self.log.start()
        self.events.started()

    async def run(self) -> None:
        """Run the background loops until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.scheduler.run(), name="scheduler")
            group.create_task(self.locks.run(), name="lock-keeper")
            group.create_task(self.history.run(), name="history-writer")

    async def stop(self) -> None:
        self.closing = True
        self.hub.close_all()
        self.events.wake_all()
        # The history first: with a SQL store, whether it writes what it holds depends on
        # this master still being the writer, which closing the log ends.
        await self.history.aclose()
        await self.log.close()

    def _leadership_changed(self, is_leader: bool) -> None:
        """A new leader re-arms worker liveness in full; a deposed one drops its sessions."""
        self.scheduler.rearm()
        self.locks.rearm()
        if not is_leader:
            self.hub.close_all()

    # -- events -----------------------------------------------------------------------------

    def _on_events(self, events: list[Event]) -> None:
        now = self.now_ms()
        for event in events:
            if isinstance(event, TaskChanged):
                if TaskStatus(event.status) in TERMINAL_STATUSES:
                    self._finish_times.append(now)
                    self._finished(event.task_id)
            elif isinstance(event, WorkflowChanged):
                if event.status != "running":
                    self._workflow_waiters.notify(event.workflow_id)
            elif isinstance(event, LockChanged):
                self.lock_waiters.notify(event.session)
            elif isinstance(event, MessageDelivered):
                self.inbox_waiters.notify(event.agent_id)
            elif isinstance(event, ReplyArrived):
                self.reply_waiters.notify(event.correlation_id)
            elif isinstance(event, OutputAppended):
                for queue in self._followers.get(event.task_id, ()):
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(event)

    def _finished(self, task_id: str) -> None:
        self._task_waiters.notify(task_id)
        for queue in self._followers.get(task_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def catch_up(self) -> bool:
        """On a follower, apply everything committed so far; False on the leader (nothing to
        catch up) or when that cannot be done now."""
        if self.log.is_leader:
            return False
        try:
            await self.log.read_barrier()
        except AgentFlowError:
            return False
        return True

    # -- operations used by routes ------------------------------------------------------------

    async def submit(self, tasks: list[NewTask]) -> list[tuple[str, bool]]:
        require_workspaces(self, tasks)
        queued = self.machine.tasks.status_counts[TaskStatus.QUEUED]
        if queued + len(tasks) > self.config.max_queued_tasks:
            raise OverloadedError(
                f"queue holds {queued} tasks; limit is {self.config.max_queued_tasks}"
            )
        result: list[tuple[str, bool]] = await self.log.propose(
            SubmitTasks(now_ms=self.now_ms(), tasks=tasks, place=True)
        )
        return result

    def task(self, task_id: str) -> TaskRecord:
        task = self.machine.tasks.peek(task_id)  # read only: a frozen task stays frozen
        if task is None:
            raise NotFoundError(f"no task {task_id}", task_id=task_id)
        return task

    async def task_or_history(self, task_id: str) -> tuple[TaskRecord, bool]:
        """The task, from the state or else from the history (True)."""
        task = self.machine.tasks.peek(task_id)
        if task is not None:
            return task, False
        task = await self.history.find(task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}", task_id=task_id)
        return task, True

    async def wait_finished(self, task_id: str, timeout_s: float) -> tuple[TaskRecord, bool]:
        """The task once terminal, or as it is when ``timeout_s`` runs out; and whether it was
        read from the history (evicted from memory, so long finished)."""
        with self._task_waiters.watch(task_id) as finished:
            task, old = await self.task_or_history(task_id)
            if task.status in TERMINAL_STATUSES or timeout_s <= 0:
                return task, old
            await wait_for(finished, timeout_s)
        return await self.task_or_history(task_id)

    async def wait_workflow(self, workflow_id: str, timeout_s: float) -> WorkflowRecord:
        """The workflow once it has finished, or as it is when ``timeout_s`` runs out."""
        with self._workflow_waiters.watch(workflow_id) as ended:
            wf = self.machine.workflows[workflow_id]
            if wf.status is not WorkflowStatus.RUNNING or timeout_s <= 0:
                return wf
            await wait_for(ended, timeout_s)
        return self.machine.workflows[workflow_id]

    async def follow_output(
        self, task_id: str, stream: str | None = None, offset: int = 0
    ) -> AsyncIterator[bytes]:
        """Everything held of stdout and stderr, then new chunks until the task ends. With
        ``stream``, only that stream, from its absolute byte ``offset`` on (what is still held
        of it): a client that lost its connection resumes where it was, on any master."""
        task, _ = await self.task_or_history(task_id)
        queue: asyncio.Queue[OutputAppended | None] = asyncio.Queue(4096)
        self._followers.setdefault(task_id, set()).add(queue)
        try:
            tails = self.machine.outputs.get(task_id, {})
            sent = {name: tail.total for name, tail in tails.items()}  # where each stream is
            if stream:
                sent[stream] = max(sent.get(stream, 0), offset)
            for name in (stream,) if stream else ("stdout", "stderr"):
                tail = tails.get(name)
                held = b"" if tail is None else tail.since(offset) if stream else bytes(tail.data)
                if held:
                    yield held
            if task.status in TERMINAL_STATUSES:
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15.0)
                except TimeoutError:
                    if (await self.task_or_history(task_id))[0].status in TERMINAL_STATUSES:
                        return
                    continue
                if event is None:
                    return
                if stream and event.stream != stream:
                    continue
                chunk = _unsent(event, sent.get(event.stream, 0))
                sent[event.stream] = max(sent.get(event.stream, 0), event.end)
                if chunk:
                    yield chunk
        finally:
            followers = self._followers.get(task_id)
            if followers is not None:
                followers.discard(queue)
                if not followers:
                    del self._followers[task_id]

    def queue_stats(self) -> dict[str, Any]:
        sm = self.machine
        now = self.now_ms()
        by_priority = {p: 0 for p in ("urgent", "high", "medium", "low")}
        by_group: dict[str, int] = {}
        oldest: int | None = None
        for task in sm.tasks.live():  # a frozen task is finished: never queued
            if task.status is TaskStatus.QUEUED:
                by_priority[task.priority.value] += 1
                by_group[task.group] = by_group.get(task.group, 0) + 1
                oldest = task.enqueued_at if oldest is None else min(oldest, task.enqueued_at)
        window_ms = 60_000
        recent = sum(1 for t in self._finish_times if now - t <= window_ms)
        span_s = min(window_ms, max(1, now - self.started_at_ms)) / 1000.0
        counts, totals = sm.tasks.status_counts, sm.tasks.totals
        return {
            "queued": sum(by_priority.values()),
            "by_priority": by_priority,
            "by_group": by_group,
            "oldest_wait_s": round((now - oldest) / 1000.0, 3) if oldest is not None else 0.0,
            "pending": counts[TaskStatus.PENDING],
            "assigned": counts[TaskStatus.ASSIGNED],
            "running": counts[TaskStatus.RUNNING],
            "totals": {
                k: totals[k]
                for k in ("submitted", "completed", "failed", "retried", "timed_out", "cancelled")
            }
            | {"requeued": totals["requeued"]},
            "finished_per_s_1m": round(recent / span_s, 2),
            "workers": {
                "total": len(sm.workers),
                "live": sum(1 for _ in sm.workers.live()),
                "free_slots": sm.workers.free_slots(),
            },
        }


def service(request: Request) -> MasterService:
    """The master's services, for a route handling ``request``."""
    svc: MasterService = request.app.state.service
    return svc


async def accept_on_leader(ws: WebSocket) -> MasterService | None:
    """Accept a JSON socket that only the leader serves: elsewhere, answer with the leader's
    URL (``None`` while there is none) and close with 4503."""
    svc: MasterService = ws.app.state.service
    await ws.accept()
    if svc.log.is_leader:
        return svc
    error = svc.log.not_leader()
    await ws.send_json({"error": error.detail, "leader_url": svc.log.leader_url})
    await ws.close(code=4503)
    return None


def _unsent(event: OutputAppended, sent: int) -> bytes:
    """What of ``event``'s chunk lies past byte ``sent`` of its stream."""
    start = event.end - len(event.data)
    return event.data[max(0, sent - start) :]


def require_workspaces(svc: MasterService, tasks: Iterable[NewTask]) -> None:
    """Refuse workspace tasks (409) while the cluster still writes a log format from before
    them: a master or worker of the older release would drop or choke on the field."""
    if not any("workspace" in task.spec for task in tasks):
        return
    written = svc.log.log_format()
    if written < WORKSPACE_FORMAT:
        raise ConflictError(
            f"the cluster still writes log format {written}; finish the upgrade to use workspaces"
        )
