"""Scripting and views from the real `agentflow` command against a real master: every list or
show command prints the API's objects with ``-o json`` (and ``--json``), tables keep whole ids
when stdout is a pipe, and the views show task ids, unschedulable reasons, labels, resources
and links that are down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Processes, live_workers, wait_until

CLI = str(Path(sys.executable).parent / "agentflow")
NARROW = {**os.environ, "COLUMNS": "40"}  # a pipe must not cut cells, however narrow


def agentflow(url: str, *args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    """The command, which must succeed; ``quiet``: with nothing on stderr."""
    done = subprocess.run(
        [CLI, *args, "--master-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=NARROW,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" or not quiet
    return done


def as_json(url: str, *args: str, flag: str = "-o json") -> Any:
    """The command's JSON document: all of stdout is one."""
    return json.loads(agentflow(url, *args, *flag.split()).stdout)


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A master with a labelled worker, a finished task, a task nobody can run, a finished
    two-task workflow, a held lock and a named agent (shared: the tests only read)."""
    tmp_path = tmp_path_factory.mktemp("views")
    procs = Processes(tmp_path)
    try:
        yield _populated(procs, tmp_path)
    finally:
        procs.close()


def _populated(procs: Processes, tmp_path: Path) -> dict[str, str]:
    _, url = procs.master()
    procs.worker("w1", url, "--labels", "zone=b", "--resources", "cpu=4,gpu=1")
    wait_until(lambda: live_workers(url) == 1, what="worker w1")
    done = agentflow(url, "submit", "-c", "echo hi", "--wait", quiet=False).stdout
    stuck = agentflow(url, "submit", "-c", "true", "--label", "zone=x").stdout.strip()
    spec = tmp_path / "pair.yaml"
    spec.write_text(
        "tasks:\n"
        "  - {id: first, command: 'true'}\n"
        "  - {id: second, command: 'true', dependencies: [first]}\n"
    )
    flow = agentflow(url, "workflow", "run", str(spec), "--wait", quiet=False).stdout.splitlines()[
        0
    ]
    grant = json.loads(agentflow(url, "lock", "acquire", "build", "--ttl", "60s", "--json").stdout)
    agentflow(url, "agent", "subscribe", "planner", "builds.*")
    assert done == "hi\n"
    return {"url": url, "stuck": stuck, "workflow": flow, "session": grant["session"]}


def test_every_list_and_show_command_prints_the_api_objects_as_json(
    master: dict[str, str],
) -> None:
    url = master["url"]
    tasks = as_json(url, "tasks")
    assert master["stuck"] in {t["id"] for t in tasks}
    assert {"id", "status", "created_at", "attempt_history"} <= tasks[0].keys()
    task = as_json(url, "status", master["stuck"], flag="--json")
    assert task["id"] == master["stuck"] and "no worker" in task["unschedulable"]
    (worker,) = as_json(url, "workers")
    assert worker["labels"] == {"zone": "b"} and worker["resources"]["gpu"] == 1
    assert as_json(url, "queue")["queued"] == 1
    flow = as_json(url, "workflow", "status", master["workflow"])
    assert flow["id"] == master["workflow"] and flow["status"] == "completed"
    assert [w["id"] for w in as_json(url, "workflow", "list")] == [master["workflow"]]
    (held,) = as_json(url, "lock", "list", flag="--output=json")
    assert held["holders"][0]["session"] == master["session"]
    shown = as_json(url, "lock", "show", "build")
    assert shown["name"] == "build" and shown["history"]
    assert "planner" in {a["id"] for a in as_json(url, "agent", "list")}
    cluster = as_json(url, "cluster", "status")
    assert cluster["members"][0]["link"] == "self"


def test_a_pipe_gets_whole_ids_and_the_new_columns(master: dict[str, str]) -> None:
    url = master["url"]
    listed = rows(agentflow(url, "tasks").stdout)
    assert listed[0][0] == "id"
    assert master["stuck"] in [r[0] for r in listed[1:]]
    flow = as_json(url, "workflow", "status", master["workflow"])
    view = rows(agentflow(url, "workflow", "status", master["workflow"]).stdout)
    assert view[1][:4] == ["task", "task", "id", "status"]  # the header: "task id" is one column
    assert {(r[0], r[1]) for r in view[2:]} == {(t["key"], t["id"]) for t in flow["tasks"]}
    shown = agentflow(url, "status", master["stuck"]).stdout
    assert "unschedulable  needs labels zone=x; no worker in group 'default' has them" in shown
    workers = agentflow(url, "workers").stdout.splitlines()
    assert workers[0].endswith("labels  resources (free/total)")
    assert "zone=b" in workers[1] and "cpu=4/4,gpu=1/1" in workers[1]
    assert agentflow(url, "lock", "show", "build").stdout.splitlines()[1].split()[:3] == [
        "build",
        "exclusive",
        master["session"],
    ]


def test_cluster_status_marks_a_stopped_member_link_down(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    victim, asked = (n for n in cluster.masters if n != leader)

    def links() -> dict[str, str]:
        view = as_json(cluster.url(asked), "cluster", "status")
        assert view["node_id"] == leader  # the leader's view, though a follower was asked
        return {m["id"]: m["link"] for m in view["members"]}

    wait_until(lambda: sorted(links().values()) == ["self", "up", "up"], what="links up")
    cluster.kill9(victim)
    wait_until(lambda: links()[victim] == "down", what=f"{victim} shown down")
    table = agentflow(cluster.url(asked), "cluster", "status").stdout.splitlines()
    assert f"answered by {leader} (asked {asked})" in table[0]
    (row,) = (line for line in table[2:] if line.startswith(victim))
    assert row.endswith("link down")
