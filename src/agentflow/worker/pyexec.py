"""Python callables: a pool of runner processes and the attempt that uses one.

Each runner (``pyrunner.py``, run as a script) serves one call at a time and stays up for the
next, so a call costs no interpreter start. A timeout or a cancel kills the runner's whole
process group (the call may have started children) and the next call starts a fresh runner.

A function task is code execution, like a command: whoever may submit tasks may run any
importable function with any JSON arguments. A worker narrows that with an allowlist of modules
(``--function-modules``); a call to a module outside it fails before anything is imported.

A call sent by value (pickled by the SDK) is run only by a worker started with
``--allow-pickled-functions``; elsewhere it fails before anything is unpickled. Unpickling runs
code of the sender's choosing, so the module allowlist cannot constrain such a call: the flag
alone is the worker operator's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agentflow.byvalue import NOT_ALLOWED_REASON
from agentflow.worker.executor import Finished
from agentflow.workerwire import MAX_RESULT_CHARS

__all__ = [
    "CallBatch",
    "FunctionAttempt",
    "PythonPool",
    "check_module_patterns",
    "function_request",
    "module_allowed",
]

RUNNER = Path(__file__).with_name("pyrunner.py")
MAX_ANSWER_BYTES = 16 << 20
_MODULE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*)?")


def check_module_patterns(patterns: tuple[str, ...]) -> None:
    """ValueError unless each pattern is a module name (``pkg.mod``) or a package's (``pkg.*``)."""
    for pattern in patterns:
        if not _MODULE_PATTERN.fullmatch(pattern):
            raise ValueError(f"{pattern!r} is not a module name or 'package.*'")


