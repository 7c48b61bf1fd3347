"""Workflow DAG analysis, pure: validation of a submitted graph, then its structure and timing.

A workflow is a list of :class:`DagTask`; ``dependencies`` name the tasks that must finish
first, so each dependency ``d`` of task ``t`` is an edge ``d -> t``. Entry points:

- :func:`validate` returns every :class:`Problem` at once (an empty list means a valid DAG).
- :func:`analyse` (valid DAGs only) returns an :class:`Analysis`: topological order, levels,
  widths, peak parallelism, the critical path and the counts.
- :func:`check` does both in one pass (what a submit wants): the ids are numbered and the
  dependencies resolved once, and the Kahn pass that proves the graph acyclic also orders and
  schedules it.

:func:`critical_path` recomputes the critical path with measured durations, and
:func:`remaining_critical_path_s` gives what is left of it once some tasks have finished (an ETA).

Everything is iterative (no recursion limit to hit) and linear in tasks + edges, except the
peak-parallelism sweep, which sorts the 2n start and finish times (O(n log n), in C). The hot
paths keep to flat lists of ints indexed by position (successors as one list plus offsets:
100,000 small lists would also cost garbage-collector passes) and to ``map`` loops that run
in C. A valid DAG, the common case, takes the fast path only; the per-problem checks run once
it has found something wrong. No I/O, no clock, no randomness; analysing a graph that
:func:`validate` refuses is a programmer error (``ValueError``).

Why not ``graphlib``: its ``CycleError`` names one cycle where we report one per strongly
connected component, and analysis computes levels and the ASAP schedule in the same Kahn pass
that orders the tasks. The tests use ``graphlib`` as the independent oracle instead.
"""

from __future__ import annotations

import enum
import math
import operator
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import accumulate, chain, count, islice, repeat
from typing import TypeVar, cast

__all__ = [
    "DEFAULT_ESTIMATE_S",
    "DEFAULT_MAX_EDGES",
    "DEFAULT_MAX_PROBLEMS",
    "DEFAULT_MAX_TASKS",
    "Analysis",
    "CriticalPath",
    "DagTask",
    "Problem",
    "ProblemKind",
    "analyse",
    "check",
    "critical_path",
    "remaining_critical_path_s",
    "validate",
]

DEFAULT_ESTIMATE_S = 1.0  # a task without an estimate counts as one second
DEFAULT_MAX_TASKS = 100_000
DEFAULT_MAX_EDGES = 1_000_000
DEFAULT_MAX_PROBLEMS = 1_000  # a 422 body stays readable (and bounded) however broken the input


@dataclass(frozen=True, slots=True, kw_only=True)
class DagTask:
    """What the analysis needs of one task: its id, what it waits for, how long it may take."""

    id: str
    dependencies: tuple[str, ...] = ()
    estimate_s: float | None = None


