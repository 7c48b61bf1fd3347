"""A Python task runner process: runs ``module:callable`` calls, one at a time, for a worker.

Run as a script (``python pyrunner.py``), so that it imports nothing of AgentFlow: only the
standard library and the functions it is asked to call, from its own ``PYTHONPATH``. Requests
and answers are JSON lines (stdin in, a private copy of stdout out); what the call prints is
captured and sent back with the answer. A call that overruns its timeout, or is cancelled, is
ended by killing this whole process: the worker then starts a fresh one.

A call sent by value (``pickled``: base64 of a cloudpickle of ``(fn, args, kwargs)``) is
unpickled here, and only here, when the worker allows it; its return value goes back pickled.
A function with a parameter named ``parents`` gets its workflow parents' results as Python
values, by parent id: ``{"a": value_of_a}`` (None for a parent that did not complete).

Every call starts from the runner's own state, whatever the call before it changed: the
environment (the worker's, plus the task's ``env``), the working directory (the task's ``cwd``,
else the worker's), ``sys.path`` and the umask. Only what differs is put back (the variables a
call set, changed or removed through ``os.environ``). Imported modules stay loaded (that is
what reusing a runner buys), so a module's globals are shared by the calls this runner serves.

A batch (``{"calls": [...]}``, one line) runs its calls in order and answers once per call.
Before each call after the first the runner reads, without waiting, any stop line the worker
sent (``{"skip": [positions]}``); a named call that has not started is answered
``{"skipped": true}`` and never runs. So the worker knows call i+1 started when it reads the
answer to call i (unless that call is answered as skipped).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import inspect
import io
import json
import os
import pickle
import select
import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_OUTPUT_CHARS = 512 * 1024
READ_BYTES = 1 << 16


def resolve(target: str) -> Any:
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"function must look like 'package.module:callable', got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


@dataclass(frozen=True, slots=True)
class ProcessState:
    """What one call may change of this process and the next must not inherit."""

    env: dict[str, str]
    cwd: str
    path: list[str]
    umask: int
    raw_env: dict[Any, Any] | None  # os.environ's own encoded mapping, as captured

    @classmethod
    def capture(cls) -> ProcessState:
        umask = os.umask(0o022)
        os.umask(umask)
        raw = _raw_environ()
        return cls(
            env=dict(os.environ),
            cwd=os.getcwd(),
            path=list(sys.path),
            umask=umask,
            raw_env=None if raw is None else dict(raw),
        )

    def restore(self) -> None:
        self._restore_env()
        os.chdir(self.cwd)
        if sys.path != self.path:
            sys.path[:] = self.path
        os.umask(self.umask)

    def _restore_env(self) -> None:
        """Put back only the variables that differ: clearing and refilling the environment
        (an ``unsetenv`` and a ``putenv`` per variable) was a seventh of a busy runner's
        time, and a call changes a handful. The comparison is on ``os.environ``'s encoded
        mapping, a C-level dict compare; where that mapping is not there, clear and refill."""
        raw, base = _raw_environ(), self.raw_env
        if raw is None or base is None:
            os.environ.clear()
            os.environ.update(self.env)
            return
        if raw == base:
            return
        decode = os.environ.decodekey
        for key in [k for k in raw if k not in base]:
            del os.environ[decode(key)]
        for key, value in base.items():
            if raw.get(key) != value:
                os.environ[decode(key)] = os.environ.decodevalue(value)


def _raw_environ() -> dict[Any, Any] | None:
    """``os.environ``'s mapping of encoded names to encoded values (CPython keeps it in step
    with the process environment), or None on an interpreter without one."""
    raw = getattr(os.environ, "_data", None)
    return raw if isinstance(raw, dict) else None


class LoadError(Exception):
    """The call cannot be set up: the function or a parent's result could not be loaded."""


Call = tuple[Callable[..., Any], list[Any], dict[str, Any]]


def load_call(request: dict[str, Any]) -> Call:
    """The function and its arguments, its parents' results added if it asks for them."""
    if request.get("pickled"):
        if not request.get("allow_pickled"):  # the worker refused it already; never unpickle
            raise LoadError("this worker does not run functions sent by value")
        try:
            fn, args, kwargs = pickle.loads(base64.b64decode(request["pickled"]))
        except Exception as exc:
            raise LoadError(
                f"cannot unpickle the function sent by value: {type(exc).__name__}: {exc}"
            ) from exc
        args, kwargs = list(args), dict(kwargs)
    else:
        try:
            fn = resolve(request["function"])
        except Exception as exc:
            raise LoadError(
                f"cannot import {request['function']}: {type(exc).__name__}: {exc}"
            ) from exc
        args, kwargs = list(request.get("args") or []), dict(request.get("kwargs") or {})
    if "parents" in request and "parents" not in kwargs and _takes_parents(fn):
        try:
            kwargs["parents"] = parent_values(
                request["parents"], bool(request.get("allow_pickled"))
            )
        except LoadError:
            raise
        except Exception as exc:  # a result that does not decode
            raise LoadError(
                f"cannot read the parents' results: {type(exc).__name__}: {exc}"
            ) from exc
    return fn, args, kwargs


