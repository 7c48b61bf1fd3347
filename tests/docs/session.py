"""Runs marked doc blocks (see :mod:`tests.docs.blocks`) against real processes.

Console blocks: each ``$ `` line is a command (a line ending in ``\\`` continues on the next),
run by ``bash -c`` in the session's directory with the venv's commands first on ``PATH`` and
``AGENTFLOW_URL`` set. It must exit 0. The lines under it are output it must print: each, with
``...`` matching any text, must equal one line of its stdout+stderr (stripped), in order; a line
ending in ``# output may vary`` is not compared. A command whose comment ends in ``# exits N``
must exit N instead. ``export NAME=VALUE`` sets a variable (as bash expands VALUE) for the
block's later commands. A command ending in ``&`` runs in the background for the rest of the
block; if it starts a master, the next command waits until that master answers ``/health``.

Ports: the docs say 6767 (the default) and, for clusters, 6768, 7767, 7768 ... 9768. In a
block that starts a master of its own, each of these is replaced by a free port of that block,
and what it started is killed when it ends; in every other block 6767 is the shared test master.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from agentflow.testing.ports import free_port
from tests.docs.blocks import ROOT, Block

BIN = Path(sys.executable).parent
DOC_PORTS = ("6767", "6768", "7767", "7768", "8767", "8768", "9767", "9768")
PORT = re.compile(r"\b(" + "|".join(DOC_PORTS) + r")\b")
STARTS_MASTER = re.compile(r"(agentflow-master|agentflow master)\b")
VARIES = "# output may vary"
PRINTS = re.compile(r"^\s*print\(.*\)\s+# (.+)$")  # print(...)  # what it prints
COMMAND_TIMEOUT_S = 60.0
HEALTH_TIMEOUT_S = 20.0

__all__ = ["Session"]


@dataclass(frozen=True, slots=True)
class Command:
    line: int
    text: str
    expected: tuple[str, ...]
    exit_code: int = 0


@dataclass(slots=True)
class _Shell:
    """One console block's variables, background processes, and masters not yet answering."""

    env: dict[str, str]
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    starting: list[tuple[str, str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def masters_up(self) -> None:
        for where, text, proc in self.starting:
            _wait_healthy(where, text, proc)
        self.starting.clear()


@dataclass(slots=True)
class Session:
    """One directory and one shared master for the blocks of every doc file."""

    workdir: Path
    master_url: str
    written: dict[str, str] = field(default_factory=dict)

    def run(self, block: Block) -> None:
        if block.action == "file":
            self._write(block)
        elif block.lang == "console":
            self._console(block)
        elif block.lang == "python":
            self._python(block)
        elif block.lang == "yaml":
            self._workflow(block)
        else:
            raise AssertionError(f"{block.where}: cannot run a {block.lang or 'plain'} block")

    # -- files -------------------------------------------------------------------------------

    def _write(self, block: Block) -> None:
        assert block.target, f"{block.where}: file marker without a path"
        shipped = ROOT / block.target
        if shipped.is_file() and block.target.startswith("examples/"):
            assert block.text == shipped.read_text(), (
                f"{block.where}: the block differs from {block.target}; make it the file's content"
            )
        earlier = self.written.get(block.target)
        assert earlier in (None, block.text), (
            f"{block.where}: {block.target} is shown differently elsewhere in the docs"
        )
        self.written[block.target] = block.text
        path = self.workdir / block.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text)

    # -- python and yaml ---------------------------------------------------------------------

    def _python(self, block: Block) -> None:
        script = self.workdir / f"_snippet_{block.path.stem}_{block.line}.py"
        script.write_text(PORT.sub(self._shared_port, block.text))
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"{block.where}: the snippet failed:\n{done.stderr[-3000:]}"
        printed = tuple(m.group(1) for m in map(PRINTS.match, block.text.splitlines()) if m)
        _compare(block.where, "the snippet", printed, done.stdout)

    def _workflow(self, block: Block) -> None:
        body = yaml.safe_load(block.text)
        if isinstance(body, list):
            body = {"tasks": body}
        body.setdefault("name", f"doc-{block.line}")
        with httpx.Client(base_url=self.master_url, timeout=30) as http:
            answer = http.post("/api/v1/workflows/validate", json=body)
        assert answer.status_code == 200, f"{block.where}: refused: {answer.text}"

    # -- console -----------------------------------------------------------------------------

    def _console(self, block: Block) -> None:
        commands = parse_console(block)
        own = any(STARTS_MASTER.search(c.text) and c.text.endswith("&") for c in commands)
        ports = {p: str(free_port()) for p in DOC_PORTS} if own else {"6767": self._port()}
        shell = _Shell(env=self.env())
        if own:  # what a client with no AGENTFLOW_URL reaches: the block's own master
            shell.env["AGENTFLOW_URL"] = f"http://127.0.0.1:{ports['6767']}"
        try:
            for command in commands:
                text = PORT.sub(lambda m: ports.get(m.group(1), m.group(1)), command.text)
                where = f"{block.path.relative_to(ROOT)}:{command.line}"
                self._command(where, command, text, shell)
        finally:
            for proc in shell.background:
                _kill(proc)

    def _command(self, where: str, command: Command, text: str, shell: _Shell) -> None:
        master = STARTS_MASTER.search(text) is not None
        if not (master and text.endswith("&")):
            shell.masters_up()  # masters started one after another start together
        export = re.fullmatch(r"export (\w+)=(.+)", text)
        if export:  # the value as bash expands it, $(...) included
            shell.env[export.group(1)] = self._shell(
                where, f"printf %s {export.group(2)}", shell.env
            )
            return
        if text.endswith("&"):
            log_path = self.workdir / f"_bg_{where.replace('/', '_')}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    ["bash", "-c", text[:-1]],
                    cwd=self.workdir,
                    env=shell.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            shell.background.append(proc)
            if master:
                shell.starting.append((where, text, proc))
            return
        output = self._shell(where, text, shell.env, command.exit_code)
        _compare(where, text, command.expected, output)

    def _shell(self, where: str, text: str, env: dict[str, str], exit_code: int = 0) -> str:
        """What ``text`` prints (stdout, then stderr); it must exit with ``exit_code``."""
        done = subprocess.run(
            ["bash", "-c", text],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == exit_code, (
            f"{where}: `{text}` exited {done.returncode}:\n{output}"
        )
        return output

    # -- environment -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AGENTFLOW_URL": self.master_url,
            "PYTHONPATH": str(self.workdir),
        }

    def _port(self) -> str:
        return self.master_url.rsplit(":", 1)[1]

    def _shared_port(self, match: re.Match[str]) -> str:
        return self._port() if match.group(1) == "6767" else match.group(1)


def parse_console(block: Block) -> list[Command]:
    """The ``$ `` commands of a console block, each with the output lines shown under it."""
    commands: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            assert not commands, f"{block.where}: output before the first command"
            i += 1
            continue
        start, text = i, lines[i][2:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        expected: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        line = block.line + 1 + start
        exits = re.search(r"# exits (\d+)$", text)
        code = int(exits.group(1)) if exits else 0
        commands.append(Command(line, _strip_comment(text), tuple(expected), code))
    return commands


def _strip_comment(text: str) -> str:
    """The command without a trailing ``# comment``: one at a word's start, outside quotes."""
    text = text.rstrip()
    quote: str | None = None
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text


def _compare(where: str, command: str, expected: tuple[str, ...], output: str) -> None:
    actual = [line.strip() for line in output.splitlines()]
    position = 0
    for line in expected:
        want = line.strip()
        if not want or want.endswith(VARIES):
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")))
        for j in range(position, len(actual)):
            if pattern.fullmatch(actual[j]):
                position = j + 1
                break
        else:
            raise AssertionError(
                f"{where}: `{command}` did not print {want!r} (in order); it printed:\n{output}"
            )


def _wait_healthy(where: str, text: str, proc: subprocess.Popen[bytes]) -> None:
    port = re.search(r"--port[ =](\d+)", text)
    url = f"http://127.0.0.1:{port.group(1) if port else '6767'}/health"
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{where}: `{text}` exited {proc.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{where}: no master answered {url} within {HEALTH_TIMEOUT_S}s")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
