"""Workflow DAG analysis (issue 5): validation problems, structure and timing, on hand-made
graphs, then properties on random graphs checked against brute force and ``graphlib``."""

import graphlib
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow.scheduler.dag import (
    Analysis,
    DagTask,
    Problem,
    ProblemKind,
    analyse,
    check,
    critical_path,
    remaining_critical_path_s,
    validate,
)


def task(task_id: str, *deps: str, est: float | None = None) -> DagTask:
    return DagTask(id=task_id, dependencies=deps, estimate_s=est)


def kinds(problems: list[Problem]) -> list[ProblemKind]:
    return [p.kind for p in problems]


def edges_of(tasks: list[DagTask]) -> set[tuple[str, str]]:
    """(dependency, dependent) pairs."""
    return {(dep, t.id) for t in tasks for dep in t.dependencies}


def assert_real_cycle(path: tuple[str, ...], tasks: list[DagTask]) -> None:
    edges = edges_of(tasks)
    assert len(path) >= 3
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1  # simple: nothing repeats but the closing id
    assert all((a, b) in edges for a, b in itertools.pairwise(path))


DIAMOND = [task("a"), task("b", "a", est=3), task("c", "a", est=5), task("d", "b", "c")]


# -- validation on hand-made graphs ----------------------------------------------------------


def test_a_valid_dag_has_no_problems() -> None:
    assert validate(DIAMOND) == []


def test_empty_workflow() -> None:
    (problem,) = validate([])
    assert problem.kind is ProblemKind.EMPTY_WORKFLOW
    assert "no tasks" in problem.message


def test_duplicate_ids_are_each_reported_once() -> None:
    problems = validate([task("a"), task("a"), task("b"), task("b"), task("b"), task("c")])
    assert [(p.kind, p.task_ids) for p in problems] == [
        (ProblemKind.DUPLICATE_ID, ("a",)),
        (ProblemKind.DUPLICATE_ID, ("b",)),
    ]
    assert "'b' is used by 3 tasks" in problems[1].message


def test_self_dependency_is_its_own_problem_not_a_cycle() -> None:
    problems = validate([task("a", "a"), task("b", "a")])
    assert [(p.kind, p.task_ids) for p in problems] == [(ProblemKind.SELF_DEPENDENCY, ("a",))]
    assert problems[0].message == "task 'a' depends on itself"


def test_unknown_dependency_names_the_task_and_the_missing_id() -> None:
    problems = validate([task("a"), task("b", "a", "nope", "nope")])
    assert [(p.kind, p.task_ids) for p in problems] == [
        (ProblemKind.UNKNOWN_DEPENDENCY, ("b", "nope"))
    ]
    assert "'b'" in problems[0].message and "'nope'" in problems[0].message


def test_a_cycle_is_reported_as_the_path_that_closes_it() -> None:
    tasks = [task("a", "c"), task("b", "a"), task("c", "b"), task("d", "c")]
    (problem,) = validate(tasks)
    assert problem.kind is ProblemKind.CYCLE
    assert problem.task_ids == ("a", "b", "c", "a")  # b waits for a, c for b, a for c
    assert "a -> b -> c -> a" in problem.message


def test_two_disjoint_cycles_are_both_reported() -> None:
    tasks = [
        task("root"),
        task("x", "root", "y"),
        task("y", "x"),
        task("p", "r"),
        task("q", "p"),
        task("r", "q", "root"),
        task("after", "r", "y"),  # downstream of both cycles, on neither
    ]
    problems = validate(tasks)
    assert kinds(problems) == [ProblemKind.CYCLE, ProblemKind.CYCLE]
    assert [p.task_ids for p in problems] == [("x", "y", "x"), ("p", "q", "r", "p")]
    for p in problems:
        assert_real_cycle(p.task_ids, tasks)


def test_the_cycle_given_is_a_shortest_one_through_its_first_task() -> None:
    # a -> b -> c -> d -> a and a shortcut a -> d: the short way round is reported.
    tasks = [task("a", "d"), task("b", "a"), task("c", "b"), task("d", "c", "a")]
    (problem,) = validate(tasks)
    assert problem.task_ids == ("a", "d", "a")


def test_invalid_estimates() -> None:
    tasks = [task("a", est=-1), task("b", est=math.nan), task("c", est=math.inf), task("d", est=0)]
    problems = validate(tasks)
    assert [(p.kind, p.task_ids) for p in problems] == [
        (ProblemKind.INVALID_ESTIMATE, ("a",)),
        (ProblemKind.INVALID_ESTIMATE, ("b",)),
        (ProblemKind.INVALID_ESTIMATE, ("c",)),
    ]


