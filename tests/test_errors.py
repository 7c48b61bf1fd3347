from agentflow.errors import (
    AgentFlowError,
    ClientError,
    NotFoundError,
    ServiceError,
    error_from_problem,
)


def test_problem_round_trip_keeps_class_and_extra() -> None:
    err = NotFoundError("no task t-1", task_id="t-1")
    problem = err.to_problem("/api/v1/tasks/t-1")
    assert problem["status"] == 404
    back = error_from_problem(404, problem)
    assert isinstance(back, NotFoundError)
    assert back.detail == "no task t-1"
    assert back.extra == {"task_id": "t-1"}


def test_unknown_code_falls_back_on_status_class() -> None:
    assert isinstance(error_from_problem(418, {"code": "teapot"}), ClientError)
    err = error_from_problem(502, {})
    assert isinstance(err, ServiceError)
    assert isinstance(err, AgentFlowError)
