"""What one chaos run did and found, as text for a person and JSON for a machine; a summary
table over many runs.

A run's verdict is ``FAIL`` when any checker found an anomaly, ``UNKNOWN`` when none did but
some checker could not decide everything (a linearizability search out of budget): that is
not a pass, and ``PASS`` otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentflow.testing.chaos.checkers.common import CheckerResult
from agentflow.testing.chaos.history import FAIL, INFO, OK, Op

__all__ = ["AppliedFault", "RunReport", "count_ops", "summary_table"]

_OUTCOMES = (OK, INFO, FAIL)
_ANOMALIES_SHOWN = 50  # per checker in the text report; the JSON has them all


@dataclass(frozen=True, slots=True)
class AppliedFault:
    """A fault the nemesis applied (or healed), `at_s` seconds after the run began."""

    at_s: float
    what: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    seed: int
    schedule: tuple[str, ...]  # the nemesis schedule as printed: enough to repeat the run
    faults: tuple[AppliedFault, ...]
    op_counts: Mapping[str, Mapping[str, int]]  # f -> outcome -> count
    results: tuple[CheckerResult, ...]
    recovery_s: float | None
    duration_s: float
    extra: Mapping[str, Any] = field(default_factory=dict)  # anything else worth keeping

    @classmethod
    def build(
        cls,
        *,
        seed: int,
        schedule: Iterable[str],
        faults: Iterable[AppliedFault | tuple[float, str]],
        ops: Iterable[Op],
        results: Iterable[CheckerResult],
        recovery_s: float | None,
        duration_s: float,
        extra: Mapping[str, Any] | None = None,
    ) -> RunReport:
        return cls(
            seed=seed,
            schedule=tuple(schedule),
            faults=tuple(f if isinstance(f, AppliedFault) else AppliedFault(*f) for f in faults),
            op_counts=count_ops(ops),
            results=tuple(results),
            recovery_s=recovery_s,
            duration_s=duration_s,
            extra=dict(extra or {}),
        )

    @property
    def verdict(self) -> str:
        verdicts = {r.verdict for r in self.results}
        if "FAIL" in verdicts:
            return "FAIL"
        return "UNKNOWN" if "UNKNOWN" in verdicts else "PASS"

    @property
    def anomalies(self) -> int:
        return sum(len(r.anomalies) for r in self.results)

    def outcomes(self) -> dict[str, int]:
        totals: dict[str, int] = {o: 0 for o in _OUTCOMES}
        for counts in self.op_counts.values():
            for outcome, n in counts.items():
                totals[outcome] = totals.get(outcome, 0) + n
        return totals

    def to_text(self) -> str:
        out = [f"chaos run seed {self.seed}: {self.verdict}", "", "schedule:"]
        out += [f"  {line}" for line in self.schedule] or ["  (none)"]
        out += ["", "faults applied:"]
        out += [f"  {f.at_s:8.2f}s  {f.what}" for f in self.faults] or ["  (none)"]
        out += ["", "operations (ok/info/fail):"]
        for f, counts in sorted(self.op_counts.items()):
            out.append(f"  {f:<14} " + "/".join(str(counts.get(o, 0)) for o in _OUTCOMES))
        totals = self.outcomes()
        out.append(f"  {'total':<14} " + "/".join(str(totals[o]) for o in _OUTCOMES))
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.2f}s"
        out += ["", f"recovery after healing: {recovery}; duration {self.duration_s:.1f}s", ""]
        out.append("checkers:")
        for r in self.results:
            stats = ", ".join(f"{k}={v}" for k, v in r.stats.items())
            out.append(f"  {r.name:<12} {r.verdict:<8} {stats}")
            out += [f"    ? {line}" for line in r.inconclusive]
            out += [f"    ! {line}" for line in r.anomalies[:_ANOMALIES_SHOWN]]
            if len(r.anomalies) > _ANOMALIES_SHOWN:
                out.append(f"    ... and {len(r.anomalies) - _ANOMALIES_SHOWN} more (JSON report)")
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "verdict": self.verdict,
            "schedule": list(self.schedule),
            "faults": [{"at_s": f.at_s, "what": f.what} for f in self.faults],
            "op_counts": {f: dict(c) for f, c in sorted(self.op_counts.items())},
            "results": [r.to_json() for r in self.results],
            "recovery_s": self.recovery_s,
            "duration_s": self.duration_s,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunReport:
        return cls(
            seed=int(data["seed"]),
            schedule=tuple(data["schedule"]),
            faults=tuple(AppliedFault(float(f["at_s"]), str(f["what"])) for f in data["faults"]),
            op_counts={f: dict(c) for f, c in data["op_counts"].items()},
            results=tuple(_result_from_json(r) for r in data["results"]),
            recovery_s=data.get("recovery_s"),
            duration_s=float(data["duration_s"]),
            extra=dict(data.get("extra") or {}),
        )


def _result_from_json(data: Mapping[str, Any]) -> CheckerResult:
    return CheckerResult(
        name=str(data["name"]),
        ok=bool(data["ok"]),
        anomalies=tuple(data["anomalies"]),
        stats=dict(data["stats"]),
        inconclusive=tuple(data.get("inconclusive") or ()),
    )


def count_ops(ops: Iterable[Op]) -> dict[str, dict[str, int]]:
    counts: Counter[tuple[str, str]] = Counter((op.f, op.type) for op in ops)
    out: dict[str, dict[str, int]] = {}
    for (f, outcome), n in sorted(counts.items()):
        out.setdefault(f, {})[outcome] = n
    return out


_COLUMNS = ("seed", "faults", "ops", "ok", "info", "fail", "anomalies", "verdict")


def summary_table(reports: Sequence[RunReport]) -> str:
    """One row per run and a totals row; the totals' verdict is the worst of the runs'."""
    rows: list[tuple[str, ...]] = []
    sums = Counter[str]()
    for r in reports:
        outcomes = r.outcomes()
        row = {
            "faults": len(r.faults),
            "ops": sum(outcomes.values()),
            **outcomes,
            "anomalies": r.anomalies,
        }
        sums.update(row)
        rows.append((str(r.seed), *(str(row[c]) for c in _COLUMNS[1:-1]), r.verdict))
    worst = _worst(r.verdict for r in reports)
    totals = (f"{len(reports)} runs", *(str(sums[c]) for c in _COLUMNS[1:-1]), worst)
    widths = [
        max(len(c), *(len(row[i]) for row in [*rows, totals])) for i, c in enumerate(_COLUMNS)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i in (0, len(widths) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(_COLUMNS), rule, *map(line, rows), rule, line(totals)]) + "\n"


def _worst(verdicts: Iterable[str]) -> str:
    seen = set(verdicts)
    for verdict in ("FAIL", "UNKNOWN", "PASS"):
        if verdict in seen:
            return verdict
    return "-"
