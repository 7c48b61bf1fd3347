"""``--log-format json``: one object per line, with the context that applies."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.errors import ConfigError
from agentflow.logformat import JsonFormatter, bind, setup_logging


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("agentflow.test", logging.WARNING, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_one_object_per_record_with_fixed_and_live_fields():
    terms = iter([3, 4])
    formatter = JsonFormatter({"node_id": "m1"})
    formatter.set_field("term", lambda: next(terms))
    first = json.loads(formatter.format(_record("line\nbreak")))
    assert first["node_id"] == "m1" and first["term"] == 3
    assert first["level"] == "warning" and first["logger"] == "agentflow.test"
    assert first["message"] == "line\nbreak"
    assert first["time"].endswith("+00:00")
    assert "\n" not in formatter.format(_record("line\nbreak"))  # one line, always
    assert "task_id" not in first


async def test_bound_context_stays_with_its_asyncio_task():
    formatter = JsonFormatter({"worker_id": "w1"})

    async def attempt(task_id: str) -> dict[str, object]:
        bind(task_id=task_id)
        await asyncio.sleep(0)
        out: dict[str, object] = json.loads(formatter.format(_record("ran")))
        return out

    a, b = await asyncio.gather(attempt("t-a"), attempt("t-b"))
    assert (a["task_id"], b["task_id"]) == ("t-a", "t-b")
    assert a["worker_id"] == "w1"
    outside = json.loads(formatter.format(_record("idle")))
    assert "task_id" not in outside
    explicit = json.loads(formatter.format(_record("x", task_id="t-extra")))
    assert explicit["task_id"] == "t-extra"


def test_tracebacks_go_in_one_field():
    formatter = JsonFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    out = json.loads(formatter.format(record))
    assert "RuntimeError: boom" in out["exc"]


def test_unknown_fields_and_formats_are_refused():
    with pytest.raises(ValueError):
        bind(colour="red")
    with pytest.raises(ConfigError):
        setup_logging("info", "xml")


def test_master_refuses_an_unknown_log_format_in_one_line(tmp_path: Path):
    master = Path(sys.executable).parent / "agentflow-master"
    done = subprocess.run(
        [str(master), "--log-format", "xml", "--data-dir", str(tmp_path), "--port", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "--log-format" in done.stderr
