"""Attempts of one task never overlap unless the earlier was fenced off; a completion belongs
to the attempt that really finished.

The ground truth is the storage host's stream ``task:<id>``: each attempt (writer
``<task id>/<attempt>``, token = its fencing token) writes ``start`` then ``end``, and the
host refuses a token lower than the highest it accepted. In the order the host decided:

- accepted records never go back in token: once an attempt with a higher token has written,
  no lower token gets through (refused records are the fence doing its job);
- a token belongs to one writer, a writer to one token, and attempt numbers rise with tokens
  (the product's fencing token is the log index of the attempt's assignment);
- each writer's accepted events read ``start`` then ``end``: at most one of each, except that
  the task body retries a write that got no answer, so one event may land twice in a row (a
  ``retried_duplicates`` stat, not an anomaly); a ``start`` after an ``end``, or an ``end``
  with no ``start``, is an anomaly;
- a task whose final read says ``completed`` has an accepted ``end`` from the attempt number
  that read reports, and that ``end`` is the stream's last accepted record.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from agentflow.testing.chaos.checkers.common import (
    CheckerResult,
    FinalReads,
    final_reads,
    record_line,
    streams_of,
)
from agentflow.testing.chaos.history import Op, StorageRecord

__all__ = ["check_attempts", "check_stream_fence"]

NAME = "attempts"
TASK_PREFIX = "task:"


def check_attempts(ops: Sequence[Op], storage: Sequence[StorageRecord]) -> CheckerResult:
    streams = streams_of(storage, TASK_PREFIX)
    finals = final_reads(ops)
    anomalies: list[str] = []
    duplicates = 0
    for stream, records in sorted(streams.items()):
        anomalies.extend(check_stream_fence(stream, records))
        anomalies.extend(_writer_tokens(stream, records))
        found, dups = _writer_events(stream, records)
        anomalies.extend(found)
        duplicates += dups
    completed = 0
    for task_id in sorted(finals.by_task):
        if finals.status(task_id) == "completed":
            completed += 1
            records = streams.get(TASK_PREFIX + task_id, [])
            line = _completion(task_id, finals, records)
            if line is not None:
                anomalies.append(line)
    stats = {
        "streams": len(streams),
        "records": sum(len(r) for r in streams.values()),
        "refused": sum(not rec.accepted for r in streams.values() for rec in r),
        "retried_duplicates": duplicates,
        "completed_checked": completed,
    }
    return CheckerResult.of(NAME, anomalies, stats)


def check_stream_fence(stream: str, records: Sequence[StorageRecord]) -> Iterator[str]:
    """Accepted tokens never go back; one token, one writer (over every record)."""
    top: StorageRecord | None = None
    owner: dict[int, StorageRecord] = {}
    for rec in records:
        first = owner.setdefault(rec.token, rec)
        if first.writer != rec.writer:
            yield (
                f"{stream}: token {rec.token} used by two writers: "
                f"{record_line(first)} and {record_line(rec)}"
            )
        if not rec.accepted:
            continue
        if top is not None and rec.token < top.token:
            yield (
                f"{stream}: token went back, {record_line(rec)} after {record_line(top)} "
                "(an older holder wrote after a newer one)"
            )
        elif top is None or rec.token > top.token:
            top = rec


def _writer_tokens(stream: str, records: Sequence[StorageRecord]) -> Iterator[str]:
    """A writer (an attempt) has one token, and attempt numbers rise with tokens."""
    token_of: dict[str, StorageRecord] = {}
    for rec in records:
        first = token_of.setdefault(rec.writer, rec)
        if first.token != rec.token:
            yield (
                f"{stream}: attempt {rec.writer} wrote with two tokens: "
                f"{record_line(first)} and {record_line(rec)}"
            )
    by_token = sorted(token_of.values(), key=lambda r: r.token)
    for low, high in itertools.pairwise(by_token):
        if _attempt_number(low.writer) >= _attempt_number(high.writer):
            yield (
                f"{stream}: attempt numbers do not rise with tokens: "
                f"{record_line(low)} vs {record_line(high)}"
            )


def _attempt_number(writer: str) -> int:
    _, _, number = writer.rpartition("/")
    return int(number) if number.isdigit() else -1


def _writer_events(stream: str, records: Sequence[StorageRecord]) -> tuple[list[str], int]:
    last: dict[str, StorageRecord] = {}
    anomalies: list[str] = []
    duplicates = 0
    for rec in records:
        if not rec.accepted:
            continue
        before = last.get(rec.writer)
        last[rec.writer] = rec
        if before is not None and before.event == rec.event:
            duplicates += 1
        elif rec.event == "start" and before is not None:
            anomalies.append(
                f"{stream}: attempt {rec.writer} started again after it ended: "
                f"{record_line(before)}, then {record_line(rec)}"
            )
        elif rec.event == "end" and before is None:
            anomalies.append(f"{stream}: attempt {rec.writer} ended unstarted: {record_line(rec)}")
        elif rec.event not in ("start", "end"):
            anomalies.append(f"{stream}: unknown event {record_line(rec)}")
    return anomalies, duplicates


def _completion(task_id: str, finals: FinalReads, records: Sequence[StorageRecord]) -> str | None:
    attempt = finals.attempt(task_id)
    writer = f"{task_id}/{attempt}"
    accepted = [r for r in records if r.accepted]
    ends = [r for r in accepted if r.writer == writer and r.event == "end"]
    if not ends:
        seen = ", ".join(record_line(r) for r in accepted[-3:]) or "no accepted record"
        return (
            f"task {task_id} completed as attempt {attempt}, but the storage host has no "
            f"accepted end from {writer} (last accepted: {seen})"
        )
    if accepted[-1].writer != writer:
        return (
            f"task {task_id} completed as attempt {attempt} ({record_line(ends[-1])}), but a "
            f"later attempt wrote after it: {record_line(accepted[-1])}"
        )
    return None
