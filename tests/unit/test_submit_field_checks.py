"""Entry field checks: the generated predicates never clear what the checkers refuse.

``check_fields`` asks a compiled predicate first and the per-field checkers only when it says
no; so the verdict of ``check_fields`` must be the checkers' verdict on every value, whatever
a peer or the disk put in a field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow.state import field_types
from agentflow.state.commands import (
    _REGISTRY,
    AssignTasks,
    NewTask,
    ReportAttempts,
    SubmitTasks,
    SubmitWorkflow,
    TaskOutcome,
)
from agentflow.state.field_types import FieldTypeError, check_fields


class Text(str):
    """A subclass: the checkers accept it for ``str``; the predicate leaves it to them."""


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.builds(Text, st.text(max_size=3)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)

TASK = NewTask(
    id="t1",
    title="t",
    description="",
    spec={"command": "true", "env": {}},
    resources={"cpu": 1},
    labels={"a": "b"},
    dependencies=["t0"],
    timeout_s=1.5,
)
SAMPLES: list[Any] = [
    SubmitTasks(now_ms=1, tasks=[TASK, TASK]),
    SubmitWorkflow(now_ms=1, workflow_id="w", name="n", failure_policy="stop", tasks=[TASK]),
    AssignTasks(now_ms=1, assignments=[("t1", "w1")]),
    ReportAttempts(
        now_ms=1,
        worker_id="w1",
        started=[("t1", 3)],
        output=[("t1", 3, "stdout", b"x")],
        outcomes=[TaskOutcome(task_id="t1", fencing_token=3, status="completed", exit_code=0)],
    ),
]


def _checkers_verdict(obj: object) -> bool:
    try:
        field_types._check_dataclass(obj)
    except FieldTypeError:
        return False
    return True


def _check_fields_verdict(obj: object) -> bool:
    try:
        check_fields(obj)
    except FieldTypeError:
        return False
    return True


def _replace_one(obj: Any, data: st.DataObject) -> Any:
    """``obj`` with one field (maybe of a nested task or outcome) set to any value."""
    names = [f.name for f in dataclasses.fields(obj)]
    name = data.draw(st.sampled_from(names))
    current = getattr(obj, name)
    nested = isinstance(current, list) and current and dataclasses.is_dataclass(current[0])
    if nested and data.draw(st.booleans()):
        inner = _replace_one(current[0], data)
        return dataclasses.replace(obj, **{name: [inner, *current[1:]]})
    return dataclasses.replace(obj, **{name: data.draw(values)})


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_check_fields_gives_the_checkers_verdict(sample: Any, data: st.DataObject) -> None:
    changed = _replace_one(sample, data)
    assert _check_fields_verdict(changed) == _checkers_verdict(changed)


def test_every_command_has_a_predicate_that_clears_good_values() -> None:
    for sample in SAMPLES:
        assert field_types._predicate_of(type(sample))(sample)
    for cls in _REGISTRY.values():
        field_types._predicate_of(cls)  # compiles: no annotation without a rule


def test_a_subclass_is_left_to_the_checkers_and_accepted() -> None:
    task = dataclasses.replace(TASK, title=Text("t"))
    assert not field_types._predicate_of(NewTask)(task)
    check_fields(task)