def module_allowed(function: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``module:callable`` may be imported: any module when ``patterns`` is empty;
    ``pkg.mod`` allows that module only, ``pkg.*`` the package and every module in it."""
    if not patterns:
        return True
    module = function.partition(":")[0]
    for pattern in patterns:
        if pattern.endswith(".*"):
            package = pattern[:-2]
            if module == package or module.startswith(package + "."):
                return True
        elif module == pattern:
            return True
    return False


def function_request(
    spec: Mapping[str, Any], env: Mapping[str, str], parents: list[Any] | None
) -> dict[str, Any]:
    """What a runner is sent for one call: the function (by name or by value), its arguments,
    the task's ``AGENTFLOW_*`` variables and own ``env``, and its workflow parents if any."""
    request: dict[str, Any] = {
        "env": {k: v for k, v in env.items() if k.startswith("AGENTFLOW_")}
        | dict(spec.get("env") or {}),
        "cwd": spec.get("cwd"),
    }
    if spec.get("pickled"):
        request["pickled"] = spec["pickled"]
    else:
        request["function"] = spec["function"]
        request["args"] = spec.get("args") or []
        request["kwargs"] = spec.get("kwargs") or {}
    if parents is not None:
        request["parents"] = parents
    return request


class PythonPool:
    """Idle runner processes, reused across calls; at most ``size`` are kept."""

    def __init__(
        self,
        size: int,
        env: Mapping[str, str],
        modules: tuple[str, ...] = (),
        *,
        allow_pickled: bool = False,
    ) -> None:
        self._size = size
        self._env = dict(env)
        self.modules = modules  # importable modules; () allows any
        self.allow_pickled = allow_pickled  # calls sent by value may be unpickled and run
        self._idle: list[asyncio.subprocess.Process] = []
        self._dying: set[asyncio.subprocess.Process] = set()  # killed, not yet reaped

    async def acquire(self) -> asyncio.subprocess.Process:
        while self._idle:
            proc = self._idle.pop()
            if proc.returncode is None:
                return proc
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUNNER),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
            start_new_session=True,
            limit=MAX_ANSWER_BYTES,
        )

    def release(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None and len(self._idle) < self._size:
            self._idle.append(proc)
        else:
            kill_group(proc)
            self._dying.add(proc)

    async def aclose(self) -> None:
        """End every runner and reap it while the event loop runs: a runner left to the
        garbage collector after the loop closed made asyncio print "Exception ignored ...
        Event loop is closed" when a worker stopped."""
        procs = [*self._idle, *self._dying]
        self._idle.clear()
        self._dying.clear()
        for proc in procs:
            kill_group(proc)
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            await proc.wait()


def kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class FunctionAttempt:
    """One call of ``module:callable`` with JSON arguments (the result is its JSON value), or
    of a call sent by value (the result is its value pickled, base64)."""

    def __init__(
        self,
        *,
        task_id: str,
        token: int,
        pool: PythonPool,
        request: dict[str, Any],
        timeout_s: float | None,
        on_output: Callable[[str, bytes], None],
    ) -> None:
        self.task_id = task_id
        self.token = token
        self._pool = pool
        self._request = request
        self._timeout_s = timeout_s
        self._on_output = on_output
        self._stop_reason: str | None = None
        self._reply: asyncio.Future[bytes] | None = None  # the runner's answer, while awaited
        self.order = 0.0  # the master's priority key, for the worker's queue
        self.batch: CallBatch | None = None  # the batch it was sent in, until it is settled

    @property
    def cancelled(self) -> bool:
        return self._stop_reason == "cancelled"

    @property
    def batchable(self) -> bool:
        """Whether it may go to a runner with other calls: not cancelled, nor refused here."""
        return self._stop_reason is None and self._refused() is None

    def cancel(self) -> None:
        if self._stop_reason is None:
            self._stop_reason = "cancelled"
        if self.batch is not None and self.batch.skip(self, "cancel"):
            return  # not started in its batch: stopped there, never killed
        if self._reply is not None:
            self._reply.cancel()  # run() then ends the call with its runner

    async def run(self) -> Finished:
        if self.cancelled:
            return Finished(status="cancelled", exit_code=None, reason="cancelled")
        refused = self._refused()
        if refused is not None:
            return Finished(status="failed", exit_code=None, reason=refused)
        self._request["allow_pickled"] = self._pool.allow_pickled  # for parents' results
        proc = await self._pool.acquire()
        assert proc.stdin is not None and proc.stdout is not None
        if self._stop_reason == "cancelled":  # while a runner started: the call is never sent
            self._pool.release(proc)
            return Finished(status="cancelled", exit_code=None, reason="cancelled")
        proc.stdin.write((json.dumps(self._request) + "\n").encode())
        # One future for the answer, which cancel() cancels (rather than a second task per
        # call that waits for a cancel).
        self._reply = reply = asyncio.ensure_future(proc.stdout.readline())
        try:
            await asyncio.wait((reply,), timeout=self._timeout_s)
        finally:
            self._reply = None
        if not reply.done() or reply.cancelled():
            reply.cancel()
            kill_group(proc)  # the call may be stuck in a loop: end it with its runner
            await proc.wait()
            if self._stop_reason == "cancelled":  # set by cancel() while we waited
                return Finished(status="cancelled", exit_code=None, reason="cancelled")
            return Finished(
                status="timed_out", exit_code=None, reason=f"timed out after {self._timeout_s}s"
            )
        line = reply.result()
        if not line:  # the runner died (os._exit, a crash, the OOM killer)
            code = await proc.wait()
            return Finished(
                status="failed",
                exit_code=code,
                reason=f"the Python runner exited with {code} during the call",
            )
        self._pool.release(proc)
        return self._finished(json.loads(line))

    def _refused(self) -> str | None:
        """Why this worker does not run the call, before anything is imported or unpickled."""
        if self._request.get("pickled"):
            return None if self._pool.allow_pickled else NOT_ALLOWED_REASON
        function = str(self._request.get("function", ""))
        if module_allowed(function, self._pool.modules):
            return None
        allowed = ",".join(self._pool.modules)
        return f"module of {function} is not allowed on this worker (--function-modules {allowed})"

    def _finished(self, answer: dict[str, Any]) -> Finished:
        for stream in ("stdout", "stderr"):
            if answer.get(stream):
                self._on_output(stream, answer[stream].encode())
        if answer.get("traceback"):
            self._on_output("stderr", answer["traceback"].encode())
        if answer["ok"]:
            result = answer["result"]
            if len(result) > MAX_RESULT_CHARS:  # cut short, it would no longer decode
                what = "pickled (base64)" if self._request.get("pickled") else "as JSON"
                reason = (
                    f"the return value is {len(result)} characters {what}, over the limit of "
                    f"{MAX_RESULT_CHARS}: return less, or write large results to files"
                )
                return Finished(status="failed", exit_code=1, reason=reason)
            return Finished(status="completed", exit_code=0, result=result)
        # The traceback ends with the error line; the master keeps the last 4 KiB of a reason.
        reason = answer.get("traceback") or answer["error"]
        return Finished(status="failed", exit_code=1, reason=reason[-4000:])


STOP_WHY = ("withdraw", "cancel", "yield")  # why a call of a batch is stopped before it starts
Started = Callable[[FunctionAttempt], None]
Settled = Callable[[FunctionAttempt, Finished], None]
Unstarted = Callable[[FunctionAttempt, str], None]  # why: a STOP_WHY, or "requeue"


class CallBatch:
    """Calls sent to one runner in one message and run there in order (see ``pyrunner``).

    The worker treats call i+1 as started when the answer to call i arrives: only then is its
    start reported and its timeout clock started (the first call's start is reported when the
    batch is launched). A call not started yet is stopped with ``skip``: a stop line goes to
    the runner, which answers the call as skipped, unless the call had started by the time the
    line arrived; then its outcome goes out with its token like any started call's (for a
    withdrawn call the master refuses it). A cancel or timeout of the running call kills the
    runner as for a single call. What the runner had answered before it died still counts, the
    call after its last answer had started (it ends failed), and the calls after that never
    started: they go back to the worker (``unstarted``), never reported as started.
    """

    def __init__(
        self,
        pool: PythonPool,
        calls: list[FunctionAttempt],
        *,
        started: Started,
        settled: Settled,
        unstarted: Unstarted,
    ) -> None:
        self._pool = pool
        self._calls = calls
        self._started, self._settled, self._unstarted = started, settled, unstarted
        self._stops: dict[int, str] = {}  # position -> why, for stop lines sent or due
        self._current = 0  # the call the worker treats as running
        self._stdin: asyncio.StreamWriter | None = None  # set while stop lines can be sent
        for attempt in calls:
            attempt.batch = self

    @property
    def sent(self) -> bool:
        """Whether the calls are with the runner (and stop lines go to it as they come)."""
        return self._stdin is not None

    def skip(self, attempt: FunctionAttempt, why: str) -> bool:
        """Stop a call that has not started (as far as the worker knows); False if it has,
        and the caller ends it as a running call. A withdrawal or cancel overrides a yield."""
        assert why in STOP_WHY, why
        position = self._calls.index(attempt)
        if position <= self._current:
            return False
        if position in self._stops:
            if self._stops[position] == "yield":
                self._stops[position] = why
            return True
        self._stops[position] = why
        if self._stdin is not None:
            self._stdin.write(b'{"skip": [%d]}\n' % position)
        return True

    def yield_to(self, order: float) -> int:
        """Stop the calls not started whose key is less urgent than ``order``: they go back
        to the worker's queue, behind the more urgent attempt that just arrived. How many."""
        stopped = 0
        for position in range(self._current + 1, len(self._calls)):
            if position not in self._stops and self._calls[position].order > order:
                stopped += self.skip(self._calls[position], "yield")
        return stopped

    async def run(self) -> None:
        for attempt in self._calls:
            attempt._request["allow_pickled"] = self._pool.allow_pickled
        proc = await self._pool.acquire()
        assert proc.stdin is not None and proc.stdout is not None
        if self._calls[0].cancelled:  # while a runner started: nothing is sent
            self._pool.release(proc)
            self._gone(0, Finished(status="cancelled", exit_code=None, reason="cancelled"), [])
            return
        self._drop_stopped()
        message = {"calls": [attempt._request for attempt in self._calls]}
        proc.stdin.write((json.dumps(message) + "\n").encode())
        self._stdin = proc.stdin
        for position, attempt in enumerate(self._calls):
            self._current = position
            stopped = position in self._stops
            if position and not stopped:
                self._started(attempt)
            attempt._reply = reply = asyncio.ensure_future(proc.stdout.readline())
            try:
                await asyncio.wait((reply,), timeout=attempt._timeout_s)
            finally:
                attempt._reply = None
            if not reply.done() or reply.cancelled() or not reply.result():
                await self._end_runner(proc, position, reply)
                return
            self._answered(position, reply.result(), announce=stopped)
        self._stdin = None
        self._pool.release(proc)

    def abandon(self, reason: str) -> None:
        """Settle every call still in the batch as failed (a bug in the worker)."""
        for attempt in self._calls:
            if attempt.batch is self:
                attempt.batch = None
                self._settled(attempt, Finished(status="failed", exit_code=None, reason=reason))

    def _drop_stopped(self) -> None:
        """Calls stopped before anything was sent are not sent at all."""
        kept = [a for i, a in enumerate(self._calls) if i not in self._stops]
        dropped = [(a, self._stops[i]) for i, a in enumerate(self._calls) if i in self._stops]
        self._calls, self._stops = kept, {}
        for attempt, why in dropped:
            self._unstart(attempt, why)

    async def _end_runner(
        self, proc: asyncio.subprocess.Process, position: int, reply: asyncio.Future[bytes]
    ) -> None:
        """The running call was cancelled or timed out (kill the runner), or the runner died;
        read what it answered before it went, and settle every call of the batch."""
        self._stdin = None
        attempt = self._calls[position]
        if reply.done() and not reply.cancelled():  # end of file: the runner died
            code = await proc.wait()
            reason = f"the Python runner exited with {code} during the call"
            self._gone(position, Finished(status="failed", exit_code=code, reason=reason), [])
            return
        reply.cancel()
        kill_group(proc)  # the call may be stuck in a loop: end it with its runner
        await proc.wait()
        assert proc.stdout is not None
        lines = (await proc.stdout.read()).split(b"\n")[:-1]  # complete answers only
        if attempt.cancelled:
            finished = Finished(status="cancelled", exit_code=None, reason="cancelled")
        else:
            finished = Finished(
                status="timed_out",
                exit_code=None,
                reason=f"timed out after {attempt._timeout_s}s",
            )
        self._gone(position, finished, lines)

    def _gone(self, position: int, finished: Finished, lines: list[bytes]) -> None:
        """The runner is gone while call ``position`` ran: it ends with ``finished``; ``lines``
        are the answers found after the runner's end, the first for call ``position``."""
        self._current = len(self._calls)  # nothing more can be stopped
        self._settle(self._calls[position], finished)
        for offset, line in enumerate(lines[1:], start=1):
            self._answered(position + offset, line, announce=True)
        rest = position + 1
        if lines:  # the call after the last answer had started: it died with the runner
            rest = position + len(lines) + 1
            if rest - 1 < len(self._calls):
                self._killed(rest - 1, finished)
        for later in range(rest, len(self._calls)):
            self._unstart(self._calls[later], self._stops.get(later, "requeue"))

    def _killed(self, position: int, cause: Finished) -> None:
        attempt = self._calls[position]
        if self._stops.get(position) == "cancel":
            self._settle(attempt, Finished(status="cancelled", exit_code=None, reason="cancelled"))
            return
        self._started(attempt)
        reason = (
            f"the Python runner was killed while this call ran (another call of its batch "
            f"{cause.status.replace('_', ' ')})"
        )
        self._settle(attempt, Finished(status="failed", exit_code=None, reason=reason))

    def _answered(self, position: int, line: bytes, *, announce: bool) -> None:
        attempt = self._calls[position]
        answer = json.loads(line)
        if answer.get("skipped"):
            self._unstart(attempt, self._stops.get(position, "requeue"))
            return
        if announce:  # it ran though the worker had not counted it as started
            self._started(attempt)
        self._settle(attempt, attempt._finished(answer))

    def _settle(self, attempt: FunctionAttempt, finished: Finished) -> None:
        attempt.batch = None
        self._settled(attempt, finished)

    def _unstart(self, attempt: FunctionAttempt, why: str) -> None:
        attempt.batch = None
        self._unstarted(attempt, why)
