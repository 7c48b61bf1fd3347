"""DAG workflows end to end: real master and worker processes on 127.0.0.1.

Each test submits a workflow over HTTP (``POST /api/v1/workflows``) and watches what the tasks
really did through files they write under ``tmp_path``: the order they started and finished in,
how many times they ran, the pids of what they left running, what they read of their parents.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.procs import Processes, live_workers, pid_alive, wait_until

WORKFLOWS = "/api/v1/workflows"
PROBLEM_JSON = "application/problem+json"
PY = shlex.quote(sys.executable)


# -- helpers ---------------------------------------------------------------------------------


def submit(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(url + WORKFLOWS, json=body, timeout=10)
    assert response.status_code == 201, response.text
    view: dict[str, Any] = response.json()
    assert view["created"] is True
    return view


def get(url: str, workflow_id: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{url}{WORKFLOWS}/{workflow_id}", params=params, timeout=60)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def finished(url: str, workflow_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The workflow once it is no longer running (long-polls with ``wait_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        view = get(url, workflow_id, wait_s=round(max(0.0, min(left, 10.0)), 2))
        if view["status"] != "running":
            return view
        assert left > 0, f"workflow still running after {timeout_s}s: {view}"


def by_key(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["key"]: t for t in view["tasks"]}


def states(view: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["status"] for t in view["tasks"]}


def task(url: str, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/v1/tasks/{task_id}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def logged(log: Path, what: str, body: str = "") -> str:
    """Shell text that appends ``start WHAT`` and ``end WHAT`` to ``log`` around ``body``."""
    q = shlex.quote(str(log))
    return f"echo 'start {what}' >> {q}; {body or 'true'}; echo 'end {what}' >> {q}"


def until(log: Path, line: str) -> str:
    """Shell text that waits until ``log`` has ``line``."""
    return f"until grep -qx {shlex.quote(line)} {shlex.quote(str(log))}; do sleep 0.02; done"


def master_and_workers(procs: Processes, workers: int = 1, slots: int = 2) -> str:
    _, url = procs.master()
    for i in range(1, workers + 1):
        procs.worker(f"w{i}", url, "--slots", str(slots))
    wait_until(lambda: live_workers(url) == workers, what=f"{workers} workers registered")
    return url


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem


# -- shape and order -------------------------------------------------------------------------


def test_diamond_runs_in_dependency_order(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    log = tmp_path / "log"
    view = submit(
        url,
        {
            "name": "diamond",
            "tasks": [
                {"id": "a", "command": logged(log, "a", "sleep 0.1"), "estimate_s": 1},
                {
                    "id": "b",
                    "command": logged(log, "b", until(log, "start c")),
                    "dependencies": ["a"],
                },
                {
                    "id": "c",
                    "command": logged(log, "c", until(log, "start b")),
                    "dependencies": ["a"],
                    "estimate_s": 5,
                },
                {"id": "d", "command": logged(log, "d"), "dependencies": ["b", "c"]},
            ],
        },
    )
    analysis = view["analysis"]
    assert analysis["tasks"] == 4 and analysis["edges"] == 4
    assert analysis["levels"] == [["a"], ["b", "c"], ["d"]]
    assert analysis["topological_order"] == ["a", "b", "c", "d"]
    assert analysis["max_width"] == 2 and analysis["peak_parallelism"] == 2
    assert analysis["critical_path"] == ["a", "c", "d"]
    assert analysis["critical_path_s"] == 7.0  # 1 + 5 + d's default 1 s
    assert view["status"] == "running" and view["failure_policy"] == "continue"

    done = finished(url, view["id"])
    assert done["status"] == "completed", done
    assert set(states(done).values()) == {"completed"}
    assert done["percent_done"] == 100.0 and done["eta_s"] is None
    assert done["counts"] == {"completed": 4}
    order = lines(log)
    assert sorted(order) == sorted(f"{e} {k}" for k in "abcd" for e in ("start", "end"))
    pos = {line: i for i, line in enumerate(order)}
    assert pos["end a"] < pos["start b"] and pos["end a"] < pos["start c"]
    assert pos["end b"] < pos["start d"] and pos["end c"] < pos["start d"]
    # The two middle tasks had a slot each: each waited for the other to start.
    assert pos["start b"] < pos["end c"] and pos["start c"] < pos["end b"]
    deps = {k: t["dependencies"] for k, t in by_key(done).items()}
    assert deps == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_fan_out_fan_in_on_two_workers(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=2, slots=2)
    log = tmp_path / "log"
    seen = tmp_path / "parents.json"
    mids = [f"m{i:02d}" for i in range(20)]
    body = {
        "name": "fan",
        "defaults": {"env": {"GREETING": "hi"}, "priority": "high"},
        "tasks": [
            {"id": "root", "command": logged(log, "root")},
            *(
                {
                    "id": m,
                    "command": logged(
                        log,
                        m,
                        f'sleep 0.05; printf "%s {m}" "$GREETING" > "$AGENTFLOW_OUTPUT_FILE"',
                    ),
                    "dependencies": ["root"],
                }
                for m in mids
            ),
            {
                "id": "join",
                "command": logged(log, "join", f'cp "$AGENTFLOW_PARENTS_FILE" {seen}'),
                "dependencies": mids,
                "priority": "low",
            },
        ],
    }
    view = submit(url, body)
    assert view["analysis"]["max_width"] == 20
    assert view["analysis"]["peak_parallelism"] == 20
    assert view["analysis"]["edges"] == 40

    done = finished(url, view["id"], 60)
    assert done["status"] == "completed", done
    assert done["counts"] == {"completed": 22}
    order = lines(log)
    assert order[:2] == ["start root", "end root"]
    assert order[-2:] == ["start join", "end join"]
    assert len(order) == 44
    # Never more at once than the 2 workers x 2 slots, and more than one at once.
    running, peak = 0, 0
    for line in order:
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert 1 < peak <= 4

    parents = json.loads(seen.read_text())
    assert sorted(p["key"] for p in parents) == mids
    tasks = by_key(done)
    for parent in parents:
        assert parent["id"] == tasks[parent["key"]]["id"]
        assert parent["status"] == "completed" and parent["exit_code"] == 0
        assert parent["result"] == f"hi {parent['key']}"  # defaults' env reached the task
    records = {k: task(url, t["id"]) for k, t in tasks.items()}
    assert {r["priority"] for k, r in records.items() if k != "join"} == {"high"}
    assert records["join"]["priority"] == "low"
    assert {r["worker_id"] for r in records.values()} == {"w1", "w2"}


# -- failure policies and triggers -------------------------------------------------------------


def test_fail_fast_cancels_everything_not_finished(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    pidfile = tmp_path / "sleeper.pid"
    ran = tmp_path / "ran"
    view = submit(
        url,
        {
            "name": "ff",
            "failure_policy": "fail_fast",
            "tasks": [
                {"id": "sleeper", "command": f"sleep 30 & echo $! > {pidfile}; wait"},
                {
                    # Fails once the sleeper is surely running.
                    "id": "bad",
                    "command": f"while [ ! -s {pidfile} ]; do sleep 0.02; done; exit 3",
                },
                {"id": "after_sleeper", "command": f"echo x >> {ran}", "dependencies": ["sleeper"]},
                {"id": "after_bad", "command": f"echo x >> {ran}", "dependencies": ["bad"]},
            ],
        },
    )
    started = time.monotonic()
    done = finished(url, view["id"], 20)
    assert time.monotonic() - started < 15, "fail_fast waited for the sleeper"
    assert done["status"] == "failed"
    got = states(done)
    assert got["bad"] == "failed" and by_key(done)["bad"]["exit_code"] == 3
    assert got["sleeper"] == "cancelled"
    assert got["after_sleeper"] == "cancelled"
    assert got["after_bad"] == "upstream_failed"
    sleeper = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(sleeper), 10, "the running sleep 30 killed")
    assert not ran.exists()
    wait_until(lambda: httpx.get(url + "/api/v1/workers").json()["workers"][0]["free_slots"] == 2)


def test_continue_finishes_independent_branches(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    ran = tmp_path / "ran"
    view = submit(
        url,
        {
            "name": "cont",
            "tasks": [
                {"id": "bad", "command": "exit 2"},
                {"id": "child", "command": f"echo child >> {ran}", "dependencies": ["bad"]},
                {"id": "grandchild", "command": f"echo gc >> {ran}", "dependencies": ["child"]},
                {"id": "x", "command": f"sleep 0.3; echo x >> {ran}"},
                {"id": "y", "command": f"echo y >> {ran}", "dependencies": ["x"]},
            ],
        },
    )
    assert view["failure_policy"] == "continue"
    done = finished(url, view["id"])
    assert done["status"] == "failed"
    assert states(done) == {
        "bad": "failed",
        "child": "upstream_failed",
        "grandchild": "upstream_failed",
        "x": "completed",
        "y": "completed",
    }
    assert lines(ran) == ["x", "y"]
    tasks = by_key(done)
    assert "bad" in tasks["child"]["reason"] and "child" in tasks["grandchild"]["reason"]
    assert done["counts"] == {"failed": 1, "upstream_failed": 2, "completed": 2}
    assert done["percent_done"] == 100.0


def test_trigger_rules(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=3)
    gate = tmp_path / "gate"
    seen = tmp_path / "all_done.json"
    view = submit(
        url,
        {
            "name": "triggers",
            "tasks": [
                {"id": "ok", "command": "echo fine"},
                {"id": "bad", "command": "echo broken; exit 9"},
                # Runs only once one_success_early has run: one success must be enough.
                {"id": "slow", "command": f"while [ ! -e {gate} ]; do sleep 0.02; done"},
                {
                    "id": "all_done",
                    "trigger": "all_done",
                    "dependencies": ["ok", "bad"],
                    "command": f'cp "$AGENTFLOW_PARENTS_FILE" {seen}',
                },
                {
                    "id": "one_success_early",
                    "trigger": "one_success",
                    "dependencies": ["ok", "slow"],
                    "command": f"touch {gate}",
                },
                {
                    "id": "one_success_mixed",
                    "trigger": "one_success",
                    "dependencies": ["bad", "ok"],
                    "command": "true",
                },
                {
                    "id": "one_success_none",
                    "trigger": "one_success",
                    "dependencies": ["bad"],
                    "command": "true",
                },
                {"id": "all_success", "dependencies": ["ok", "bad"], "command": "true"},
            ],
        },
    )
    done = finished(url, view["id"])
    assert states(done) == {
        "ok": "completed",
        "bad": "failed",
        "slow": "completed",
        "all_done": "completed",
        "one_success_early": "completed",
        "one_success_mixed": "completed",
        "one_success_none": "upstream_failed",
        "all_success": "upstream_failed",
    }
    assert done["status"] == "failed"  # bad failed and is not allowed to
    assert by_key(done)["all_done"]["trigger"] == "all_done"
    parents = {p["key"]: p for p in json.loads(seen.read_text())}
    assert parents["bad"]["status"] == "failed" and parents["bad"]["exit_code"] == 9
    assert parents["bad"]["stdout_tail"] == "broken\n"
    assert parents["ok"]["status"] == "completed" and parents["ok"]["stdout_tail"] == "fine\n"


def test_allow_failure_lets_dependents_run_and_the_workflow_complete(
    procs: Processes, tmp_path: Path
) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    ran = tmp_path / "ran"
    view = submit(
        url,
        {
            "name": "allowed",
            "failure_policy": "fail_fast",
            "tasks": [
                {"id": "flaky", "command": "exit 5", "allow_failure": True},
                {"id": "next", "command": f"echo next >> {ran}", "dependencies": ["flaky"]},
                {"id": "other", "command": f"sleep 0.3; echo other >> {ran}"},
            ],
        },
    )
    done = finished(url, view["id"])
    assert done["status"] == "completed", done
    assert states(done) == {"flaky": "failed", "next": "completed", "other": "completed"}
    assert by_key(done)["flaky"]["exit_code"] == 5
    assert sorted(lines(ran)) == ["next", "other"]


def test_upstream_failed_names_the_failed_dependency(procs: Processes) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    view = submit(
        url,
        {
            "tasks": [
                {"id": "x", "command": "exit 1"},
                # Both finish in the command that records x's failure: j (nothing to run,
                # all_done) completes, u is skipped; j is settled first, being listed first.
                {"id": "j", "dependencies": ["x"], "trigger": "all_done"},
                {"id": "u", "command": "true", "dependencies": ["x"]},
                {"id": "d", "command": "true", "dependencies": ["j", "u"]},
            ]
        },
    )
    done = finished(url, view["id"])
    assert states(done) == {
        "x": "failed",
        "j": "completed",
        "u": "upstream_failed",
        "d": "upstream_failed",
    }
    tasks = by_key(done)
    assert tasks["u"]["reason"] == "upstream x failed"
    assert tasks["d"]["reason"] == "upstream u upstream_failed"


# -- cancel and retry --------------------------------------------------------------------------


def test_cancel_kills_the_running_task_and_retry_reruns_only_what_failed(
    procs: Processes, tmp_path: Path
) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    runs = tmp_path / "runs"
    pidfile = tmp_path / "pid"
    second_again = tmp_path / "second-may-finish"
    view = submit(
        url,
        {
            "name": "cancel-retry",
            "tasks": [
                {"id": "first", "command": f"echo first >> {runs}"},
                {
                    "id": "second",
                    "dependencies": ["first"],
                    "command": (
                        f"echo second >> {runs}; "
                        f"if [ -e {second_again} ]; then exit 0; fi; "
                        f"sleep 30 & echo $! > {pidfile}; wait"
                    ),
                },
                {"id": "third", "dependencies": ["second"], "command": f"echo third >> {runs}"},
                {"id": "side", "command": f"echo side >> {runs}"},
            ],
        },
    )
    wf = view["id"]
    wait_until(
        lambda: states(get(url, wf))["second"] == "running" and pidfile.exists(),
        what="second running",
    )
    sleeper = int(pidfile.read_text())
    assert pid_alive(sleeper)
    refused = httpx.post(f"{url}{WORKFLOWS}/{wf}/retry", timeout=10)
    assert_problem(refused, 409)

    cancelled = httpx.post(f"{url}{WORKFLOWS}/{wf}/cancel", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    wait_until(lambda: not pid_alive(sleeper), 10, "the running task's process killed")
    after = get(url, wf)
    assert after["status"] == "cancelled" and after["finished_at"] is not None
    assert states(after) == {
        "first": "completed",
        "second": "cancelled",
        "third": "cancelled",
        "side": "completed",
    }
    assert_problem(httpx.post(f"{url}{WORKFLOWS}/{wf}/cancel", timeout=10), 409)
    assert sorted(lines(runs)) == ["first", "second", "side"]

    second_again.touch()
    retried = httpx.post(f"{url}{WORKFLOWS}/{wf}/retry", timeout=10)
    assert retried.status_code == 200, retried.text
    assert retried.json()["retried_tasks"] == 2
    assert retried.json()["status"] == "running"
    done = finished(url, wf)
    assert done["status"] == "completed", done
    assert done["runs"] == view["runs"] + 1
    assert set(states(done).values()) == {"completed"}
    # What had succeeded did not run again; the cancelled task and its dependent did.
    assert sorted(lines(runs)) == ["first", "second", "second", "side", "third"]
    assert lines(runs)[-2:] == ["second", "third"]
    assert_problem(httpx.post(f"{url}{WORKFLOWS}/{wf}/retry", timeout=10), 409)


def test_retry_after_failure_reruns_failed_and_downstream(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    runs = tmp_path / "runs"
    fixed = tmp_path / "fixed"
    view = submit(
        url,
        {
            "name": "retry",
            "tasks": [
                {"id": "good", "command": f"echo good >> {runs}"},
                {
                    "id": "broken",
                    "dependencies": ["good"],
                    "command": f"echo broken >> {runs}; [ -e {fixed} ]",
                },
                {"id": "after", "dependencies": ["broken"], "command": f"echo after >> {runs}"},
            ],
        },
    )
    first = finished(url, view["id"])
    assert first["status"] == "failed"
    assert states(first) == {"good": "completed", "broken": "failed", "after": "upstream_failed"}
    fixed.touch()
    retried = httpx.post(f"{url}{WORKFLOWS}/{view['id']}/retry", timeout=10)
    assert retried.status_code == 200 and retried.json()["retried_tasks"] == 2
    done = finished(url, view["id"])
    assert done["status"] == "completed"
    assert lines(runs) == ["good", "broken", "broken", "after"]
    assert by_key(done)["broken"]["attempts"] == 2


def test_a_cancelled_running_task_keeps_why_it_was_cancelled(
    procs: Processes, tmp_path: Path
) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    pids = {name: tmp_path / f"{name}.pid" for name in ("ff", "wc")}
    sleep = "sleep 30 & echo $! > {}; wait"
    ff = submit(
        url,
        {
            "failure_policy": "fail_fast",
            "tasks": [
                {"id": "sleeper", "command": sleep.format(pids["ff"])},
                {
                    "id": "bad",
                    "command": f"while [ ! -s {pids['ff']} ]; do sleep 0.02; done; exit 1",
                },
            ],
        },
    )
    assert finished(url, ff["id"])["status"] == "failed"
    wf = submit(url, {"tasks": [{"id": "sleeper", "command": sleep.format(pids["wc"])}]})
    wait_until(pids["wc"].exists, what="sleeper running")
    assert httpx.post(f"{url}{WORKFLOWS}/{wf['id']}/cancel", timeout=10).status_code == 200
    for pid in (int(p.read_text()) for p in pids.values()):
        wait_until(lambda pid=pid: not pid_alive(pid), 10, "sleep killed")
    # The worker's confirmation of the kill has come back: the slots are free again.
    wait_until(lambda: httpx.get(url + "/api/v1/workers").json()["workers"][0]["free_slots"] == 2)
    assert by_key(get(url, ff["id"]))["sleeper"]["reason"] == "fail_fast: bad failed"
    assert by_key(get(url, wf["id"]))["sleeper"]["reason"] == "workflow cancelled"


# -- results between tasks -------------------------------------------------------------------


def test_children_read_parent_results_and_output_tails(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    seen = tmp_path / "parents.json"
    reader = (
        "import json, os;"
        "ps = json.load(open(os.environ['AGENTFLOW_PARENTS_FILE']));"
        "p = [p for p in ps if p['key'] == 'producer'][0];"
        "n = json.loads(p['result'])['n'];"
        "open(os.environ['AGENTFLOW_OUTPUT_FILE'], 'w').write(str(n + 1))"
    )
    view = submit(
        url,
        {
            "name": "results",
            "tasks": [
                {
                    "id": "producer",
                    "command": (
                        "echo line1; echo line2; "
                        'printf \'{"n": 41}\' > "$AGENTFLOW_OUTPUT_FILE"; '
                        'echo "${AGENTFLOW_PARENTS_FILE:+has-parents-file}"'
                    ),
                },
                {
                    "id": "big",
                    "command": "head -c 100000 /dev/zero | tr '\\0' a > \"$AGENTFLOW_OUTPUT_FILE\"",
                },
                {"id": "silent", "command": "true"},
                {
                    "id": "consumer",
                    "dependencies": ["producer", "big", "silent"],
                    "command": f'cp "$AGENTFLOW_PARENTS_FILE" {seen}; '
                    f"{PY} -c {shlex.quote(reader)}",
                },
            ],
        },
    )
    done = finished(url, view["id"])
    assert done["status"] == "completed", done
    ids = {k: t["id"] for k, t in by_key(done).items()}
    assert task(url, ids["producer"])["result"] == '{"n": 41}'
    assert task(url, ids["consumer"])["result"] == "42"
    assert task(url, ids["silent"])["result"] is None
    big = task(url, ids["big"])["result"]
    assert big == "a" * (64 * 1024)  # bounded at 64 KiB

    parents = json.loads(seen.read_text())
    assert [p["key"] for p in parents] == ["producer", "big", "silent"]
    producer = parents[0]
    assert producer == {
        "id": ids["producer"],
        "key": "producer",
        "status": "completed",
        "exit_code": 0,
        "stdout_tail": "line1\nline2\nhas-parents-file\n",
        "result": '{"n": 41}',
        "result_format": "text",  # what it wrote to $AGENTFLOW_OUTPUT_FILE, read as text
    }
    assert parents[1]["result"] == big
    assert parents[2]["result"] is None and parents[2]["stdout_tail"] == ""


# -- validation ------------------------------------------------------------------------------


def test_invalid_workflows_get_one_422_naming_every_problem(procs: Processes) -> None:
    _, url = procs.master()
    tasks: list[dict[str, Any]] = [
        {"id": "a", "command": "true", "dependencies": ["c"]},
        {"id": "b", "command": "true", "dependencies": ["a"]},
        {"id": "c", "command": "true", "dependencies": ["b"]},
        {"id": "p", "command": "true", "dependencies": ["q"]},
        {"id": "q", "command": "true", "dependencies": ["p"]},
        {"id": "self", "command": "true", "dependencies": ["self"]},
        {"id": "orphan", "command": "true", "dependencies": ["ghost"]},
        {"id": "twice", "command": "true"},
        {"id": "twice", "command": "false"},
    ]
    broken = {"name": "broken", "tasks": tasks}
    deps = {t["id"]: t.get("dependencies", []) for t in tasks}
    for path in (WORKFLOWS + "/validate", WORKFLOWS):
        problem = assert_problem(httpx.post(url + path, json=broken, timeout=10), 422)
        found: dict[str, list[list[str]]] = {}
        for error in problem["errors"]:
            assert error["message"]
            found.setdefault(error["kind"], []).append(error["task_ids"])
        assert sorted(found) == ["cycle", "duplicate_id", "self_dependency", "unknown_dependency"]
        assert found["duplicate_id"] == [["twice"]]
        assert found["self_dependency"] == [["self"]]
        assert found["unknown_dependency"] == [["orphan", "ghost"]]
        cycles = found["cycle"]
        assert len(cycles) == 2, cycles
        for cycle in cycles:
            assert cycle[0] == cycle[-1] and len(cycle) == len(set(cycle)) + 1
            for before, after in itertools.pairwise(cycle):
                assert before in deps[after], (cycle, before, after)
        assert sorted(sorted(set(c)) for c in cycles) == [["a", "b", "c"], ["p", "q"]]

    for empty in ({"name": "empty", "tasks": []}, {"name": "empty"}):
        for path in (WORKFLOWS + "/validate", WORKFLOWS):
            problem = assert_problem(httpx.post(url + path, json=empty, timeout=10), 422)
            assert [e["kind"] for e in problem["errors"]] == ["empty_workflow"]

    for body in (
        {"tasks": [{"id": "a", "command": "true", "trigger": "sometimes"}]},
        {"tasks": [{"id": "a", "command": "true", "colour": "red"}]},
        {"tasks": [{"id": "a b", "command": "true"}]},
        {"failure_policy": "panic", "tasks": [{"id": "a", "command": "true"}]},
    ):
        assert_problem(httpx.post(url + WORKFLOWS, json=body, timeout=10), 422)

    assert httpx.get(url + WORKFLOWS, timeout=10).json() == {"workflows": []}
    assert httpx.get(url + "/api/v1/tasks", timeout=10).json()["tasks"] == []

    good = {
        "name": "ok",
        "tasks": [{"id": "a", "command": "true"}, {"id": "b", "dependencies": ["a"]}],
    }
    dry = httpx.post(url + WORKFLOWS + "/validate", json=good, timeout=10)
    assert dry.status_code == 200, dry.text
    assert dry.json()["valid"] is True
    assert dry.json()["analysis"]["topological_order"] == ["a", "b"]
    assert httpx.get(url + WORKFLOWS, timeout=10).json() == {"workflows": []}
    assert httpx.get(url + "/api/v1/tasks", timeout=10).json()["tasks"] == []
    assert_problem(httpx.get(f"{url}{WORKFLOWS}/wf-nope", timeout=10), 404)
    assert_problem(httpx.post(f"{url}{WORKFLOWS}/wf-nope/cancel", timeout=10), 404)


def test_seed_form_is_accepted_as_is(procs: Processes) -> None:
    _, url = procs.master()
    seed = (
        '{"name": "Seed workflow", "tasks": ['
        '{"id": "fetch", "name": "Fetch data", "priority": "high", "dependencies": []},'
        '{"id": "build", "name": "Build", "priority": "medium", "dependencies": ["fetch"]},'
        '{"id": "test", "name": "Test", "priority": "low", "dependencies": ["fetch"]},'
        '{"id": "ship", "name": "Ship", "priority": "urgent", "dependencies": ["build", "test"]}'
        "]}"
    )
    response = httpx.post(
        url + WORKFLOWS, content=seed, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["name"] == "Seed workflow"
    assert view["analysis"]["levels"] == [["fetch"], ["build", "test"], ["ship"]]
    # Nothing to run in any of them: join points, done without a worker.
    done = finished(url, view["id"], 10)
    assert done["status"] == "completed"
    tasks = by_key(done)
    assert {k: t["title"] for k, t in tasks.items()} == {
        "fetch": "Fetch data",
        "build": "Build",
        "test": "Test",
        "ship": "Ship",
    }
    priorities = {k: task(url, t["id"])["priority"] for k, t in tasks.items()}
    assert priorities == {"fetch": "high", "build": "medium", "test": "low", "ship": "urgent"}
    listed = httpx.get(url + WORKFLOWS, timeout=10).json()["workflows"]
    assert [w["id"] for w in listed] == [view["id"]]
    assert "tasks" not in listed[0]


# -- progress --------------------------------------------------------------------------------


def test_progress_mid_run_and_graph(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    gate = tmp_path / "gate"
    view = submit(
        url,
        {
            "name": "progress",
            "tasks": [
                {"id": "a", "command": "true", "estimate_s": 1},
                {
                    "id": "b",
                    "command": f"while [ ! -e {gate} ]; do sleep 0.02; done",
                    "dependencies": ["a"],
                    "estimate_s": 100,
                },
                {"id": "c", "command": "true", "dependencies": ["b"], "estimate_s": 50},
                {"id": "d", "command": "true", "dependencies": ["a"], "estimate_s": 1},
            ],
        },
    )
    wf = view["id"]
    assert view["percent_done"] == 0.0 and view["total"] == 4
    assert isinstance(view["eta_s"], int | float) and view["eta_s"] >= 150
    wait_until(
        lambda: get(url, wf)["counts"] == {"completed": 2, "running": 1, "pending": 1},
        what="a and d done, b running",
    )
    time.sleep(0.2)
    mid = get(url, wf)
    assert mid["status"] == "running"
    assert states(mid) == {"a": "completed", "b": "running", "c": "pending", "d": "completed"}
    assert mid["percent_done"] == 50.0
    assert mid["elapsed_s"] >= 0.2
    assert isinstance(mid["eta_s"], int | float) and mid["eta_s"] >= 50  # c is still to run
    assert mid["finished_at"] is None
    assert by_key(mid)["b"]["started_at"] is not None

    graph = httpx.get(f"{url}{WORKFLOWS}/{wf}/graph", timeout=10).json()
    assert graph["status"] == "running"
    nodes = {n["key"]: n for n in graph["nodes"]}
    assert {k: n["status"] for k, n in nodes.items()} == states(mid)
    assert nodes["c"]["dependencies"] == ["b"]
    assert graph["analysis"]["critical_path"] == ["a", "b", "c"]

    # A long poll is answered as soon as the workflow finishes, not when the wait runs out.
    gate.touch()
    asked = time.monotonic()
    done = get(url, wf, wait_s=20)
    assert time.monotonic() - asked < 10
    assert done["status"] == "completed"
    assert done["percent_done"] == 100.0 and done["eta_s"] is None
    assert done["finished_at"] is not None
    assert done["elapsed_s"] >= mid["elapsed_s"]


def test_eta_counts_what_is_left_of_a_running_task(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=1)
    gate = tmp_path / "gate"
    view = submit(
        url,
        {
            "tasks": [
                {
                    "id": "b",
                    "command": f"while [ ! -e {gate} ]; do sleep 0.02; done",
                    "estimate_s": 100,
                },
                {"id": "c", "command": "true", "dependencies": ["b"], "estimate_s": 50},
            ]
        },
    )
    assert view["eta_s"] == 150.0
    wait_until(lambda: states(get(url, view["id"]))["b"] == "running", what="b running")
    first = get(url, view["id"])["eta_s"]
    time.sleep(0.5)
    later = get(url, view["id"])["eta_s"]
    gate.touch()
    # What is left: the rest of b's 100 s estimate, then c's 50 s; it shrinks as b runs.
    assert 140 <= later <= first <= 150, (first, later)
    assert finished(url, view["id"])["status"] == "completed"


# -- durability ------------------------------------------------------------------------------


def test_workflow_survives_a_master_kill9_mid_run(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    procs.worker("w1", url, "--slots", "2")
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    wf = submit(url, chain(runs, gate))["id"]
    wait_until(lambda: states(get(url, wf))["s2"] == "running", what="s2 running")
    master.kill9()
    _, url2 = procs.master("m1", port, data_dir=data)
    assert url2 == url
    assert states(get(url, wf)) == {"s1": "completed", "s2": "running", "s3": "pending"}
    # The worker is back in session once it runs something new; then s2 may finish.
    probe = httpx.post(url + "/api/v1/tasks", json={"command": "true"}, timeout=10).json()["id"]
    wait_until(lambda: task(url, probe)["status"] == "completed", 20, "worker reconnected")
    gate.touch()
    done = finished(url, wf, 20)
    assert done["status"] == "completed", done
    assert lines(runs) == ["s1", "s2", "s2 end", "s3"]  # no completed step ran twice
    assert all(t["attempts"] == 1 for t in done["tasks"])


def test_a_step_finishing_while_the_master_is_down_is_reported_after_restart(
    procs: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    worker = procs.worker("w1", url, "--slots", "2")
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    wf = submit(url, chain(runs, gate))["id"]
    wait_until(lambda: states(get(url, wf))["s2"] == "running", what="s2 running")
    master.kill9()
    wait_until(lambda: "Connect call failed" in worker.log(), 10, "the worker saw it go")
    gate.touch()
    wait_until(lambda: "s2 end" in lines(runs), 10, "s2 finished while the master was down")
    procs.master("m1", port, data_dir=data)
    done = finished(url, wf, 5)
    assert done["status"] == "completed", done
    assert lines(runs) == ["s1", "s2", "s2 end", "s3"]
    assert all(t["attempts"] == 1 for t in done["tasks"])


def chain(runs: Path, gate: Path) -> dict[str, Any]:
    """s1 -> s2 -> s3; s2 runs until ``gate`` exists. Each appends to ``runs`` as it runs."""
    s2 = f"echo s2 >> {runs}; while [ ! -e {gate} ]; do sleep 0.02; done; echo 's2 end' >> {runs}"
    return {
        "name": "chain",
        "tasks": [
            {"id": "s1", "command": f"echo s1 >> {runs}"},
            {"id": "s2", "command": s2, "dependencies": ["s1"]},
            {"id": "s3", "command": f"echo s3 >> {runs}", "dependencies": ["s2"]},
        ],
    }


# -- command line ----------------------------------------------------------------------------

CLI = str(Path(sys.executable).parent / "agentflow")


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def diamond_yaml(log: Path, *, fail_c: bool = False) -> str:
    # c fails well after b has finished (see test_upstream_failed_names_the_failed_dependency).
    c_body = "sleep 0.5; exit 4" if fail_c else "sleep 0.1"
    return f"""
