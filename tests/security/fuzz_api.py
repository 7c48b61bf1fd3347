"""A schema-driven fuzzer for the HTTP API: schemathesis against the served OpenAPI document.

Every operation the master declares gets ``examples`` generated requests, valid ones and (in the
negative mode) ones that break the declared schema. Each response is checked against the same
document: no server error, a declared status code, a declared content type, a body that matches
the declared schema, and invalid input refused. One check of our own: a refused request (4xx)
changes nothing, read from the master's count of commands applied by kind.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st_checks

# Commands the leader proposes on its own clock (expiry, aging, worker loss): they may apply
# while a refused request is in flight without that request having changed anything.
BACKGROUND_COMMANDS = frozenset(
    {
        "ExpireLocks",
        "RearmLocks",
        "ReleaseDueTasks",
        "MarkWorkersLost",
        "DeregisterWorker",
        "AssignTasks",
    }
)
# Parameters that make a route wait, with the longest wait any route accepts for them: a valid
# wait is shortened, so a generated 300 s wait costs milliseconds. An invalid one (negative,
# too long, not a number) is left as generated, to be refused before anything waits.
WAIT_PARAMETERS = {"wait_s": (0.05, 300.0), "timeout_ms": (50, 300_000)}
REQUEST_TIMEOUT_S = 15.0
_APPLIED = re.compile(
    r'^agentflow_commands_applied_total\{command="(\w+)",outcome="applied"\} ([0-9.e+]+)$',
    re.MULTILINE,
)


@dataclass
class FuzzReport:
    operations: int = 0
    cases: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def distinct(self) -> list[str]:
        """Failures with their timing dropped, each once, most frequent first."""
        seen = Counter(re.sub(r" \([0-9.]+s\)$", "", f) for f in self.failures)
        return [f"{n}x {text}" for text, n in seen.most_common()]

    def line(self) -> str:
        classes = Counter(f"{s // 100}xx" for s in self.by_status.elements())
        spread = ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
        return (
            f"fuzz: {self.operations} operations, {self.cases} cases ({spread}), "
            f"{len(self.failures)} failures ({len(self.distinct())} distinct)"
        )


def applied_commands(client: httpx.Client) -> Counter[str]:
    """Commands the master has applied with effect, by kind (from /metrics)."""
    text = client.get("/metrics").text
    return Counter({name: int(float(n)) for name, n in _APPLIED.findall(text)})


def _shorten_waits(container: Any) -> None:
    if not isinstance(container, dict):
        return
    for name, (short, longest) in WAIT_PARAMETERS.items():
        value = container.get(name)
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        if valid and short < value <= longest:
            container[name] = short


def _client_changes(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {
        name: after[name] - before[name]
        for name in after
        if after[name] != before[name] and name not in BACKGROUND_COMMANDS
    }


def _operations(schema: Any) -> Iterator[Any]:
    for result in schema.get_all_operations():
        yield result.ok()


def _run_case(case: Any, base_url: str, headers: dict[str, str]) -> Any:
    _shorten_waits(case.query)
    _shorten_waits(case.body)
    return case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)


CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.negative_data_rejection,
]


def _checks_for(case: Any, status: int) -> list[Any]:
    """The checks for ``case``. A query value that is a map (or a list holding one) has no form
    in a query string: it goes out as an empty or flattened value that may well be valid, so
    whether invalid data was refused cannot be judged from its answer. A 413 is a refusal too
    (too large to look at), though not one in schemathesis' list of rejections."""
    if status == 413:
        return [c for c in CHECKS if c is not st_checks.negative_data_rejection]
    query = case.query if isinstance(case.query, dict) else {}
    unsendable = any(
        isinstance(v, dict) or (isinstance(v, list) and any(isinstance(i, dict | list) for i in v))
        for v in query.values()
    )
    if unsendable:
        return [c for c in CHECKS if c is not st_checks.negative_data_rejection]
    return CHECKS


def fuzz(base_url: str, token: str | None, examples: int, seed: int = 0) -> FuzzReport:
    """Fuzz every declared operation of the master at ``base_url``; return what was seen."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    report = FuzzReport()
    with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        spec = client.get("/api/openapi.json").raise_for_status().json()
        schema = schemathesis.openapi.from_dict(spec)
        for operation in _operations(schema):
            report.operations += 1
            for mode in schemathesis.GenerationMode:
                _fuzz_operation(operation, mode, client, base_url, headers, examples, seed, report)
    return report


def _fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    client: httpx.Client,
    base_url: str,
    headers: dict[str, str],
    examples: int,
    seed: int,
    report: FuzzReport,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.seed(seed)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        before = applied_commands(client)
        started = time.monotonic()
        try:
            response = _run_case(case, base_url, headers)
        except Exception as exc:  # a hung or dropped request is a finding, not a crash
            report.failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}")
            return
        report.cases += 1
        report.by_status[response.status_code] += 1
        try:
            case.validate_response(response, checks=_checks_for(case, response.status_code))
        except (Exception, BaseExceptionGroup) as exc:
            report.failures.append(
                f"{operation.label} [{mode.value}] -> {response.status_code}: "
                f"{_first_line(exc)} ({time.monotonic() - started:.2f}s)"
            )
            return
        if 400 <= response.status_code < 500:
            changed = _client_changes(before, applied_commands(client))
            if changed:
                report.failures.append(
                    f"{operation.label} [{mode.value}] -> {response.status_code} "
                    f"but applied {changed}"
                )

    # An operation with nothing to generate in a mode (no parameters at all) is unsatisfiable.
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_first_line(e) for e in exc.exceptions)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