def test_every_kind_of_problem_is_reported_at_once() -> None:
    tasks = [
        task("a", "a"),
        task("b", "ghost"),
        task("b"),
        task("c", "d"),
        task("d", "c"),
        task("e", est=-2),
    ]
    assert kinds(validate(tasks)) == [
        ProblemKind.DUPLICATE_ID,
        ProblemKind.INVALID_ESTIMATE,
        ProblemKind.SELF_DEPENDENCY,
        ProblemKind.UNKNOWN_DEPENDENCY,
        ProblemKind.CYCLE,
    ]


def test_a_duplicated_task_pools_its_dependencies_so_its_cycle_is_found() -> None:
    tasks = [task("a"), task("b", "a"), task("a", "b")]
    assert kinds(validate(tasks)) == [ProblemKind.DUPLICATE_ID, ProblemKind.CYCLE]


def test_limits_on_tasks_and_edges() -> None:
    tasks = [task("a"), task("b", "a"), task("c", "a", "b")]
    assert validate(tasks, max_tasks=3, max_edges=3) == []
    problems = validate(tasks, max_tasks=2, max_edges=2)
    assert kinds(problems) == [ProblemKind.TOO_MANY_TASKS, ProblemKind.TOO_MANY_EDGES]
    assert problems[0].message == "the workflow has 3 tasks; at most 2 are allowed"
    assert problems[1].message == "the workflow has 3 dependencies in all; at most 2 are allowed"


def test_over_the_limits_nothing_else_is_examined() -> None:
    tasks = [task("a", "a"), task("a", "zz")]
    assert kinds(validate(tasks, max_tasks=1)) == [ProblemKind.TOO_MANY_TASKS]


def test_the_problem_list_is_bounded() -> None:
    tasks = [task(f"t{i}", "ghost") for i in range(10)]
    problems = validate(tasks, max_problems=4)
    assert len(problems) == 5
    assert problems[-1].kind is ProblemKind.TOO_MANY_PROBLEMS
    assert problems[-1].message.startswith("6 more problems not shown")


def test_long_chains_and_cycles_need_no_recursion() -> None:
    n = 30_000  # far past the default recursion limit
    chain = [task("t0"), *(task(f"t{i}", f"t{i - 1}") for i in range(1, n))]
    assert validate(chain) == []
    result = analyse(chain)
    assert len(result.levels) == n and result.critical_path.length_s == n
    ring = [task("t0", f"t{n - 1}"), *chain[1:]]
    (problem,) = validate(ring)
    assert problem.kind is ProblemKind.CYCLE and len(problem.task_ids) == n + 1


# -- analysis on hand-made graphs ------------------------------------------------------------


def test_diamond() -> None:
    assert analyse(DIAMOND) == Analysis(
        task_count=4,
        edge_count=4,
        topological_order=["a", "b", "c", "d"],
        levels=[["a"], ["b", "c"], ["d"]],
        max_width=2,
        peak_parallelism=2,
        critical_path=analyse(DIAMOND).critical_path,
    )
    path = analyse(DIAMOND).critical_path
    assert (path.task_ids, path.length_s) == (["a", "c", "d"], 7.0)  # 1 + 5 + 1 (defaults 1 s)


def test_fan_out_fan_in() -> None:
    middle = [task(f"m{i}", "src") for i in range(10)]
    result = analyse([task("sink", *(m.id for m in middle)), *middle, task("src")])
    assert result.levels == [["src"], [m.id for m in middle], ["sink"]]
    assert result.topological_order[0] == "src" and result.topological_order[-1] == "sink"
    assert (result.max_width, result.peak_parallelism) == (10, 10)
    assert (result.task_count, result.edge_count) == (12, 20)
    assert result.critical_path.length_s == 3.0


def test_chain_in_reverse_submission_order() -> None:
    result = analyse([task("c", "b", est=2), task("b", "a", est=0.5), task("a", est=4)])
    assert result.topological_order == ["a", "b", "c"]
    assert (result.max_width, result.peak_parallelism) == (1, 1)
    assert result.critical_path.task_ids == ["a", "b", "c"]
    assert result.critical_path.length_s == 6.5


def test_ties_within_a_level_go_by_submission_order() -> None:
    tasks = [task("z"), task("y", "x"), task("x"), task("w", "z")]
    assert analyse(tasks).levels == [["z", "x"], ["y", "w"]]
    assert analyse(tasks).topological_order == ["z", "x", "y", "w"]