class ProblemKind(enum.StrEnum):
    EMPTY_WORKFLOW = "empty_workflow"
    TOO_MANY_TASKS = "too_many_tasks"
    TOO_MANY_EDGES = "too_many_edges"
    DUPLICATE_ID = "duplicate_id"
    INVALID_ESTIMATE = "invalid_estimate"
    SELF_DEPENDENCY = "self_dependency"
    UNKNOWN_DEPENDENCY = "unknown_dependency"
    CYCLE = "cycle"
    TOO_MANY_PROBLEMS = "too_many_problems"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One reason a workflow is refused.

    ``task_ids`` by kind: DUPLICATE_ID, INVALID_ESTIMATE and SELF_DEPENDENCY name the task;
    UNKNOWN_DEPENDENCY names the task, then the missing id; CYCLE is the closed path in edge
    order, first id repeated last (``a, b, c, a``: b depends on a, c on b, a on c); the
    workflow-wide kinds name none.
    """

    kind: ProblemKind
    task_ids: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CriticalPath:
    """The longest chain of dependent tasks, weighted by duration; a root first."""

    task_ids: list[str]
    length_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """The structure of a valid DAG.

    - ``levels[k]``: the tasks whose longest chain of dependencies from a root has k edges,
      in submission order. ``topological_order`` is the levels one after the other (so ties
      go by level, then by submission order); every dependency comes before its dependents.
    - ``max_width``: the size of the largest level.
    - ``peak_parallelism``: the most tasks running at one instant in the ASAP schedule on
      unlimited workers: each task starts when its last dependency finishes (roots at 0) and
      runs for its duration (measured, else ``estimate_s``, else 1 s) over the half-open
      interval [start, finish), so a task and a dependent that starts as it finishes never
      overlap. A zero-length task takes an instant shorter than any positive duration: it
      counts while it runs, and its dependents start after it. This is a lower bound on the
      widest antichain (computing that exactly needs a bipartite matching).
    - ``critical_path``: the longest path by the same durations; ``length_s`` is also the ASAP
      makespan.
    - ``edge_count``: distinct dependencies (a dependency listed twice counts once).
    """

    task_count: int
    edge_count: int
    topological_order: list[str]
    levels: list[list[str]]
    max_width: int
    peak_parallelism: int
    critical_path: CriticalPath


# -- validation and analysis in one pass ----------------------------------------------------


def check(
    tasks: Sequence[DagTask],
    *,
    max_tasks: int = DEFAULT_MAX_TASKS,
    max_edges: int = DEFAULT_MAX_EDGES,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> tuple[list[Problem], Analysis | None]:
    """:func:`validate` and, for a valid DAG, :func:`analyse`, sharing one index: the ids are
    numbered and the dependencies resolved once, and the Kahn pass that proves the graph
    acyclic also orders it and schedules it. ``(problems, None)`` for a refused workflow,
    ``([], analysis)`` for a valid one: the same results as the two calls."""
    problems, plan = _check(tasks, max_tasks, max_edges, max_problems)
    return problems, None if plan is None else _analysis(plan)


def validate(
    tasks: Sequence[DagTask],
    *,
    max_tasks: int = DEFAULT_MAX_TASKS,
    max_edges: int = DEFAULT_MAX_EDGES,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> list[Problem]:
    """Every reason to refuse ``tasks``, in a stable order; ``[]`` means a valid DAG.

    A workflow over the size limits gets only the limit problems: the other checks would do
    the very work the limits bound. Past ``max_problems`` the list ends with one
    TOO_MANY_PROBLEMS entry that counts the rest.
    """
    return _check(tasks, max_tasks, max_edges, max_problems)[0]


def _check(
    tasks: Sequence[DagTask], max_tasks: int, max_edges: int, max_problems: int
) -> tuple[list[Problem], _Schedule | None]:
    """The fast path assumes a valid DAG (unique ids, sound estimates, known dependencies, no
    cycle) and schedules it; at the first sign of trouble, the problems are collected one
    check after another, on the index already built."""
    if max_tasks < 1 or max_edges < 0 or max_problems < 1:
        raise ValueError(f"bad limits: {max_tasks=}, {max_edges=}, {max_problems=}")
    if not tasks:
        return [Problem(kind=ProblemKind.EMPTY_WORKFLOW, task_ids=(), message=_EMPTY)], None
    deps = [task.dependencies for task in tasks]
    problems = _limit_problems(len(tasks), sum(map(len, deps)), max_tasks, max_edges)
    if problems:
        return problems, None
    ids = [task.id for task in tasks]
    index = dict(zip(ids, range(len(ids)), strict=True))
    if len(index) == len(ids):
        weights = _estimates(tasks)
        if _all_durations(weights):
            edges = _resolve(index, deps)
            if edges is not None:
                plan = _kahn(ids, edges, weights)
                if plan is not None:
                    return [], plan
    else:  # number the distinct ids by first occurrence
        distinct = dict.fromkeys(ids)
        index = dict(zip(distinct, range(len(distinct)), strict=True))
    return _capped(_problems(tasks, ids, index), max_problems), None


_EMPTY = "the workflow has no tasks: give at least one"


def _capped(problems: list[Problem], max_problems: int) -> list[Problem]:
    if len(problems) <= max_problems:
        return problems
    more = len(problems) - max_problems
    message = f"{more:,} more problems not shown (only the first {max_problems:,} are listed)"
    return [
        *problems[:max_problems],
        Problem(kind=ProblemKind.TOO_MANY_PROBLEMS, task_ids=(), message=message),
    ]


def _limit_problems(tasks: int, edges: int, max_tasks: int, max_edges: int) -> list[Problem]:
    problems = []
    if tasks > max_tasks:
        message = f"the workflow has {tasks:,} tasks; at most {max_tasks:,} are allowed"
        problems.append(Problem(kind=ProblemKind.TOO_MANY_TASKS, task_ids=(), message=message))
    if edges > max_edges:
        message = (
            f"the workflow has {edges:,} dependencies in all; at most {max_edges:,} are allowed"
        )
        problems.append(Problem(kind=ProblemKind.TOO_MANY_EDGES, task_ids=(), message=message))
    return problems


def _problems(tasks: Sequence[DagTask], ids: list[str], index: dict[str, int]) -> list[Problem]:
    """Every problem but the limits, in order: duplicates, estimates, edges, cycles."""
    problems = _duplicate_problems(ids)
    problems += _estimate_problems(tasks)
    successors, link_problems = _link(tasks, index)
    problems += link_problems
    problems += _cycle_problems(list(index), successors)
    return problems


def _duplicate_problems(ids: list[str]) -> list[Problem]:
    return [
        Problem(
            kind=ProblemKind.DUPLICATE_ID,
            task_ids=(task_id,),
            message=f"task id {task_id!r} is used by {count} tasks; each task needs its own id",
        )
        for task_id, count in Counter(ids).items()  # in order of first occurrence
        if count > 1
    ]


def _estimate_problems(tasks: Sequence[DagTask]) -> list[Problem]:
    return [
        Problem(
            kind=ProblemKind.INVALID_ESTIMATE,
            task_ids=(task.id,),
            message=(
                f"task {task.id!r} has estimate_s={task.estimate_s!r}; "
                "it must be a finite number of seconds, 0 or more"
            ),
        )
        for task in tasks
        if task.estimate_s is not None and not _is_duration(task.estimate_s)
    ]


def _link(tasks: Sequence[DagTask], index: dict[str, int]) -> tuple[list[list[int]], list[Problem]]:
    """Successor lists over ``index`` (the distinct ids numbered by first occurrence), leaving
    out the edges that are problems of their own: self-dependencies and unknown ids. Tasks
    sharing an id (already a problem) pool their dependencies, so a cycle through either one
    is found. An edge listed twice stays twice: peeling, Tarjan and the cycle search do not
    mind."""
    successors: list[list[int]] = [[] for _ in index]
    problems: list[Problem] = []
    reported: set[tuple[str, str]] = set()
    for task in tasks:
        me = index[task.id]
        parents = [index.get(dep, -1) for dep in task.dependencies]
        if -1 in parents or me in parents:  # rare: sort out this task's bad edges
            kept = []
            for dep, parent in zip(task.dependencies, parents, strict=True):
                if parent not in (-1, me):
                    kept.append(parent)
                elif (task.id, dep) not in reported:
                    reported.add((task.id, dep))
                    problems.append(_edge_problem(task.id, dep, self_loop=parent == me))
            parents = kept
        for parent in parents:
            successors[parent].append(me)
    return successors, problems


def _edge_problem(task_id: str, dep: str, *, self_loop: bool) -> Problem:
    if self_loop:
        message = f"task {task_id!r} depends on itself"
        return Problem(kind=ProblemKind.SELF_DEPENDENCY, task_ids=(task_id,), message=message)
    message = f"task {task_id!r} depends on {dep!r}, which is not a task of this workflow"
    return Problem(kind=ProblemKind.UNKNOWN_DEPENDENCY, task_ids=(task_id, dep), message=message)


def _cycle_problems(ids: list[str], successors: list[list[int]]) -> list[Problem]:
    """One cycle per strongly connected component of more than one task, in the order of each
    component's first-submitted task. Kahn's peeling first removes every task that is on no
    cycle and downstream of none, so Tarjan only sees what is left."""
    left = _unpeeled(successors)
    if not left:
        return []
    component = _strongly_connected(left, successors)
    problems = []
    for start in _component_heads(left, component):
        path = [ids[i] for i in _cycle_through(start, successors, component)]
        message = (
            f"dependency cycle: {' -> '.join(path)} "
            "(each task waits for the one before it, so none of them can start)"
        )
        problems.append(Problem(kind=ProblemKind.CYCLE, task_ids=tuple(path), message=message))
    return problems


def _unpeeled(successors: list[list[int]]) -> list[int]:
    """The tasks Kahn's algorithm cannot order: those on a cycle or downstream of one."""
    waiting = [0] * len(successors)
    for children in successors:
        for child in children:
            waiting[child] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]
    for node in ready:  # grows as we go
        for child in successors[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return [i for i, count in enumerate(waiting) if count > 0]


def _strongly_connected(nodes: list[int], successors: list[list[int]]) -> dict[int, int]:
    """Tarjan's algorithm on the subgraph of ``nodes``, with an explicit stack: node -> the
    number of its component."""
    inside = set(nodes)
    order: dict[int, int] = {}  # discovery number
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    component: dict[int, int] = {}
    for root in nodes:
        if root in order:
            continue
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        work = [(root, 0)]  # (node, position of the next successor to look at)
        while work:
            node, position = work[-1]
            children = successors[node]
            descended = False
            while position < len(children):
                child = children[position]
                position += 1
                if child not in inside:
                    continue
                if child not in order:
                    work[-1] = (node, position)
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, 0))
                    descended = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], order[child])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == order[node]:
                number = order[node]  # the root's discovery number names the component
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = number
                    if member == node:
                        break
    return component