name: cli-diamond
tasks:
  - id: a
    command: {json.dumps(logged(log, "a"))}
  - id: b
    command: {json.dumps(logged(log, "b"))}
    dependencies: [a]
  - id: c
    command: {json.dumps(logged(log, "c", c_body))}
    dependencies: [a]
    estimate_s: 3
  - id: d
    command: {json.dumps(logged(log, "d"))}
    dependencies: [b, c]
"""


def table(stdout: str) -> dict[str, list[str]]:
    """The rows of the task table the CLI prints: task key -> the other cells."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            key, *cells = (cell.strip() for cell in line.strip("│").split("│"))
            rows[key] = cells
    return rows


def plain_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of the task table `workflow run --wait` and `workflow status` print to a pipe
    (plain columns, ``-`` for an empty cell): task key -> the cells after the task id."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["task", "task", "id"])
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("workflow "):
            break
        key, task_id, *cells = re.split(r"\s{2,}", line)
        assert task_id.startswith("t-"), line
        rows[key] = ["" if cell == "-" else cell for cell in cells]
    return rows


def assert_diamond_order(log: Path) -> None:
    pos = {line: i for i, line in enumerate(lines(log))}
    assert len(pos) == 8, lines(log)
    assert pos["end a"] < min(pos["start b"], pos["start c"])
    assert max(pos["end b"], pos["end c"]) < pos["start d"]


