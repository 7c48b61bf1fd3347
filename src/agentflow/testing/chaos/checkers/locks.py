"""Lock holders never overlap in the fenced file, and tokens only rise.

From the client history, per lock:

- ``ok`` acquires in real-time order (one completed before the other was invoked) get
  strictly rising tokens, across failovers too;
- no two ``ok`` acquires share a token (a grant is one holder's).

From the storage host's stream ``lock:<name>`` (in the order it decided):

- accepted tokens never go back and one token is one writer's, so the writer changes only
  with a rising token: holders never overlap in the fenced file (a writer change at an equal
  token is a shared token, at a lower one a token that went back);
- an ``ok`` fenced-append the host answered ``accepted`` is in the stream as accepted; one it
  answered refused carried a token lower than one the stream had accepted before it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Sequence

from agentflow.testing.chaos.checkers.attempts import check_stream_fence
from agentflow.testing.chaos.checkers.common import CheckerResult, ok_ops, op_line, streams_of
from agentflow.testing.chaos.history import Op, StorageRecord

__all__ = ["check_locks"]

NAME = "locks"
LOCK_PREFIX = "lock:"


def check_locks(ops: Sequence[Op], storage: Sequence[StorageRecord]) -> CheckerResult:
    acquires: dict[str, list[Op]] = defaultdict(list)
    for op in ok_ops(ops, "lock-acquire"):
        acquires[str(op.args["lock"])].append(op)
    streams = streams_of(storage, LOCK_PREFIX)
    anomalies: list[str] = []
    for lock, grants in sorted(acquires.items()):
        anomalies.extend(_token_order(lock, grants))
    for stream, records in sorted(streams.items()):
        anomalies.extend(check_stream_fence(stream, records))
    appends = ok_ops(ops, "fenced-append")
    anomalies.extend(_appends(appends, streams))
    stats = {
        "locks": len(acquires.keys() | {s[len(LOCK_PREFIX) :] for s in streams}),
        "ok_acquires": sum(len(g) for g in acquires.values()),
        "ok_appends": len(appends),
        "records": sum(len(r) for r in streams.values()),
        "refused": sum(not rec.accepted for r in streams.values() for rec in r),
    }
    return CheckerResult.of(NAME, anomalies, stats)


def _token_order(lock: str, grants: Sequence[Op]) -> Iterator[str]:
    """Shared tokens, and tokens that do not rise along real time (n log n: a sweep of the
    grants by invocation over the grants by completion, keeping the highest token seen)."""
    first: dict[int, Op] = {}
    for op in grants:
        token = int(op.result["token"])
        seen = first.setdefault(token, op)
        if seen is not op:
            yield (
                f"lock {lock}: token {token} granted twice, to {seen.args.get('holder')} "
                f"({op_line(seen)}) and to {op.args.get('holder')} ({op_line(op)})"
            )
    by_end = sorted(grants, key=lambda o: o.complete_ns)
    ends = [o.complete_ns for o in by_end]
    best: Op | None = None
    done = 0
    for op in sorted(grants, key=lambda o: o.invoke_ns):
        before = bisect.bisect_left(ends, op.invoke_ns)  # grants completed before this invoke
        for prior in by_end[done:before]:
            if best is None or int(prior.result["token"]) > int(best.result["token"]):
                best = prior
        done = max(done, before)
        if best is not None and int(op.result["token"]) <= int(best.result["token"]):
            if int(op.result["token"]) == int(best.result["token"]):
                continue  # reported above as a shared token
            yield (
                f"lock {lock}: token went back, {op.args.get('holder')} got "
                f"{op.result['token']} ({op_line(op)}) after {best.args.get('holder')} got "
                f"{best.result['token']} ({op_line(best)})"
            )


def _appends(appends: Sequence[Op], streams: dict[str, list[StorageRecord]]) -> Iterator[str]:
    index = {stream: _StreamIndex(records) for stream, records in streams.items()}
    empty = _StreamIndex([])
    for op in appends:
        stream = LOCK_PREFIX + str(op.args["lock"])
        line = index.get(stream, empty).judge(op)
        if line is not None:
            yield f"{stream}: {line}"


class _StreamIndex:
    """One lock stream's records by (data, token), and the highest accepted token by time."""

    def __init__(self, records: Sequence[StorageRecord]) -> None:
        self.by_write: dict[tuple[str, int], list[StorageRecord]] = defaultdict(list)
        self.accepted_at: list[int] = []
        self.top_token: list[int] = []  # the highest accepted token up to accepted_at[i]
        for rec in records:
            self.by_write[(rec.event, rec.token)].append(rec)
            if rec.accepted:
                self.accepted_at.append(rec.at_ns)
                self.top_token.append(max([rec.token, *self.top_token[-1:]]))

    def top_until(self, at_ns: int) -> int | None:
        n = bisect.bisect_right(self.accepted_at, at_ns)
        return self.top_token[n - 1] if n else None

    def judge(self, op: Op) -> str | None:
        token, data = int(op.args["token"]), str(op.args["data"])
        mine = self.by_write.get((data, token), [])
        what = f"{op_line(op)} data {data!r} token {token}"
        if op.result.get("accepted"):
            if not any(r.accepted for r in mine):
                return f"{what} was acknowledged but is not stored"
            return None
        if any(r.accepted for r in mine):
            return f"{what} was answered refused but is stored"
        refusal = next((r for r in mine if not r.accepted), None)
        top = self.top_until(op.complete_ns if refusal is None else refusal.at_ns)
        if top is None or top <= token:
            return f"{what} was refused though no higher token had been accepted (top {top})"
        return None