def _takes_parents(fn: Callable[..., Any]) -> bool:
    try:
        return "parents" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin, say)
        return False


def parent_values(parents: list[dict[str, Any]], may_unpickle: bool) -> dict[str, Any]:
    """``{parent id: its result as a Python value}``; None where it did not complete."""
    values: dict[str, Any] = {}
    for parent in parents:
        key = parent.get("key") or parent["id"]
        raw = parent.get("result")
        if parent.get("status") != "completed" or raw is None:
            values[key] = None
        elif parent.get("result_format") == "pickle":
            if not may_unpickle:
                raise LoadError(
                    f"the result of parent {key} is pickled (it was sent by value) and this "
                    "worker does not unpickle: start it with --allow-pickled-functions"
                )
            values[key] = pickle.loads(base64.b64decode(raw))
        elif parent.get("result_format") == "json":
            values[key] = json.loads(raw)
        else:
            values[key] = raw  # what a program wrote to $AGENTFLOW_OUTPUT_FILE
    return values


def encode_result(value: Any, pickled: bool) -> str:
    """JSON text, or for a call sent by value base64 of its cloudpickle."""
    if not pickled:
        return json.dumps(value)
    import cloudpickle  # only a worker that runs calls by value needs it

    return base64.b64encode(cloudpickle.dumps(value)).decode("ascii")


def call(request: dict[str, Any]) -> dict[str, Any]:
    """Run one request; the caller has restored the runner's own state before it."""
    os.environ.update(request.get("env") or {})
    if request.get("cwd"):
        os.chdir(request["cwd"])
    out, err = io.StringIO(), io.StringIO()
    answer: dict[str, Any]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            fn, args, kwargs = load_call(request)
        except LoadError as exc:
            answer = {"ok": False, "kind": "import", "error": str(exc)}
        else:
            try:
                value = fn(*args, **kwargs)
                answer = {"ok": True, "result": encode_result(value, bool(request.get("pickled")))}
            except Exception as exc:
                answer = {
                    "ok": False,
                    "kind": "exception",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
    answer["stdout"] = out.getvalue()[-MAX_OUTPUT_CHARS:]
    answer["stderr"] = err.getvalue()[-MAX_OUTPUT_CHARS:]
    return answer


class Inbox:
    """The worker's lines on fd 0, read raw: a batch's stop lines are looked for without
    blocking (``select``), which a buffered ``sys.stdin`` would hide."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._partial = bytearray()
        self._lines: deque[bytes] = deque()

    def _fill(self) -> bool:
        chunk = os.read(self._fd, READ_BYTES)
        if not chunk:
            return False
        self._partial += chunk
        if b"\n" in chunk:
            *complete, rest = bytes(self._partial).split(b"\n")
            self._lines.extend(complete)
            self._partial = bytearray(rest)
        return True

    def next_line(self) -> bytes | None:
        """The next line, waiting for it; None once the worker closed the pipe."""
        while not self._lines:
            if not self._fill():
                return None
        return self._lines.popleft()

    def stops(self) -> set[int]:
        """The batch positions named by the stop lines that have arrived, without waiting.
        While a batch runs the worker sends nothing else."""
        while select.select([self._fd], [], [], 0)[0] and self._fill():
            pass
        named: set[int] = set()
        while self._lines:
            named.update(json.loads(self._lines.popleft()).get("skip") or ())
        return named


def run_one(base: ProcessState, request: dict[str, Any]) -> dict[str, Any]:
    try:
        base.restore()
        return call(request)
    except BaseException as exc:  # SystemExit from the function, say: report, carry on
        return {
            "ok": False,
            "kind": "exception",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "stdout": "",
            "stderr": "",
        }


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray writes to fd 1 (C extensions) must not corrupt the channel
    base = ProcessState.capture()
    inbox = Inbox(0)
    while (line := inbox.next_line()) is not None:
        message = json.loads(line)
        if "skip" in message:
            continue  # it came after its batch ended: every call of it had started
        calls = message.get("calls", [message])
        stopped: set[int] = set()
        for position, request in enumerate(calls):
            if position:  # answered the one before: look for stop lines, then start this
                stopped |= inbox.stops()
            answer = {"skipped": True} if position in stopped else run_one(base, request)
            channel.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
