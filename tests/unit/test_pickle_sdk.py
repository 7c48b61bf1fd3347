"""Functions by value without a cluster: what the SDK sends, what a runner does with it, where
the scheduler places it, and what a worker without the flag refuses."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentflow import task
from agentflow.byvalue import NOT_ALLOWED_REASON
from agentflow.client._calls import batches
from agentflow.client._core import BATCH_CHARS, TaskInfo
from agentflow.client._functions import (
    function_body,
    importable_name,
    value_of,
    workflow_tasks,
)
from agentflow.errors import ClientError
from agentflow.scheduler.placement import plan_pass
from agentflow.state import StateMachine
from agentflow.state.commands import Command, NewTask, RegisterWorker, SubmitTasks
from agentflow.worker import pyrunner
from agentflow.worker.pyexec import FunctionAttempt, PythonPool, function_request
from agentflow.workerwire import MAX_RESULT_CHARS


def module_level(x: int) -> int:
    return x + 1


@task(priority="high", max_retries=2)
def decorated(x: int) -> int:
    return x


class Box:
    def method(self) -> int:
        return 1


def loads(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


# -- what the SDK sends ------------------------------------------------------------------------


def test_importable_functions_keep_their_name_the_rest_goes_by_value() -> None:
    offset = 1
    assert importable_name(module_level) == f"{__name__}:module_level"
    assert importable_name(json.dumps) == "json:dumps"
    assert importable_name(lambda: 1) is None
    assert importable_name(lambda: offset) is None
    assert importable_name(Box().method) is None  # bound: the name would drop its instance

    def shadowed() -> None:
        pass

    shadowed.__qualname__ = "module_level"  # claims a name that imports something else
    assert importable_name(shadowed) is None


def test_a_call_goes_by_name_only_with_json_arguments() -> None:
    assert function_body(module_level, (1,), {}) == {
        "function": f"{__name__}:module_level",
        "args": [1],
        "kwargs": {},
    }
    body = function_body(module_level, (1 + 2j,), {"k": {1, 2}})
    assert set(body) == {"pickled", "title"} and body["title"] == "module_level"
    fn, args, kwargs = loads(body["pickled"])
    assert fn is module_level and args == (1 + 2j,) and kwargs == {"k": {1, 2}}
    assert "pickled" in function_body(module_level, (float("nan"),), {})  # not strict JSON
    lam = function_body(lambda x: x * 2, (21,), {})
    fn, args, _ = loads(lam["pickled"])
    assert fn(*args) == 42 and lam["title"].endswith("<lambda>")
    assert function_body(decorated, (1,), {})["priority"] == "high"


def test_what_cannot_be_pickled_is_refused_before_sending() -> None:
    lock = threading.Lock()
    with pytest.raises(ClientError, match="cannot be sent by value"):
        function_body(lambda: lock, (), {})


def test_workflow_callables_by_value_spread_to_callable_children() -> None:
    tasks = workflow_tasks(
        [
            {"id": "a", "function": lambda: 1},
            {"id": "b", "function": module_level, "args": [1], "dependencies": ["a"]},
            {"id": "c", "function": module_level, "args": [2], "dependencies": ["b"]},
            {"id": "d", "function": module_level, "args": [3]},
            {
                "id": "e",
                "function": decorated,
                "args": [4],
                "dependencies": ["d"],
                "priority": "low",
            },
            {"id": "f", "command": "true", "dependencies": ["a"]},
        ]
    )
    by_id = {t["id"]: t for t in tasks}
    assert [k for k, t in by_id.items() if "pickled" in t] == ["a", "b", "c"]
    assert loads(by_id["c"]["pickled"])[1] == (2,) and "title" not in by_id["c"]
    assert by_id["d"]["function"] == f"{__name__}:module_level" and by_id["d"]["args"] == [3]
    assert by_id["e"]["priority"] == "low" and by_id["e"]["max_retries"] == 2  # its own wins
    assert by_id["f"] == {"id": "f", "command": "true", "dependencies": ["a"]}


def test_batches_of_calls_by_value_stay_under_a_request_size() -> None:
    big = {"pickled": "A" * (BATCH_CHARS // 3)}
    sizes = [len(call.json["tasks"]) for call in batches([big] * 7)]
    assert sizes == [3, 3, 1]


def test_a_pickled_result_comes_back_as_a_python_value() -> None:
    value = {"t": (1, 2), "s": {3}}
    raw = {"result": base64.b64encode(pickle.dumps(value)).decode(), "result_format": "pickle"}
    info = TaskInfo(id="t-1", status="completed", raw=raw)
    assert value_of(info, None) == value
    assert value_of(TaskInfo(id="t-2", status="completed", raw={"result": "[1]"}), None) == [1]


# -- what a runner does with it ----------------------------------------------------------------


@pytest.fixture
def runner_state() -> Iterator[None]:
    """A call in this process changes its environment as it would a runner's: undo it."""
    state = pyrunner.ProcessState.capture()
    try:
        yield
    finally:
        state.restore()