def test_a_dependency_listed_twice_is_one_edge() -> None:
    result = analyse([task("a"), task("b", "a", "a")])
    assert result.edge_count == 1


def test_peak_parallelism_follows_time_not_levels() -> None:
    # Levels [[a, b], [c1, c2]]: width 2. But a runs 10 s while c1 and c2 run from 1 to 2.
    tasks = [task("a", est=10), task("b"), task("c1", "b"), task("c2", "b")]
    result = analyse(tasks)
    assert (result.max_width, result.peak_parallelism) == (2, 3)


def test_a_task_and_the_dependent_that_starts_as_it_finishes_do_not_overlap() -> None:
    assert analyse([task("a"), task("b", "a"), task("c", "b")]).peak_parallelism == 1


def test_zero_length_tasks_take_an_instant() -> None:
    chain = [task("x", est=0), task("y", "x", est=0), task("z", "y", est=0)]
    assert analyse(chain).peak_parallelism == 1
    fan = [task("r", est=0), *(task(f"f{i}", "r", est=0) for i in range(4))]
    assert analyse(fan).peak_parallelism == 4
    assert analyse([*chain, task("long", est=5)]).peak_parallelism == 2
    result = analyse(chain)
    assert (result.critical_path.task_ids, result.critical_path.length_s) == (["x", "y", "z"], 0)


def test_measured_durations_override_estimates() -> None:
    path = critical_path(DIAMOND, durations={"b": 9.0})
    assert (path.task_ids, path.length_s) == (["a", "b", "d"], 11.0)
    assert analyse(DIAMOND, durations={"b": 9.0}).critical_path == path


def test_remaining_critical_path() -> None:
    assert remaining_critical_path_s(DIAMOND, set()) == 7.0
    assert remaining_critical_path_s(DIAMOND, {"a"}) == 6.0
    assert remaining_critical_path_s(DIAMOND, {"a", "c"}, {"b": 2.5}) == 3.5
    assert remaining_critical_path_s(DIAMOND, {"a", "b", "c", "d"}) == 0.0


def test_check_is_validate_then_analyse() -> None:
    assert check(DIAMOND) == ([], analyse(DIAMOND))
    broken = [task("a", "a"), task("b", "ghost"), task("c", est=-1)]
    assert check(broken) == (validate(broken), None)
    assert kinds(check(broken, max_problems=1)[0]) == [
        ProblemKind.INVALID_ESTIMATE,
        ProblemKind.TOO_MANY_PROBLEMS,
    ]
    assert check([]) == (validate([]), None)
    assert kinds(check(DIAMOND, max_tasks=3)[0]) == [ProblemKind.TOO_MANY_TASKS]
    with pytest.raises(ValueError):
        check(DIAMOND, max_problems=0)


def test_edges_are_counted_once_however_they_are_listed() -> None:
    # c's dependencies are each a different task's only child (neighbours in the successor
    # lists, a shared dependent), then one listed twice.
    shared = [task("a"), task("b"), task("c", "a", "b")]
    assert analyse(shared).edge_count == 2
    twice = [task("a"), task("b"), task("c", "b", "a", "b"), task("d", "c", "c")]
    result = analyse(twice)
    assert (result.edge_count, result.levels) == (3, [["a", "b"], ["c"], ["d"]])
    assert check(twice) == ([], result)


def test_misuse_is_a_value_error() -> None:
    for bad in ([], [task("a"), task("a")], [task("a", "zz")], [task("a", "b"), task("b", "a")]):
        with pytest.raises(ValueError):
            analyse(bad)
    with pytest.raises(ValueError):
        analyse(DIAMOND, durations={"zz": 1.0})
    with pytest.raises(ValueError):
        analyse(DIAMOND, durations={"a": -1.0})
    with pytest.raises(ValueError):
        analyse([task("a", est=math.nan)])
    with pytest.raises(ValueError):
        remaining_critical_path_s(DIAMOND, {"zz"})


# -- properties on random graphs -------------------------------------------------------------

ESTIMATES = st.sampled_from([None, 0.0, 0.5, 1.0, 2.5, 3.0])


@st.composite
def dags(draw: st.DrawFn, max_tasks: int = 8) -> list[DagTask]:
    """A random DAG: edges only from lower to higher rank, submitted in a random order."""
    n = draw(st.integers(1, max_tasks))
    deps: list[list[str]] = [[] for _ in range(n)]
    for low, high in itertools.combinations(range(n), 2):
        if draw(st.booleans()):
            deps[high].append(f"t{low}")
    tasks = [
        DagTask(id=f"t{i}", dependencies=tuple(d), estimate_s=draw(ESTIMATES))
        for i, d in enumerate(deps)
    ]
    return draw(st.permutations(tasks))


