"""Profiles of running benchmark processes: py-spy attached to a pid, and a summary by self time.

:class:`SpyRecorder` runs ``py-spy record --format speedscope --gil`` on a live process (and
its subprocesses, e.g. a worker's Python runners) until stopped, and :func:`speedscope_top` reads
the file back: the functions on top of the stack most often (self time) and the AgentFlow
functions on the stack most often (inclusive time), as shares of the sampled time. With
``--gil`` a thread is sampled only while it holds the GIL: the shares are of time spent running
Python, not of waiting (py-spy's own idle detection misses threads blocked in epoll, a queue or
a pipe read on this kind of VM), nor of C calls made without the GIL (an fsync). Where py-spy is
missing (or may not attach: it needs ptrace), the caller falls back to cProfile
(``LocalCluster(profile_dir=...)``) and :func:`pstats_top`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SPY_RATE_HZ = 200
STOP_TIMEOUT_S = 30.0
TOP = 12


@dataclass(frozen=True, slots=True)
class Hot:
    """One function and its share of the samples (or of the profiled time) as self time."""

    share: float
    name: str
    where: str


def py_spy() -> str | None:
    """The py-spy command: beside this Python (the virtualenv), else on the PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class SpyRecorder:
    """``py-spy record`` of one pid into ``out`` (speedscope JSON), from start to stop."""

    def __init__(self, spy: str, pid: int, out: Path, *, subprocesses: bool = False) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        argv = [spy, "record", "--pid", str(pid), "--format", "speedscope", "-o", str(out)]
        # --gil: only samples of a thread holding the GIL, i.e. running Python. Without it,
        # threads blocked in a call (epoll, a queue, a pipe read) count as busy here: py-spy's
        # idle detection does not see them in this kind of VM.
        argv += ["--rate", str(SPY_RATE_HZ), "--gil"]
        if subprocesses:
            argv.append("--subprocesses")
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> bool:
        """SIGINT (py-spy then writes its file); True if the file is there."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.out.exists() and self.out.stat().st_size > 0

    def failure(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()[-300:]
        except OSError:
            return ""


def wait_attached(recorders: list[SpyRecorder], settle_s: float = 1.0) -> None:
    """Give py-spy time to attach (it has no ready signal); a recorder that exited meanwhile
    could not attach, and is reported by its failure text."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and all(r.alive() for r in recorders):
        time.sleep(0.05)
    for r in recorders:
        if not r.alive():
            raise RuntimeError(f"py-spy exited at start: {r.failure()}")


def speedscope_top(path: Path, top: int = TOP) -> tuple[str, list[Hot], list[Hot]]:
    """What the file covers (``"12.3 s sampled"``), the ``top`` functions by self time, and the
    ``top`` AgentFlow functions by inclusive time (on the stack at all), over every thread and
    process in the file. py-spy's frames are lines: they are added up by function here."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    # A function: its name and file (py-spy gives each line its own frame).
    function = [(str(f.get("name", "?")), _short(str(f.get("file", "")))) for f in frames]
    ours = {function[i] for i, f in enumerate(frames) if _ours(f)}
    self_weight: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    total = 0.0
    unit = "samples"
    for profile in data["profiles"]:
        unit = str(profile.get("unit", unit))
        weights = profile.get("weights") or [1] * len(profile.get("samples", []))
        for stack, weight in zip(profile.get("samples", []), weights, strict=False):
            total += weight
            if stack:
                self_weight[function[stack[-1]]] += weight  # outermost first: the top is last
            for key in {function[i] for i in stack} & ours:
                inclusive[key] += weight
    covered = f"{total:.2f} s sampled" if unit == "seconds" else f"{total:g} {unit}"
    return covered, _hot(self_weight, total, top), _hot(inclusive, total, top)


def _ours(frame: dict[str, object]) -> bool:
    """An AgentFlow function below the command-line entry points (on every stack: no news)."""
    file = str(frame.get("file", ""))
    return (
        "agentflow" in file
        and f"agentflow{os.sep}cli{os.sep}" not in file
        and (frame.get("name") != "<module>")
    )


def _hot(weights: Counter[tuple[str, str]], total: float, top: int) -> list[Hot]:
    return [
        Hot(weight / total if total else 0.0, name, where)
        for (name, where), weight in weights.most_common(top)
    ]


# cProfile's names of calls that wait (for a socket, a thread, a lock): not CPU time.
WAITS = (
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'get' of '_queue.SimpleQueue' objects>",
)


def pstats_top(path: Path, top: int = TOP) -> tuple[float, list[Hot]]:
    """Profiled seconds less the waits (:data:`WAITS`), and the ``top`` functions by own time
    (cProfile's tottime) as shares of it."""
    stats = pstats.Stats(str(path))
    table = {
        func: row
        for func, row in stats.stats.items()  # type: ignore[attr-defined]
        if func[2] not in WAITS
    }
    total = sum(row[2] for row in table.values())
    rows = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:top]
    hot = [
        Hot(row[2] / total if total else 0.0, func[2], f"{_short(func[0])}:{func[1]}")
        for func, row in rows
    ]
    return total, hot


def _short(file: str) -> str:
    """A path from its package on (``agentflow/...``, ``site-packages/...`` cut), for reading."""
    for marker in ("site-packages" + os.sep, "src" + os.sep, "lib" + os.sep + "python"):
        at = file.rfind(marker)
        if at >= 0:
            return file[at + len(marker) :]
    return file


def print_top(bench: str, who: str, total: str, hot: list[Hot], kind: str = "self") -> None:
    """One line per hot function: ``<bench> profile <who> self=12.3% name (file:line)``."""
    print(f"{bench} profile {who} top {len(hot)} by {kind} time of {total}:", flush=True)
    for h in hot:
        print(
            f"{bench} profile {who} {kind}={h.share * 100:5.1f}% {h.name} ({h.where})", flush=True
        )
