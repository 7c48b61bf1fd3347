"""The worker process: one session with the master at a time, attempts that outlive it.

Attempts belong to the worker, not to a session: when the master goes away they keep running,
the worker reconnects (with backoff, rotating through the master URLs) and its hello names
every attempt it still holds, finished-but-unacknowledged ones included, so the master neither
loses nor re-runs them. Reports are batched over a short window (:mod:`.outbox`); an outcome
stays there until the master acknowledges the report that carried it.

SIGTERM (or SIGINT) drains: no new work, running attempts finish, then the worker says bye
and exits. A second signal kills the running attempts and exits at once. That drain is this
process's own: the next process under the same id starts active (an operator's drain stays).

Refused its id by the master, the worker stops or waits as :mod:`.claim` decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from agentflow import wire
from agentflow.config import WorkerConfig, tls_context
from agentflow.errors import ConflictError
from agentflow.logformat import bind
from agentflow.worker.backlog import Backlog
from agentflow.worker.batching import Batches
from agentflow.worker.claim import IdClaim, IdRefusedError
from agentflow.worker.environment import AttemptFiles, attempt_environment, inherited_environment
from agentflow.worker.executor import Attempt, Finished, build_argv
from agentflow.worker.outbox import Outbox
from agentflow.worker.pyexec import CallBatch, FunctionAttempt, PythonPool, function_request
from agentflow.worker.workspace import Workspaces

__all__ = ["Worker"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
BACKOFF_MAX_S = 10.0


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        resources: dict[str, float],
        labels: dict[str, str],
        gpus: list[dict[str, Any]] | None = None,
    ) -> None:
        self.gpus = gpus or []
        self.config = config
        self.slots = config.slots or max(1, int(resources.get("cpu", 1)))
        self.prefetch = max(-1, config.prefetch)  # -1: the master sizes the queue
        self.resources = resources
        self.labels = labels
        self._attempts: dict[str, Attempt | FunctionAttempt] = {}  # running or waiting
        self._files: dict[str, AttemptFiles] = {}  # per attempt: parents file, output file
        self._workspaces = Workspaces.from_config(config)
        self._scratch: Path | None = None  # the attempts' files, made at the first
        self._backlog: Backlog[Attempt | FunctionAttempt] = Backlog()
        self._after: dict[str, dict[str, Any]] = {}  # assign frames waiting for a kill to end
        self._pool: PythonPool | None = None
        self._inherited = inherited_environment()  # what attempts get of the worker's env
        self.running = 0  # attempts on a slot (read by /metrics too)
        # Given by the master at registration; proves a reconnect is this same instance.
        self._secret: str | None = None
        self._ws: ClientConnection | None = None
        self.outbox = Outbox(config.report_interval_s, lambda: self._ws)
        self._batches = Batches(  # Python calls sent to a runner together
            limit=max(1, config.runner_batch),
            slots=self.slots,
            pool=self._python_pool,
            started=self.outbox.started,
            settled=self._done,
            unstarted=self._unstarted,
        )
        self._url_index = 0
        self._draining = False
        self._claim = IdClaim(config.worker_id)
        self._fatal: ConflictError | None = None
        self._stop = asyncio.Event()
        self._attempt_group: asyncio.TaskGroup | None = None

    @property
    def master_url(self) -> str:
        return self.config.master_urls[self._url_index % len(self.config.master_urls)]

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        _use_pidfd_child_watcher(loop)
        for sig in (signal.SIGTERM, signal.SIGINT) if install_signals else ():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)
        await self._workspaces.start()
        try:
            async with asyncio.TaskGroup() as group:
                self._attempt_group = group
                reporter = group.create_task(self.outbox.run(), name="reporter")
                await self._connect_loop()
                reporter.cancel()
        finally:
            if self._pool is not None:
                await self._pool.aclose()
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
        if self._fatal is not None:
            raise self._fatal
        log.info("worker %s stopped", self.config.worker_id)

    def _on_signal(self) -> None:
        if self._draining:
            log.warning("second signal: killing %d running attempt(s)", len(self._attempts))
            for attempt in self._attempts.values():
                attempt.cancel()
            self._stop.set()
            return
        self.drain()

    def drain(self) -> None:
        """Take no new work; exit once running attempts finish and are acknowledged."""
        log.info("draining: %d attempt(s) still running", len(self._attempts))
        self._draining = True
        self._send_soon({"t": "drain"})
        self._check_drained()

    def _check_drained(self) -> None:
        if self._draining and not self._attempts and self.outbox.settled:
            self._stop.set()

    async def _connect_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            url = self.master_url
            delay: float | None = None
            try:
                await self._session(url)
                backoff = 0.1
            except IdRefusedError as exc:
                delay = self._on_id_refused(exc)
                if delay is None:
                    return
            except (OSError, TimeoutError, WebSocketException, wire.FrameError) as exc:
                log.warning("session with %s ended: %s", url, exc or type(exc).__name__)
            except Exception:  # never let a session bug kill the attempts this worker runs
                log.exception("session with %s failed", url)
            finally:
                self._ws = None
            if self._stop.is_set():
                return
            self._url_index += 1
            if delay is None:
                delay = backoff * (0.5 + random.random())  # jitter spreads reconnect storms
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _on_id_refused(self, refusal: IdRefusedError) -> float | None:
        """Seconds until the next try, or None once the worker stops for good (any attempt
        it still runs was taken from it with its id)."""
        try:
            return self._claim.refused(refusal, asyncio.get_running_loop().time())
        except ConflictError as exc:
            self._fatal = exc
            for attempt in self._attempts.values():
                attempt.cancel()
            self._stop.set()
            return None

    async def _session(self, url: str) -> None:
        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        ws_url = ws_url.rstrip("/") + f"/api/v1/workers/{self.config.worker_id}/session"
        headers = {}
        if self.config.api_token:
            headers["Authorization"] = f"Bearer {self.config.api_token}"
        tls: dict[str, Any] = {}
        if ws_url.startswith("wss://"):
            tls["ssl"] = tls_context(self.config.tls_ca)
        async with connect(
            ws_url,
            additional_headers=headers,
            **tls,
            open_timeout=CONNECT_TIMEOUT_S,
            max_size=wire.MAX_FRAME_BYTES,
            compression=None,
        ) as ws:
            await ws.send(wire.pack(self._hello()))
            welcome = wire.unpack(await _recv_bytes(ws, CONNECT_TIMEOUT_S), wire.MAX_FRAME_BYTES)
            if welcome["t"] != "welcome":
                if "holder" in welcome:
                    raise IdRefusedError(welcome)
                self._follow_leader(welcome.get("leader_url"))
                raise wire.FrameError(f"master refused the session: {welcome.get('detail')}")
            secret = welcome.get("secret")
            if isinstance(secret, str):
                self._secret = secret
            log.info("connected to %s as %s", url, self.config.worker_id)
            self._claim.welcomed(welcome.get("drain"))
            self._ws = ws
            self.outbox.reconnected()
            if self._draining:
                await ws.send(wire.pack({"t": "drain"}))
            interval = float(welcome.get("heartbeat_interval_s", self.config.heartbeat_interval_s))
            await self._serve(ws, interval)

    async def _serve(self, ws: ClientConnection, interval: float) -> None:
        """Receive and heartbeat until the connection fails or the worker stops.

        Plain tasks rather than a TaskGroup: a broken connection must surface as the
        connection error itself, for the reconnect loop to catch.
        """
        receiver = asyncio.create_task(self._receive(ws))
        beats = asyncio.create_task(self._heartbeats(ws, interval))
        stopper = asyncio.create_task(self._stop.wait())
        tasks = (receiver, beats, stopper)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                await ws.send(wire.pack({"t": "bye"}))
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _follow_leader(self, leader_url: object) -> None:
        """Next connect goes to the leader the refusing master named, if it named one."""
        if isinstance(leader_url, str) and leader_url:
            urls = list(self.config.master_urls)
            if leader_url not in urls:
                urls.append(leader_url)
                self.config = replace(self.config, master_urls=tuple(urls))
            # The connect loop advances the index once before the next try.
            self._url_index = urls.index(leader_url) - 1

    def _hello(self) -> dict[str, Any]:
        held = [(a.task_id, a.token) for a in self._attempts.values()]
        held += [(o["task_id"], o["token"]) for o in self.outbox.pending_outcomes()]
        return {
            "t": "hello",
            "worker_id": self.config.worker_id,
            "group": self.config.group,
            "slots": self.slots,
            "resources": self.resources,
            "labels": self.labels,
            "hostname": socket.gethostname(),
            "running": held,
            "prefetch": self.prefetch,
            "gpus": self.gpus,
            "protocol": wire.PROTOCOL_VERSION,
            "secret": self._secret,
            "pickled_functions": self.config.allow_pickled_functions,
            "workspaces": self._workspaces.ok,
        }

    async def _heartbeats(self, ws: ClientConnection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            running = [(a.task_id, a.token) for a in self._attempts.values()]
            await ws.send(wire.pack({"t": "heartbeat", "running": running}))

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            if not isinstance(raw, bytes):
                continue
            frame = wire.unpack(raw, max_entries=wire.MAX_FRAME_BYTES)
            kind = frame["t"]
            if kind == "assign":
                self._start(frame)
            elif kind == "assigns":  # protocol 2: many in one frame, in the master's order
                for one in frame["frames"]:
                    self._start(one)
            elif kind in ("cancel", "withdraw"):
                self._take_back(str(frame["task_id"]), int(frame["token"]), kind)
            elif kind == "ack":
                self.outbox.acked(int(frame["seq"]))
                self._check_drained()
            elif kind == "error":
                log.warning("master says: %s", frame.get("detail"))

    # -- attempts ---------------------------------------------------------------------------

    def _take_back(self, task_id: str, token: int, kind: str) -> None:
        """Cancel an attempt, or drop one the master withdrew (for more urgent work).

        A withdrawn attempt that has not started is forgotten without a report (the master
        has already queued its task again); one that has started is killed, and what it
        reports carries a superseded token, which the master refuses.
        """
        attempt = self._attempts.get(task_id)
        if attempt is None or attempt.token != token:
            return
        waiting = self._backlog.remove(task_id)
        if kind == "withdraw" and waiting:
            self._forget(attempt)
            return
        if (
            kind == "withdraw"
            and isinstance(attempt, FunctionAttempt)
            and attempt.batch is not None
            and attempt.batch.skip(attempt, kind)
        ):
            return  # the runner skips it, unless it started first (then fencing refuses it)
        attempt.cancel()
        if waiting:  # never started: finish it (cancelled) at once
            self._launch(attempt)

    def _start(self, frame: dict[str, Any]) -> None:
        task_id, token = str(frame["task_id"]), int(frame["token"])
        held = self._attempts.get(task_id)
        if held is not None:
            if token > held.token:  # a newer attempt while the withdrawn one is being killed
                self._after[task_id] = frame
            return
        if self._draining:
            rejected = Finished(status="rejected", exit_code=None, reason="worker is draining")
            self.outbox.outcome(task_id, token, rejected, None)
            return
        spec = frame["spec"]
        order = float(frame.get("order", 0.0))
        by_function = bool(spec.get("function") or spec.get("pickled"))
        try:
            argv = [] if by_function or spec.get("merge") else build_argv(spec, self.config.agents)
        except ValueError as exc:
            failed = Finished(status="failed", exit_code=None, reason=str(exc))
            self.outbox.outcome(task_id, token, failed, None)
            return
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="agentflow-worker-"))
        inherited = {} if by_function else self._inherited  # a runner has it already
        env, files = attempt_environment(
            frame, self.config, self.master_url, self._scratch, inherited
        )
        self._files[task_id] = files
        attempt: Attempt | FunctionAttempt
        if by_function:
            attempt = FunctionAttempt(
                task_id=task_id,
                token=token,
                pool=self._python_pool(),
                request=function_request(spec, env, frame.get("parents")),
                timeout_s=frame.get("timeout_s"),
                on_output=lambda stream, data: self.outbox.output(task_id, token, stream, data),
            )
            attempt.order = order
            self._attempts[task_id] = attempt
            self._dispatch(attempt, order)
            return
        if spec.get("workspace") or spec.get("merge"):
            made = self._workspaces.prepare(frame, argv=argv, env=env, outbox=self.outbox)
            if isinstance(made, str):  # this worker cannot run it: why
                self._files.pop(task_id).remove()
                failed = Finished(status="failed", exit_code=None, reason=made)
                self.outbox.outcome(task_id, token, failed, None)
                return
            self._attempts[task_id] = made
            self._dispatch(made, order)
            return
        attempt = Attempt(
            task_id=task_id,
            token=token,
            argv=argv,
            env=env,
            cwd=spec.get("cwd"),
            timeout_s=frame.get("timeout_s"),
            on_output=lambda stream, data: self.outbox.output(task_id, token, stream, data),
        )
        self._attempts[task_id] = attempt
        self._dispatch(attempt, order)

    def _dispatch(self, attempt: Attempt | FunctionAttempt, order: float) -> None:
        if self.running < self.slots:
            self._launch(attempt)
        else:
            self._backlog.push(attempt, order)  # queued: starts when a slot frees
            self._batches.yield_to(order)  # nor behind a batch's less urgent calls

    def _python_pool(self) -> PythonPool:
        if self._pool is None:
            # Each call brings its own task's token; the pool never holds the worker's.
            self._pool = PythonPool(
                self.slots,
                self._inherited,
                self.config.function_modules,
                allow_pickled=self.config.allow_pickled_functions,
            )
        return self._pool

    def _launch(self, attempt: Attempt | FunctionAttempt) -> None:
        self.running += 1
        if not attempt.cancelled:
            self.outbox.started(attempt.task_id, attempt.token)
        assert self._attempt_group is not None
        batch = self._batches.form(attempt, self._backlog)
        work = self._run_attempt(attempt) if batch is None else self._run_batch(batch)
        self._attempt_group.create_task(work, name=f"attempt-{attempt.task_id}")

    async def _run_batch(self, batch: CallBatch) -> None:
        await self._batches.run(batch)
        self.running -= 1
        self._refill()

    def _unstarted(self, attempt: FunctionAttempt, why: str) -> None:
        """A call of a batch that never started: forgotten (withdrawn), cancelled, or back
        in the queue (a yield to more urgent work, or its runner was killed)."""
        if why == "withdraw":
            self._forget(attempt)
        elif why == "cancel":
            self._done(attempt, Finished(status="cancelled", exit_code=None, reason="cancelled"))
        else:
            self._backlog.push(attempt, attempt.order)

    def _forget(self, attempt: Attempt | FunctionAttempt) -> None:
        """Drop an attempt that never started, without a report (the master withdrew it)."""
        del self._attempts[attempt.task_id]
        files = self._files.pop(attempt.task_id, None)
        if files is not None:
            files.remove()
        successor = self._after.pop(attempt.task_id, None)  # reassigned while it was stopped
        if successor is not None:
            self._start(successor)
        self._check_drained()

    async def _run_attempt(self, attempt: Attempt | FunctionAttempt) -> None:
        bind(task_id=attempt.task_id)  # this attempt's task: its log lines carry the task id
        try:
            finished = await attempt.run()
        except Exception as exc:  # a bug here must not take the whole worker down
            log.exception("attempt %s crashed", attempt.task_id)
            finished = Finished(status="failed", exit_code=None, reason=f"worker error: {exc}")
        self.running -= 1
        self._done(attempt, finished)
        self._refill()

    def _done(self, attempt: Attempt | FunctionAttempt, finished: Finished) -> None:
        self._attempts.pop(attempt.task_id, None)
        # A call's own result wins over its file: then the file is not read, only removed.
        files = self._files.pop(attempt.task_id, None)
        written = files.collect(read=not finished.result) if files is not None else None
        self.outbox.outcome(attempt.task_id, attempt.token, finished, finished.result or written)
        successor = self._after.pop(attempt.task_id, None)
        if successor is not None:
            self._start(successor)

    def _refill(self) -> None:
        while self._backlog and self.running < self.slots:
            self._launch(self._backlog.pop())

    # -- reporting --------------------------------------------------------------------------

    def _send_soon(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None:
            task = asyncio.get_running_loop().create_task(ws.send(wire.pack(frame)))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _recv_bytes(ws: ClientConnection, timeout_s: float) -> bytes:
    raw = await asyncio.wait_for(ws.recv(), timeout=timeout_s)
    if isinstance(raw, str):
        raise wire.FrameError("expected a binary frame")
    return raw


def _use_pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    """On Python 3.11 the default child watcher starts a thread per subprocess; a pidfd watcher
    costs a file descriptor instead (Python 3.12+ picks it by itself where it works)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        current = asyncio.get_child_watcher()
        if isinstance(current, asyncio.PidfdChildWatcher) and current.is_active():
            # Kept: replacing it would close it and strand the children it waits for (several
            # workers share one loop in `agentflow run`, each starting git at once).
            return
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return  # the kernel does not support pidfds
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)
