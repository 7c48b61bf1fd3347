"""Run one task attempt as a subprocess in its own process group.

The whole group is signalled on timeout or cancel (SIGTERM, then SIGKILL after a grace
period), so children of a shell command die with it. Output is read in chunks and handed to a
callback as it comes; the exit status becomes a :class:`Finished`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PROMPT", "Attempt", "Finished", "agent_prompt", "build_argv", "check_template"]

KILL_GRACE_S = 2.0
READ_CHUNK = 64 * 1024

OutputSink = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    status: str  # completed | failed | timed_out | cancelled
    exit_code: int | None
    reason: str | None = None
    result: str | None = None  # a Python callable's return value, as JSON
    workspace: dict[str, Any] | None = None  # a git workspace's WorkspaceResult, as its wire


def build_argv(spec: Mapping[str, Any], agents: Mapping[str, str]) -> list[str]:
    """The argv for a task spec. An agent prompt is always one argument, never shell text."""
    if spec.get("args"):
        return [str(a) for a in spec["args"]]
    if spec.get("agent"):
        name = str(spec["agent"])
        template = agents.get(name)
        if template is None:
            known = ", ".join(sorted(agents)) or "none"
            raise ValueError(f"this worker has no agent {name!r} (it has: {known})")
        words = check_template(template)
        prompt = agent_prompt(spec)
        return [prompt if w == PROMPT else w for w in words]
    command = spec.get("command")
    if not command:
        raise ValueError("task has nothing to run")
    return ["/bin/sh", "-c", str(command)]


def agent_prompt(spec: Mapping[str, Any]) -> str:
    """An agent task's prompt, as its one argument and as ``AGENTFLOW_PROMPT``."""
    prompt = str(spec.get("prompt") or "")
    if "\0" in prompt:
        raise ValueError("a prompt cannot contain a NUL character")
    return prompt


PROMPT = "{prompt}"
# Interpreters whose option (one of these letters, or a long option below) makes the next
# argument code to run: a prompt there would be program text, not one argument.
_CODE_OPTIONS = {
    **dict.fromkeys(("sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"), "c"),
    **dict.fromkeys(("perl", "ruby", "node", "nodejs", "deno", "bun"), "ep"),
    "pwsh": "c",
    "osascript": "e",
}
_CODE_LONG_OPTIONS = frozenset({"--command", "--eval", "--print"})


def check_template(template: str) -> list[str]:
    """The words of an agent template, or ValueError if the prompt would not be one argument.

    ``{prompt}`` must be a whole word (after shell-style splitting): inside a word it could
    join an option (``--model={prompt}``) or shell text (``sh -c 'run {prompt}'``). Nor may it
    be the code argument of an interpreter (``bash -c {prompt}``, ``python -c {prompt}``); a
    shell template reads the prompt from ``"$AGENTFLOW_PROMPT"`` instead.
    """
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ValueError(f"cannot split the template into words: {exc}") from None
    if not words:
        raise ValueError("the template is empty")
    for word in words:
        if PROMPT in word and word != PROMPT:
            raise ValueError(
                f"{PROMPT} must be a word of its own, not part of {word!r}"
                ' (in shell text, use "$AGENTFLOW_PROMPT")'
            )
    for i, word in enumerate(words):
        letters = _code_option_letters(word)
        if letters is not None and _prompt_is_code(words[i + 1 :], letters):
            raise ValueError(
                f"{PROMPT} would be code for {word} to run;"
                ' pass it as "$AGENTFLOW_PROMPT" inside the code instead'
            )
    return words


def _code_option_letters(word: str) -> str | None:
    name = os.path.basename(word)
    if re.fullmatch(r"(python|pypy)[0-9.]*", name):
        return "c"
    return _CODE_OPTIONS.get(name)


def _prompt_is_code(rest: list[str], letters: str) -> bool:
    """Whether ``{prompt}`` is the first plain word after an option that takes code.

    Conservative: option values (``bash -o pipefail -c ...``) look like plain words, so the
    scan goes on to the end rather than stop at the script.
    """
    takes_code = False
    for word in rest:
        if word in _CODE_LONG_OPTIONS or (
            word.startswith("-") and not word.startswith("--") and set(word[1:]) & set(letters)
        ):
            takes_code = True
        elif not word.startswith("-"):
            if takes_code and word == PROMPT:
                return True
            takes_code = False
    return False


class Attempt:
    """One running attempt; ``run()`` returns when the process group is gone."""

    def __init__(
        self,
        *,
        task_id: str,
        token: int,
        argv: list[str],
        env: Mapping[str, str],
        cwd: str | None,
        timeout_s: float | None,
        on_output: OutputSink,
    ) -> None:
        self.task_id = task_id
        self.token = token
        self._argv = argv
        self._env = dict(env)
        self._cwd = cwd
        self._timeout_s = timeout_s
        self._on_output = on_output
        self._proc: asyncio.subprocess.Process | None = None
        self._stop_reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self._stop_reason == "cancelled"

    async def run(self) -> Finished:
        if self.cancelled:  # cancelled before it ever started
            return Finished(status="cancelled", exit_code=None, reason="cancelled")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as exc:
            return Finished(status="failed", exit_code=None, reason=f"cannot start: {exc}")
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        readers = asyncio.gather(
            self._pump("stdout", proc.stdout), self._pump("stderr", proc.stderr)
        )
        readers.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            code = await asyncio.wait_for(_exited(proc), timeout=self._timeout_s)
        except TimeoutError:
            self._stop_reason = self._stop_reason or "timed_out"
            await self._kill_group()
            code = await proc.wait()
        # The leader is gone; whatever it left behind in its group dies with the attempt,
        # which also closes pipes a background child might have kept open.
        self._signal(signal.SIGKILL)
        try:
            await asyncio.wait_for(readers, timeout=KILL_GRACE_S)
        except TimeoutError:
            readers.cancel()
        return self._finished(code)

    def _finished(self, code: int) -> Finished:
        if self._stop_reason == "timed_out":
            return Finished(
                status="timed_out", exit_code=code, reason=f"timed out after {self._timeout_s}s"
            )
        if self._stop_reason == "cancelled":
            return Finished(status="cancelled", exit_code=code, reason="cancelled")
        if code == 0:
            return Finished(status="completed", exit_code=0)
        reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return Finished(status="failed", exit_code=code, reason=reason)

    async def _pump(self, stream: str, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(READ_CHUNK):
            self._on_output(stream, chunk)

    def cancel(self) -> None:
        """Kill the whole process group (asynchronously); ``run()`` then returns cancelled."""
        if self._stop_reason is None:
            self._stop_reason = "cancelled"
        task = asyncio.get_running_loop().create_task(self._kill_group())
        task.add_done_callback(lambda t: t.exception())

    async def _kill_group(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=KILL_GRACE_S)
        # Children may ignore SIGTERM or outlive the leader: finish the group off.
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


async def _exited(proc: asyncio.subprocess.Process) -> int:
    """The exit code as soon as the process exits.

    ``Process.wait()`` also waits for the pipes to close, which a background child of a shell
    command can hold open forever; ``returncode`` is set at exit, so race the two.
    """
    waiter = asyncio.ensure_future(proc.wait())
    delay_s = 0.005
    try:
        while not waiter.done():
            if proc.returncode is not None:
                return proc.returncode
            await asyncio.wait({waiter}, timeout=delay_s)
            delay_s = min(delay_s * 2, 0.2)
        return waiter.result()
    finally:
        if not waiter.done():
            waiter.cancel()
