"""A Python task runner process: runs ``module:callable`` calls, one at a time, for a worker.

Run as a script (``python pyrunner.py``), so that it imports nothing of AgentFlow: only the
standard library and the functions it is asked to call, from its own ``PYTHONPATH``. Requests
and answers are JSON lines (stdin in, a private copy of stdout out); what the call prints is
captured and sent back with the answer. A call that overruns its timeout, or is cancelled, is
ended by killing this whole process: the worker then starts a fresh one.

Every call starts from the runner's own state, whatever the call before it changed: the
environment (the worker's, plus the task's ``env``), the working directory (the task's ``cwd``,
else the worker's), ``sys.path`` and the umask. Imported modules stay loaded (that is what
reusing a runner buys), so a module's globals are shared by the calls this runner serves.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

MAX_OUTPUT_CHARS = 512 * 1024


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

    @classmethod
    def capture(cls) -> ProcessState:
        umask = os.umask(0o022)
        os.umask(umask)
        return cls(env=dict(os.environ), cwd=os.getcwd(), path=list(sys.path), umask=umask)

    def restore(self) -> None:
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        sys.path[:] = self.path
        os.umask(self.umask)


def call(request: dict[str, Any]) -> dict[str, Any]:
    """Run one request; the caller has restored the runner's own state before it."""
    os.environ.update(request.get("env") or {})
    if request.get("cwd"):
        os.chdir(request["cwd"])
    out, err = io.StringIO(), io.StringIO()
    answer: dict[str, Any]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            fn = resolve(request["function"])
        except Exception as exc:
            answer = {
                "ok": False,
                "kind": "import",
                "error": f"cannot import {request['function']}: {type(exc).__name__}: {exc}",
            }
        else:
            try:
                value = fn(*request.get("args") or [], **request.get("kwargs") or {})
                answer = {"ok": True, "result": json.dumps(value)}
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


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray writes to fd 1 (C extensions) must not corrupt the channel
    base = ProcessState.capture()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            base.restore()
            answer = call(request)
        except BaseException as exc:  # SystemExit from the function, say: report, carry on
            answer = {
                "ok": False,
                "kind": "exception",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "stdout": "",
                "stderr": "",
            }
        channel.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
