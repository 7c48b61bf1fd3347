"""Linearizability checker for a register-per-key store with put, get and compare-and-set.

A history is a list of `Operation`s, each with the simulated time it was invoked and the
time it returned (``None`` for an operation whose outcome the client never learned: it may
or may not have taken effect, at any moment after its invocation).

The check is a Wing & Gong search made practical as in Lowe's "Testing for linearizability"
(2017): the store is P-compositional — keys are independent registers — so each key's
sub-history is checked alone, and the depth-first search remembers every (set of operations
already linearized, register value) configuration it has explored, so no configuration is
expanded twice. An operation may be linearized next only if no other pending-to-place
operation returned strictly before it was invoked. Operations that never returned may be
placed anywhere after their invocation, or nowhere.

The search is bounded (`max_states`); a history that exhausts the bound is reported as
`Verdict.UNKNOWN`, never silently as linearizable.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CheckResult",
    "History",
    "OpKind",
    "Operation",
    "Verdict",
    "check_history",
]

DEFAULT_MAX_STATES = 2_000_000
_EXPLAIN_OPS = 12  # operations shown when a history fails


class OpKind(enum.Enum):
    PUT = "put"
    GET = "get"
    CAS = "cas"


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not-linearizable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One client operation on one key.

    `value` is the value written by PUT and the new value of CAS; `expected` is what CAS
    compares against. `result` is what the client saw: the value read by GET (``None`` for
    an absent key), ``True``/``False`` for CAS, ``None`` for PUT. `return_ms` is ``None``
    when the client never learned the outcome.
    """

    client: int
    kind: OpKind
    key: str
    invoke_ms: int
    return_ms: int | None
    value: str | None = None
    expected: str | None = None
    result: str | bool | None = None

    def __post_init__(self) -> None:
        assert self.return_ms is None or self.return_ms >= self.invoke_ms, self

    @property
    def returned(self) -> bool:
        return self.return_ms is not None

    def describe(self) -> str:
        end = "..." if self.return_ms is None else str(self.return_ms)
        if self.kind is OpKind.PUT:
            call = f"put({self.key}, {self.value})"
        elif self.kind is OpKind.GET:
            call = f"get({self.key})"
        else:
            call = f"cas({self.key}, {self.expected} -> {self.value})"
        outcome = "?" if self.return_ms is None else repr(self.result)
        return f"c{self.client} [{self.invoke_ms}, {end}] {call} = {outcome}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    verdict: Verdict
    key: str | None = None
    explanation: str = ""
    states_explored: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.NOT_LINEARIZABLE


class History:
    """Records invocations and returns as the simulation produces them."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[int, OpKind, str, str | None, str | None, int]] = {}
        self._done: list[Operation] = []
        self._next_id = 0

    def invoke(
        self,
        *,
        client: int,
        kind: OpKind,
        key: str,
        now_ms: int,
        value: str | None = None,
        expected: str | None = None,
    ) -> int:
        op_id = self._next_id
        self._next_id += 1
        self._open[op_id] = (client, kind, key, value, expected, now_ms)
        return op_id

    def complete(self, op_id: int, *, result: str | bool | None, now_ms: int) -> None:
        client, kind, key, value, expected, invoke_ms = self._open.pop(op_id)
        self._done.append(
            Operation(
                client=client,
                kind=kind,
                key=key,
                invoke_ms=invoke_ms,
                return_ms=now_ms,
                value=value,
                expected=expected,
                result=result,
            )
        )

    def fail(self, op_id: int) -> None:
        """The operation certainly did not take effect: drop it from the history."""
        del self._open[op_id]

    def open_ids(self) -> list[int]:
        return sorted(self._open)

    def operations(self) -> list[Operation]:
        """Completed operations plus every still-open one as 'maybe happened'."""
        pending = [
            Operation(
                client=client,
                kind=kind,
                key=key,
                invoke_ms=invoke_ms,
                return_ms=None,
                value=value,
                expected=expected,
            )
            for client, kind, key, value, expected, invoke_ms in self._open.values()
        ]
        return [*self._done, *pending]


def check_history(
    operations: Iterable[Operation], *, max_states: int = DEFAULT_MAX_STATES
) -> CheckResult:
    """Decide whether the history is linearizable against a map of independent registers."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        # A read that never returned constrains nothing and changes nothing.
        if op.kind is OpKind.GET and not op.returned:
            continue
        by_key[op.key].append(op)
    explored = 0
    unknown: str | None = None
    for key in sorted(by_key):
        ops = sorted(by_key[key], key=lambda o: (o.invoke_ms, _end(o)))
        verdict, states = _check_register(ops, max_states=max_states - explored)
        explored += states
        if verdict is Verdict.NOT_LINEARIZABLE:
            return CheckResult(
                verdict=verdict,
                key=key,
                explanation=_explain(key, ops, max_states=max_states),
                states_explored=explored,
            )
        if verdict is Verdict.UNKNOWN and unknown is None:
            unknown = key
    if unknown is not None:
        return CheckResult(
            verdict=Verdict.UNKNOWN,
            key=unknown,
            explanation=f"search budget of {max_states} states exhausted on key {unknown!r}",
            states_explored=explored,
        )
    return CheckResult(verdict=Verdict.LINEARIZABLE, states_explored=explored)


def _end(op: Operation) -> float:
    return float("inf") if op.return_ms is None else float(op.return_ms)


def _apply(op: Operation, value: str | None) -> tuple[bool, str | None]:
    """Run `op` against a register holding `value`: (consistent with what was seen, new value)."""
    if op.kind is OpKind.PUT:
        return True, op.value
    if op.kind is OpKind.GET:
        return op.result == value, value
    matches = value == op.expected
    if not op.returned:
        return True, op.value if matches else value
    if op.result is True:
        return matches, op.value
    return not matches, value


def _check_register(ops: Sequence[Operation], *, max_states: int) -> tuple[Verdict, int]:
    n = len(ops)
    invoke = [op.invoke_ms for op in ops]
    ret = [_end(op) for op in ops]
    must = 0
    for i, op in enumerate(ops):
        if op.returned:
            must |= 1 << i
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[int, str | None]] = [(0, None)]
    while stack:
        done, value = stack.pop()
        if done & must == must:
            return Verdict.LINEARIZABLE, len(seen)
        if (done, value) in seen:
            continue
        seen.add((done, value))
        if len(seen) > max_states:
            return Verdict.UNKNOWN, len(seen)
        horizon = min(ret[i] for i in range(n) if not done >> i & 1 and must >> i & 1)
        for i in range(n - 1, -1, -1):
            if done >> i & 1 or invoke[i] > horizon:
                continue
            consistent, after = _apply(ops[i], value)
            if consistent:
                stack.append((done | 1 << i, after))
    return Verdict.NOT_LINEARIZABLE, len(seen)


def _explain(key: str, ops: Sequence[Operation], *, max_states: int) -> str:
    """Show the shortest failing prefix (in invocation order): its last operations are the
    ones that cannot be placed."""
    low, high = 1, len(ops)  # the prefix of `high` operations fails
    while low < high:
        mid = (low + high) // 2
        verdict, _ = _check_register(ops[:mid], max_states=max_states)
        if verdict is Verdict.NOT_LINEARIZABLE:
            high = mid
        else:
            low = mid + 1
    shown = ops[max(0, high - _EXPLAIN_OPS) : high]
    lines = [
        f"no linearization of the {len(ops)} operations on key {key!r}; the first "
        f"{high} already fail, ending with:"
    ]
    lines.extend("  " + op.describe() for op in shown)
    return "\n".join(lines)