def _component_heads(nodes: list[int], component: dict[int, int]) -> list[int]:
    """The first-submitted task of each component with more than one task, in that order."""
    sizes: dict[int, int] = {}
    for node in nodes:
        sizes[component[node]] = sizes.get(component[node], 0) + 1
    heads: dict[int, int] = {}
    for node in nodes:  # ascending, so the first seen is the first submitted
        if sizes[component[node]] > 1:
            heads.setdefault(component[node], node)
    return list(heads.values())


def _cycle_through(start: int, successors: list[list[int]], component: dict[int, int]) -> list[int]:
    """A shortest cycle through ``start`` inside its component (breadth first), closed."""
    mine = component[start]
    parent = {start: start}
    queue = [start]
    for node in queue:  # grows as we go
        for child in successors[node]:
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                path.reverse()
                return [*path, start]
            if child not in parent and component.get(child) == mine:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"component of {start} has no cycle through it")


# -- analysis --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Edges:
    """The dependencies of tasks with unique ids, all known, as positions.

    ``parents[parent_at[i]:parent_at[i + 1]]`` are task i's dependencies as listed;
    ``children[child_at[i]:child_at[i + 1]]`` the tasks that depend on i, in submission
    order; ``waiting[i]`` how many dependencies task i lists. An edge listed twice is there
    twice in all three (Kahn's count stays consistent); ``edge_count`` counts it once.

    Flat lists and offsets rather than a list per task: 100,000 small lists that live on
    would cost as much again in garbage-collector passes as in building them.
    """

    parents: list[int]
    parent_at: list[int]
    children: list[int]
    child_at: list[int]
    waiting: list[int]
    edge_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Schedule:
    """A valid DAG scheduled ASAP on unlimited workers, by submission position.

    ``order`` is topological (Kahn, breadth first); ``level[i]`` the longest chain of edges
    from a root to i. ``start_s``/``finish_s`` are the ASAP times: a task starts when its
    last dependency finishes.
    """

    ids: list[str]
    edges: _Edges
    order: list[int]
    level: list[int]
    weight_s: list[float]
    start_s: list[float]
    finish_s: list[float]