def _parents(**results: tuple[str, str | None]) -> list[dict[str, Any]]:
    return [
        {"id": f"t-{k}", "key": k, "status": "completed", "result": r, "result_format": fmt}
        for k, (fmt, r) in results.items()
    ]


def _request(fn: Callable[..., Any], *args: Any, **extra: Any) -> dict[str, Any]:
    spec = function_body(fn, args, {})
    return function_request(spec, {"AGENTFLOW_TASK_ID": "t-1", "HOME": "/x"}, None) | extra


def test_the_runner_calls_by_value_and_pickles_the_result(runner_state: None) -> None:
    request = _request(lambda a, b: (a, b), 1, "two")
    assert request["env"] == {"AGENTFLOW_TASK_ID": "t-1"}
    refused = pyrunner.call(request)  # the worker did not say it may unpickle
    assert refused["error"] == "this worker does not run functions sent by value"
    answer = pyrunner.call(request | {"allow_pickled": True})
    assert answer["ok"] and loads(answer["result"]) == (1, "two")


def test_parents_results_arrive_as_python_values_by_parent_id(runner_state: None) -> None:
    pickled = base64.b64encode(pickle.dumps((1, 2))).decode()
    parents = _parents(a=("pickle", pickled), b=("json", '{"n": 1}'), c=("text", "hi"))
    parents.append({"id": "t-d", "key": "d", "status": "failed", "result": None})
    answer = pyrunner.call(_request(lambda parents: parents, parents=parents, allow_pickled=True))
    assert loads(answer["result"]) == {"a": (1, 2), "b": {"n": 1}, "c": "hi", "d": None}
    no_parameter = _request(lambda x: x, 5, parents=parents, allow_pickled=True)
    ignored = pyrunner.call(no_parameter)  # no parameter named parents: nothing added
    assert loads(ignored["result"]) == 5


def test_a_runner_that_may_not_unpickle_does_not_read_a_pickled_parent(runner_state: None) -> None:
    parents = _parents(a=("pickle", base64.b64encode(pickle.dumps(1)).decode()))
    request = {"function": f"{__name__}:takes_parents", "parents": parents}
    answer = pyrunner.call(request)
    assert not answer["ok"]
    assert (
        "this worker does not unpickle: start it with --allow-pickled-functions"
        in (answer["error"])
    )


def takes_parents(parents: dict[str, Any]) -> Any:
    return parents


async def test_a_worker_without_the_flag_refuses_before_unpickling() -> None:
    outputs: list[tuple[str, bytes]] = []
    attempt = FunctionAttempt(
        task_id="t-1",
        token=1,
        pool=PythonPool(1, {}),  # allow_pickled defaults to False; no runner is started
        request=_request(lambda: 1),
        timeout_s=5,
        on_output=lambda stream, data: outputs.append((stream, data)),
    )
    finished = await asyncio.wait_for(attempt.run(), 5)
    assert (finished.status, finished.reason) == ("failed", NOT_ALLOWED_REASON)


def test_a_result_too_large_to_keep_fails_instead_of_being_cut() -> None:
    attempt = FunctionAttempt(
        task_id="t-1",
        token=1,
        pool=PythonPool(1, {}, allow_pickled=True),
        request=_request(lambda: 1),
        timeout_s=5,
        on_output=lambda stream, data: None,
    )
    finished = attempt._finished({"ok": True, "result": "A" * (MAX_RESULT_CHARS + 1)})
    assert finished.status == "failed" and finished.result is None
    assert finished.reason is not None and "pickled (base64), over the limit" in finished.reason


# -- where the scheduler places it -------------------------------------------------------------


def _apply(sm: StateMachine, index: int, command: Command) -> None:
    sm.apply(index, command)


def _register(sm: StateMachine, index: int, wid: str, pickled: bool) -> None:
    command = RegisterWorker(
        now_ms=0,
        worker_id=wid,
        group="default",
        slots=4,
        resources={},
        labels={},
        hostname="h",
        pickled_functions=pickled,
    )
    _apply(sm, index, command)


def _submit(sm: StateMachine, index: int, tid: str, spec: dict[str, Any]) -> None:
    new = NewTask(id=tid, title=tid, description="", spec=spec)
    _apply(sm, index, SubmitTasks(now_ms=0, tasks=[new]))


def test_calls_by_value_go_only_to_workers_that_allow_them() -> None:
    sm = StateMachine()
    _register(sm, 1, "plain", pickled=False)
    _submit(sm, 2, "byvalue", {"pickled": "gAU="})
    _submit(sm, 3, "byname", {"function": "m:f"})
    plan = plan_pass(sm)
    assert plan.assignments == [("byname", "plain")]
    assert plan.unschedulable == {
        "byvalue": "needs a worker with --allow-pickled-functions; no worker in group "
        "'default' has it"
    }
    _register(sm, 4, "opted-in", pickled=True)
    sm.tasks["byvalue"].unschedulable = plan.unschedulable["byvalue"]
    plan = plan_pass(sm)
    assert ("byvalue", "opted-in") in plan.assignments
    assert plan.unschedulable == {"byvalue": None}