def test_cli_workflow_run_wait_status_and_graph(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    log = tmp_path / "log"
    spec = tmp_path / "diamond.yaml"
    spec.write_text(diamond_yaml(log))
    done = cli("workflow", "run", str(spec), "--wait", "--master-url", url)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    wf = out[0]
    assert wf.startswith("wf-")
    assert any(line.startswith(f"workflow {wf} completed in ") for line in out), done.stdout
    assert plain_rows(done.stdout) == {
        k: ["completed", "0", "1", deps, ""]
        for k, deps in {"a": "", "b": "a", "c": "a", "d": "b, c"}.items()
    }
    assert_diamond_order(log)
    assert get(url, wf)["status"] == "completed"

    status = cli("workflow", "status", wf, "--master-url", url)
    assert status.returncode == 0, status.stderr
    summary = status.stdout.splitlines()[0]  # a pipe: nothing wrapped
    assert re.fullmatch(
        rf"cli-diamond \({wf}\): completed, 100\.0% done, [\d.]+s elapsed; 4 completed", summary
    ), summary
    assert {k: row[0] for k, row in plain_rows(status.stdout).items()} == dict.fromkeys(
        "abcd", "completed"
    )
    as_json = json.loads(cli("workflow", "status", wf, "--json", "--master-url", url).stdout)
    assert as_json["id"] == wf and states(as_json) == dict.fromkeys("abcd", "completed")

    graph = cli("workflow", "graph", wf, "--master-url", url)
    assert graph.returncode == 0, graph.stderr
    drawn = graph.stdout.splitlines()
    assert drawn[0] == f"cli-diamond ({wf}): completed"
    assert [line for line in drawn if line.startswith("level")] == ["level 0", "level 1", "level 2"]
    assert "  * a [completed]" in drawn
    assert "    b [completed]  <- a" in drawn
    assert "  * c [completed]  <- a" in drawn
    assert "  * d [completed]  <- b, c" in drawn
    assert drawn[-1].startswith("critical path (*): a -> c -> d (")

    missing = cli("workflow", "status", "wf-nope", "--master-url", url)
    assert missing.returncode != 0
    assert missing.stderr.strip() == "error: no workflow wf-nope"


def test_cli_workflow_run_exit_codes(procs: Processes, tmp_path: Path) -> None:
    url = master_and_workers(procs, workers=1, slots=2)
    log = tmp_path / "log"
    spec = tmp_path / "diamond.json"
    spec.write_text(json.dumps(yaml_free_diamond(log, fail_c=True)))
    failed = cli("workflow", "run", str(spec), "--wait", "--master-url", url)
    assert failed.returncode == 1, failed.stderr
    wf = failed.stdout.splitlines()[0]
    assert states(get(url, wf)) == {
        "a": "completed",
        "b": "completed",
        "c": "failed",
        "d": "upstream_failed",
    }
    assert f"workflow {wf} failed in " in failed.stdout
    rows = plain_rows(failed.stdout)
    assert rows["c"][:3] == ["failed", "4", "1"]
    assert rows["d"] == ["upstream_failed", "", "0", "b, c", "upstream c failed"]

    spec.write_text(json.dumps(yaml_free_diamond(tmp_path / "log2")))
    submitted = cli("workflow", "run", str(spec), "--master-url", url)
    assert submitted.returncode == 0, submitted.stderr
    (wf2,) = submitted.stdout.split()
    assert finished(url, wf2)["status"] == "completed"

    bad = tmp_path / "cycle.yaml"
    bad.write_text(
        "tasks:\n  - {id: a, command: 'true', dependencies: [b]}\n"
        "  - {id: b, command: 'true', dependencies: [a]}\n"
    )
    refused = cli("workflow", "run", str(bad), "--master-url", url)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1 and "cycle" in refused.stderr
    assert len(httpx.get(url + WORKFLOWS, timeout=10).json()["workflows"]) == 2


def yaml_free_diamond(log: Path, *, fail_c: bool = False) -> dict[str, Any]:
    import yaml

    spec: dict[str, Any] = yaml.safe_load(diamond_yaml(log, fail_c=fail_c))
    return spec


def test_cli_run_runs_a_workflow_file_locally(tmp_path: Path) -> None:
    log = tmp_path / "log"
    spec = tmp_path / "diamond.yaml"
    spec.write_text(diamond_yaml(log))
    done = cli("run", str(spec), "--workers", "1", "--slots", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_diamond_order(log)
    assert {k: row[0] for k, row in table(done.stdout).items()} == dict.fromkeys(
        "abcd", "completed"
    )
    assert re.search(r"^workflow wf-\w+ completed in ", done.stdout, re.MULTILINE)

    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(yaml_free_diamond(tmp_path / "log2", fail_c=True)))
    failed = cli("run", str(failing), "--workers", "1", "--slots", "2")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    rows = table(failed.stdout)
    assert {k: row[0] for k, row in rows.items()} == {
        "a": "completed",
        "b": "completed",
        "c": "failed",
        "d": "upstream_failed",
    }
    assert re.search(r"^workflow wf-\w+ failed in ", failed.stdout, re.MULTILINE)
    assert "start d" not in lines(tmp_path / "log2")