def analyse(tasks: Sequence[DagTask], *, durations: Mapping[str, float] | None = None) -> Analysis:
    """The structure of a DAG that :func:`validate` accepted. ``durations`` (measured seconds
    by task id) override the estimates for peak parallelism and the critical path."""
    return _analysis(_plan(tasks, durations))


def critical_path(
    tasks: Sequence[DagTask], *, durations: Mapping[str, float] | None = None
) -> CriticalPath:
    """The critical path of a valid DAG, measured ``durations`` overriding the estimates."""
    return _longest(_plan(tasks, durations))


def remaining_critical_path_s(
    tasks: Sequence[DagTask],
    finished: AbstractSet[str],
    durations: Mapping[str, float] | None = None,
) -> float:
    """Seconds left on the critical path when the ``finished`` tasks take no more time and the
    others take their ``durations`` (else estimates): the ETA with unlimited workers. For a
    running task, pass the time it has left as its duration."""
    unknown = finished - {task.id for task in tasks}
    if unknown:
        raise ValueError(f"finished tasks not in the workflow: {sorted(unknown)[:10]}")
    remaining = {**(durations or {}), **dict.fromkeys(finished, 0.0)}
    return critical_path(tasks, durations=remaining).length_s


def _plan(tasks: Sequence[DagTask], durations: Mapping[str, float] | None) -> _Schedule:
    """The schedule of a valid DAG; ``ValueError`` on what :func:`validate` refuses."""
    ids = [task.id for task in tasks]
    index = dict(zip(ids, range(len(ids)), strict=True))
    if not tasks or len(index) != len(tasks):
        raise ValueError("analyse needs a non-empty DAG with unique ids: validate it first")
    edges = _resolve(index, [task.dependencies for task in tasks])
    if edges is None:
        task, dep = next((t, d) for t in tasks for d in t.dependencies if d not in index)
        raise ValueError(f"task {task.id!r} depends on unknown {dep!r}: validate first")
    weights = _estimates(tasks)
    if durations:
        if not durations.keys() <= index.keys():
            raise ValueError("durations name tasks that are not in this workflow")
        weights = list(map(durations.get, ids, weights))
    if not _all_durations(weights):
        raise ValueError("durations must be finite and >= 0, for tasks of this workflow")
    plan = _kahn(ids, edges, weights)
    if plan is None:
        raise ValueError("analyse needs an acyclic graph: validate it first")
    return plan