@st.composite
def digraphs(draw: st.DrawFn) -> list[DagTask]:
    """Any graph on up to 8 tasks, cycles allowed, no self-dependencies."""
    n = draw(st.integers(1, 8))
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=16, unique=True)) if pairs else []
    return [
        DagTask(id=f"t{i}", dependencies=tuple(f"t{a}" for a, b in chosen if b == i))
        for i in range(n)
    ]


def weight(t: DagTask) -> float:
    return 1.0 if t.estimate_s is None else t.estimate_s


def all_paths(tasks: list[DagTask]) -> list[list[str]]:
    children: dict[str, list[str]] = {t.id: [] for t in tasks}
    for dep, child in edges_of(tasks):
        children[dep].append(child)
    paths: list[list[str]] = []
    stack = [[t.id] for t in tasks]
    while stack:
        path = stack.pop()
        paths.append(path)
        stack += [[*path, c] for c in children[path[-1]]]
    return paths


@given(dags(max_tasks=30))
@settings(max_examples=150, deadline=None)
def test_topological_order_respects_every_edge(tasks: list[DagTask]) -> None:
    assert validate(tasks) == []
    result = analyse(tasks)
    position = {task_id: i for i, task_id in enumerate(result.topological_order)}
    assert sorted(position) == sorted(t.id for t in tasks)
    assert all(position[dep] < position[child] for dep, child in edges_of(tasks))
    assert result.topological_order == [i for level in result.levels for i in level]
    submitted = {t.id: i for i, t in enumerate(tasks)}
    assert all(level == sorted(level, key=submitted.__getitem__) for level in result.levels)
    assert result.max_width == max(map(len, result.levels))
    assert result.edge_count == len(edges_of(tasks))


@given(dags())
@settings(max_examples=200, deadline=None)
def test_levels_and_critical_path_match_brute_force(tasks: list[DagTask]) -> None:
    by_id = {t.id: t for t in tasks}
    paths = all_paths(tasks)
    result = analyse(tasks)
    for k, level in enumerate(result.levels):  # longest chain of edges from a root
        for task_id in level:
            assert max(len(p) - 1 for p in paths if p[-1] == task_id) == k
    best = max(sum(weight(by_id[i]) for i in p) for p in paths)
    found = result.critical_path
    assert math.isclose(found.length_s, best)
    assert found.task_ids in paths and not by_id[found.task_ids[0]].dependencies
    assert math.isclose(sum(weight(by_id[i]) for i in found.task_ids), best)


def brute_force_peak(tasks: list[DagTask]) -> int:
    """Instants as (seconds, ticks); tasks running at each start instant counted directly."""
    by_id = {t.id: t for t in tasks}
    start: dict[str, tuple[float, int]] = {}
    finish: dict[str, tuple[float, int]] = {}
    for task_id in graphlib.TopologicalSorter({t.id: t.dependencies for t in tasks}).static_order():
        s = max((finish[d] for d in by_id[task_id].dependencies), default=(0.0, 0))
        w = weight(by_id[task_id])
        start[task_id], finish[task_id] = s, ((s[0] + w, s[1]) if w > 0 else (s[0], s[1] + 1))
    return max(sum(start[i] <= at < finish[i] for i in start) for at in start.values())


def widest_antichain(tasks: list[DagTask]) -> int:
    paths = all_paths(tasks)
    related = {(p[0], p[-1]) for p in paths if len(p) > 1}
    ids = [t.id for t in tasks]
    return max(
        len(group)
        for r in range(1, len(ids) + 1)
        for group in itertools.combinations(ids, r)
        if not any((a, b) in related for a in group for b in group)
    )


@given(dags())
@settings(max_examples=150, deadline=None)
def test_peak_parallelism_matches_brute_force_and_bounds(tasks: list[DagTask]) -> None:
    result = analyse(tasks)
    assert result.peak_parallelism == brute_force_peak(tasks)
    antichain = widest_antichain(tasks)
    assert 1 <= result.peak_parallelism <= antichain
    assert result.max_width <= antichain


