"""The dashboard in a real browser against a real master and worker: every page loads with no
console error; a task submitted from the CLI appears and completes without a reload; a
workflow's graph shows its tasks' states; the drain button drains. Screenshots of each page
go to build/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Tab
from tests.e2e.procs import Processes, live_workers, wait_until
from tests.e2e.test_cli import run

WORKFLOW = """\
name: dash-demo
tasks:
  - id: fetch
    command: echo fetched
    estimate_s: 0.2
  - id: lint
    dependencies: [fetch]
    command: echo lint ok
    estimate_s: 0.1
  - id: tests
    dependencies: [fetch]
    command: echo 3 failed; exit 3
    estimate_s: 2
  - id: package
    dependencies: [lint, tests]
    command: echo packaged
"""
PAGES = ("cluster", "queue", "tasks", "workflows", "locks", "agents", "schedules")


@pytest.fixture(scope="module")
def cluster(module_procs: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One master, one worker, a finished workflow, a held lock and an agent with a message."""
    _, url = module_procs.master("m1")
    module_procs.worker("w1", url, "--slots", "2", "--labels", "zone=lab")
    wait_until(lambda: live_workers(url) == 1, 20, "worker w1")
    spec = Path(tmp_path_factory.mktemp("wf")) / "dash.yaml"
    spec.write_text(WORKFLOW)
    done = run("workflow", "run", str(spec), "--wait", "--master-url", url)
    assert "dash-demo" in done.stdout + done.stderr, done.stderr
    held = run("lock", "acquire", "build-cache", "--ttl", "10m", "--master-url", url)
    assert held.returncode == 0, held.stderr
    api = url + "/api/v1"
    with httpx.Client(timeout=10) as client:
        client.post(f"{api}/agents/reviewer/connect", json={"ttl_s": 600}).raise_for_status()
        client.put(f"{api}/agents/reviewer/subscriptions/builds.*").raise_for_status()
        note = {"from": "planner", "to": "reviewer", "type": "review", "content": {"pr": 7}}
        client.post(f"{api}/messages", json=note).raise_for_status()
        nightly = {"name": "nightly-report", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}
        nightly["task"] = {"command": "echo report"}
        client.post(f"{api}/schedules", json=nightly).raise_for_status()
    yield url


def _open(tab: Tab, url: str, page: str) -> Any:
    tab.page.goto(f"{url}/#/{page}")
    tab.page.wait_for_selector("section.page h1")
    tab.page.wait_for_load_state("networkidle")
    assert tab.page.locator(".page-error").count() == 0, tab.page.inner_text(".page-error")
    return tab.page


def test_every_page_loads_without_console_errors(cluster: str, tab: Tab) -> None:
    for name in PAGES:
        page = _open(tab, cluster, name)
        assert page.locator("#live").inner_text() in ("live", "connecting")
        tab.shot(name)
    workflow_id = httpx.get(cluster + "/api/v1/workflows").json()["workflows"][0]["id"]
    _open(tab, cluster, f"workflows/{workflow_id}")
    tab.shot("workflow")
    _open(tab, cluster, "locks/build-cache")
    tab.page.wait_for_selector("text=granted")
    tab.shot("lock")


def test_a_task_submitted_from_the_cli_appears_and_completes_without_reload(
    cluster: str, tab: Tab
) -> None:
    page = _open(tab, cluster, "tasks")
    page.evaluate("window.__sameDocument = true")
    submitted = run("submit", "--master-url", cluster, "--command", "sleep 0.5; echo dash-marker")
    assert submitted.returncode == 0, submitted.stderr
    task_id = re.findall(r"t-[0-9a-f]+", submitted.stdout)[0]
    row = page.locator("tr", has=page.locator(f'a[href="#/tasks/{task_id}"]'))
    row.wait_for()
    row.locator(".badge", has_text="completed").wait_for()
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    row.locator(f'a[href="#/tasks/{task_id}"]').click()
    page.locator("#output", has_text="dash-marker").wait_for()
    page.locator("td", has_text="w1").first.wait_for()  # the attempt's worker
    tab.shot("task")


def test_the_workflow_graph_shows_each_task_state(cluster: str, tab: Tab) -> None:
    workflow_id = httpx.get(cluster + "/api/v1/workflows").json()["workflows"][0]["id"]
    graph = httpx.get(f"{cluster}/api/v1/workflows/{workflow_id}/graph").json()
    page = _open(tab, cluster, f"workflows/{workflow_id}")
    page.wait_for_selector("svg#dag g.node")
    shown = {
        node.get_attribute("data-key"): node.get_attribute("data-status")
        for node in page.locator("svg#dag g.node").all()
    }
    assert shown == {n["key"]: n["status"] for n in graph["nodes"]}
    assert {"completed", "failed"} <= set(shown.values())
    critical = page.locator("svg#dag g.node.critical").all()
    assert [n.get_attribute("data-key") for n in critical] == graph["analysis"]["critical_path"]
    page.locator("#wf-retry").wait_for()  # a failed run offers its retry


def test_the_drain_button_drains_and_activate_undoes_it(cluster: str, tab: Tab) -> None:
    page = _open(tab, cluster, "queue")

    def state() -> str:
        worker = httpx.get(f"{cluster}/api/v1/workers/w1", timeout=5).json()
        return str(worker["state"])

    page.click('button[data-action="drain"][data-worker="w1"]')
    wait_until(lambda: state() == "draining", 15, "w1 draining")
    page.click('button[data-action="activate"][data-worker="w1"]')
    wait_until(lambda: state() in ("active", "busy"), 15, "w1 active again")
    page.locator('button[data-action="drain"][data-worker="w1"]').wait_for()


def test_a_waiting_task_says_why_and_takes_a_priority_change_then_a_cancel(
    cluster: str, tab: Tab
) -> None:
    submitted = run("submit", "--master-url", cluster, "--resources", "gpu=8", "--", "true")
    assert submitted.returncode == 0, submitted.stderr
    task_id = re.findall(r"t-[0-9a-f]+", submitted.stdout)[0]
    page = _open(tab, cluster, f"tasks/{task_id}")
    page.locator("#unschedulable", has_text="gpu").wait_for()
    tab.shot("task-unschedulable")

    def task() -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{cluster}/api/v1/tasks/{task_id}", timeout=5).json()
        return found

    page.select_option("#priority", "urgent")
    page.click("#set-priority")
    wait_until(lambda: task()["priority"] == "urgent", 15, "priority urgent")
    page.click("#cancel")
    wait_until(lambda: task()["status"] == "cancelled", 15, "task cancelled")
    page.locator("h1 .badge", has_text="cancelled").wait_for()  # the page follows, no reload


def test_the_schedules_page_lists_a_schedule_with_its_next_run(cluster: str, tab: Tab) -> None:
    page = _open(tab, cluster, "schedules")
    row = page.locator("tr", has_text="nightly-report")
    row.wait_for()
    assert "cron 30 2 * * * (Europe/Berlin)" in row.inner_text()
    next_run = httpx.get(cluster + "/api/v1/schedules").json()["schedules"][0]["next_run"]
    assert next_run is not None
    shown = row.locator("td").nth(3).inner_text()
    assert any(ch.isdigit() for ch in shown), shown  # its next run, as a date and time