def _estimates(tasks: Sequence[DagTask]) -> list[float]:
    weights = [task.estimate_s for task in tasks]
    if None in weights:
        return [DEFAULT_ESTIMATE_S if w is None else w for w in weights]
    return weights  # type: ignore[return-value]  # no None in it


def _all_durations(weights: list[float]) -> bool:
    """Every weight finite and >= 0 (in C: no Python call per task)."""
    return all(map(math.isfinite, weights)) and min(weights) >= 0


def _is_duration(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _resolve(index: dict[str, int], deps: list[tuple[str, ...]]) -> _Edges | None:
    """Positions for the dependencies of tasks whose ids are unique (``index``: id ->
    position), or None if one names no task. Each dependency id is looked up once, in a C
    loop (``map``); the children lists come from a counting sort of the edges by parent."""
    found = list(map(index.get, chain.from_iterable(deps)))
    if None in found:
        return None
    parents = cast(list[int], found)
    waiting = list(map(len, deps))
    child_of = list(chain.from_iterable(map(repeat, range(len(deps)), waiting)))
    fan_out = [0] * len(deps)
    for parent in parents:
        fan_out[parent] += 1
    child_at = list(accumulate(fan_out, initial=0))
    # A counting sort of the edges by parent: child_of is ascending, so each parent's children
    # come out in submission order.
    free = child_at[:-1]  # the next free place in each parent's run
    children = [0] * len(parents)
    for parent, child in zip(parents, child_of, strict=True):
        at = free[parent]
        children[at] = child
        free[parent] = at + 1
    edge_count = len(parents)
    # A dependency listed twice leaves two equal neighbours in ``children`` (so does a child
    # that ends one parent's list and starts the next: then the exact count finds none).
    if any(map(operator.eq, children, islice(children, 1, None))):
        edge_count = sum(map(len, map(set, deps)))
    return _Edges(
        parents=parents,
        parent_at=list(accumulate(waiting, initial=0)),
        children=children,
        child_at=child_at,
        waiting=waiting,
        edge_count=edge_count,
    )


def _kahn(ids: list[str], edges: _Edges, weights: list[float]) -> _Schedule | None:
    """Kahn's algorithm, pushing each task's level and finish to its dependents as it is
    ordered: one pass over the edges. None if a cycle leaves tasks that are never ordered.

    Breadth first, tasks come off the queue in non-decreasing level, so the dependency that
    releases a task last has the highest level of its dependencies."""
    n = len(ids)
    children, child_at = edges.children, edges.child_at
    waiting = edges.waiting.copy()
    level = [0] * n
    start_s = [0.0] * n
    finish_s = [0.0] * n
    order = [i for i, count in enumerate(waiting) if not count]
    push = order.append
    for node in order:  # grows as we go
        done = finish_s[node] = start_s[node] + weights[node]
        below = level[node] + 1
        for child in children[child_at[node] : child_at[node + 1]]:
            if done > start_s[child]:  # noqa: PLR1730 - a call to max() per edge costs more
                start_s[child] = done
            waiting[child] -= 1
            if not waiting[child]:
                level[child] = below
                push(child)
    if len(order) != n:
        return None
    return _Schedule(
        ids=ids,
        edges=edges,
        order=order,
        level=level,
        weight_s=weights,
        start_s=start_s,
        finish_s=finish_s,
    )


def _analysis(plan: _Schedule) -> Analysis:
    ids, level = plan.ids, plan.level
    # A stable sort by level: each level in submission order, the levels one after another.
    by_level = sorted(range(len(ids)), key=level.__getitem__)
    topological_order = list(map(ids.__getitem__, by_level))
    widths = [0] * (level[by_level[-1]] + 1)
    for k in level:
        widths[k] += 1
    at = list(accumulate(widths, initial=0))
    levels = list(map(topological_order.__getitem__, map(slice, at, islice(at, 1, None))))
    return Analysis(
        task_count=len(ids),
        edge_count=plan.edges.edge_count,
        topological_order=topological_order,
        levels=levels,
        max_width=max(widths),
        peak_parallelism=_peak(plan),
        critical_path=_longest(plan),
    )


def _peak(plan: _Schedule) -> int:
    """The most tasks running at one instant of the ASAP schedule (see :class:`Analysis`)."""
    if min(plan.weight_s) > 0:
        return _most_open(plan.start_s, plan.finish_s)
    start_tick, finish_tick = _ticks(plan)
    return _most_open(
        list(zip(plan.start_s, start_tick, strict=True)),
        list(zip(plan.finish_s, finish_tick, strict=True)),
    )


def _ticks(plan: _Schedule) -> tuple[list[int], list[int]]:
    """Where zero-length tasks exist, time is ``seconds + ticks * epsilon``: such a task
    finishes one tick after it starts, so its dependents start after it, yet before any time
    a positive duration reaches. A task starts at the tick of the latest of the dependencies
    that finish at its start second."""
    start_tick, finish_tick = [0] * len(plan.ids), [0] * len(plan.ids)
    start_s, finish_s, weight_s = plan.start_s, plan.finish_s, plan.weight_s
    children, child_at = plan.edges.children, plan.edges.child_at
    for node in plan.order:
        tick = finish_tick[node] = start_tick[node] + (weight_s[node] == 0)
        second = finish_s[node]
        for child in children[child_at[node] : child_at[node + 1]]:
            if start_s[child] == second and start_tick[child] < tick:
                start_tick[child] = tick
    return start_tick, finish_tick


_Instant = TypeVar("_Instant", float, tuple[float, int])  # seconds, or (seconds, ticks)


def _most_open(start: list[_Instant], finish: list[_Instant]) -> int:
    """The most intervals [start, finish) open at one instant. Only a start raises the count,
    so the peak is at a start ``t``: the starts up to ``t`` less the finishes up to ``t``."""
    starts, finishes = sorted(start), sorted(finish)
    most: int = max(map(operator.sub, count(1), map(bisect_right, repeat(finishes), starts)))
    return most


def _longest(plan: _Schedule) -> CriticalPath:
    """The path to the task that finishes last: on a tie (zero-length tasks), the last of them
    to be ordered, which depends on none of the others, so the path runs to a sink. Walking
    back, each step takes the dependency that finishes last, the first to be ordered on a
    tie."""
    order, start_s, finish_s = plan.order, plan.start_s, plan.finish_s
    parents, parent_at = plan.edges.parents, plan.edges.parent_at
    latest = max(finish_s)
    end = order[-1 - operator.indexOf(map(finish_s.__getitem__, reversed(order)), latest)]
    path = [end]
    rank: dict[int, int] | None = None  # position in ``order``, built on the first tie
    node = end
    while parent_at[node] != parent_at[node + 1]:
        began = start_s[node]
        last = [p for p in parents[parent_at[node] : parent_at[node + 1]] if finish_s[p] == began]
        if len(last) > 1:
            if rank is None:
                rank = dict(zip(order, range(len(order)), strict=True))
            node = min(last, key=rank.__getitem__)
        else:
            node = last[0]
        path.append(node)
    return CriticalPath(task_ids=[plan.ids[i] for i in reversed(path)], length_s=finish_s[end])