@given(dags(), st.data())
@settings(max_examples=150, deadline=None)
def test_a_back_edge_makes_a_cycle_that_is_found(tasks: list[DagTask], data: st.DataObject) -> None:
    long_paths = [p for p in all_paths(tasks) if len(p) > 1]
    if not long_paths:
        return
    path = data.draw(st.sampled_from(long_paths))
    # The path's first task now also waits for its last: a cycle.
    first = next(t for t in tasks if t.id == path[0])
    changed = [
        DagTask(id=t.id, dependencies=(*t.dependencies, path[-1]), estimate_s=t.estimate_s)
        if t is first
        else t
        for t in tasks
    ]
    problems = validate(changed)
    assert problems and kinds(problems) == [ProblemKind.CYCLE] * len(problems)
    for problem in problems:
        assert_real_cycle(problem.task_ids, changed)


@given(digraphs())
@settings(max_examples=300, deadline=None)
def test_cycles_agree_with_graphlib_and_are_real(tasks: list[DagTask]) -> None:
    problems = validate(tasks)
    sorter = graphlib.TopologicalSorter({t.id: t.dependencies for t in tasks})
    try:
        sorter.prepare()
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    assert acyclic == (problems == [])
    for problem in problems:
        assert problem.kind is ProblemKind.CYCLE
        assert_real_cycle(problem.task_ids, tasks)
    # One cycle per strongly connected component of more than one task, and no two in one.
    reach = {(p[0], p[-1]) for p in all_paths_any(tasks)}
    components = {
        frozenset(b for b in ids(tasks) if (a, b) in reach and (b, a) in reach) for a in ids(tasks)
    }
    assert len(problems) == sum(len(c) > 1 for c in components)
    assert len({next(c for c in components if p.task_ids[0] in c) for p in problems}) == len(
        problems
    )


def ids(tasks: list[DagTask]) -> list[str]:
    return [t.id for t in tasks]


def all_paths_any(tasks: list[DagTask]) -> list[list[str]]:
    """Simple paths (no repeated task) in a graph that may have cycles."""
    children: dict[str, list[str]] = {t.id: [] for t in tasks}
    for dep, child in edges_of(tasks):
        children[dep].append(child)
    paths: list[list[str]] = []
    stack = [[t.id] for t in tasks]
    while stack:
        path = stack.pop()
        paths.append(path)
        stack += [[*path, c] for c in children[path[-1]] if c not in path]
    return paths


@st.composite
def workflows(draw: st.DrawFn) -> list[DagTask]:
    """Anything a client might send, on up to 8 tasks: ids that repeat, dependencies that are
    unknown, on the task itself or listed twice, cycles, estimates that are not durations."""
    pool = [f"t{i}" for i in range(draw(st.integers(1, 6)))]
    names = st.sampled_from(pool)
    estimates = st.sampled_from([None, 0.0, 1.0, 2.5, -1.0, math.nan, math.inf])
    return draw(
        st.lists(
            st.builds(
                DagTask,
                id=names,
                dependencies=st.lists(names | st.just("ghost"), max_size=4).map(tuple),
                estimate_s=st.one_of(st.none(), st.just(1.0), estimates),
            ),
            max_size=8,
        )
    )


@given(workflows(), st.integers(1, 8), st.integers(0, 12), st.integers(1, 6))
@settings(max_examples=300, deadline=None)
def test_check_equals_validate_then_analyse(
    tasks: list[DagTask], max_tasks: int, max_edges: int, max_problems: int
) -> None:
    limits = {"max_tasks": max_tasks, "max_edges": max_edges, "max_problems": max_problems}
    problems, analysis = check(tasks, **limits)
    assert problems == validate(tasks, **limits)
    if problems:
        assert analysis is None
    else:
        assert analysis == analyse(tasks)
    default_problems, default_analysis = check(tasks)
    assert default_problems == validate(tasks)
    if default_problems:
        assert default_analysis is None
        with pytest.raises(ValueError):
            analyse(tasks)
    else:
        assert default_analysis == analyse(tasks)


@given(dags(max_tasks=20), st.data())
@settings(max_examples=100, deadline=None)
def test_check_equals_validate_then_analyse_on_dags(
    tasks: list[DagTask], data: st.DataObject
) -> None:
    # Some dependencies listed twice: counted once, ordered the same.
    doubled = [
        DagTask(id=t.id, dependencies=t.dependencies * 2, estimate_s=t.estimate_s)
        if t.dependencies and data.draw(st.booleans())
        else t
        for t in tasks
    ]
    for graph in (tasks, doubled):
        assert check(graph) == ([], analyse(graph))
    assert analyse(doubled) == analyse(tasks)
