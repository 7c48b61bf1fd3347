"""The dashboard of a master with ``--api-token``, in a real browser: the login puts the token in
an HttpOnly, SameSite=Strict cookie that the event socket and the API accept; a read-only token
sees no mutating button and is refused server-side; a write carried by the cookie without the
session's X-CSRF-Token is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Tab
from tests.e2e.procs import Processes, wait_until

ADMIN = "dash-admin-token"
FETCH = """async ([method, path, body, csrf]) => {
  const headers = body === null ? {} : {'Content-Type': 'application/json'};
  if (csrf) headers['X-CSRF-Token'] = (await (await fetch('/ui/session')).json()).csrf;
  const init = {method, headers};
  if (body !== null) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  return r.status;
}"""


@pytest.fixture(scope="module")
def guarded(module_procs: Processes) -> Iterator[tuple[str, str]]:
    """A master with --api-token and a worker; the master's URL and a read-only token."""
    _, url = module_procs.master("g1", None, "--api-token", ADMIN)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(timeout=10, headers=auth) as client:
        made = client.post(url + "/api/v1/tokens", json={"role": "worker", "name": "w"})
        worker_token = made.json()["token"]
        read_only = client.post(url + "/api/v1/tokens", json={"role": "read-only", "name": "ro"})
        module_procs.worker("gw1", url, env={"AGENTFLOW_API_TOKEN": worker_token})

        def joined() -> bool:
            workers = client.get(url + "/api/v1/workers").json()["workers"]
            return any(w["id"] == "gw1" and w["state"] == "active" for w in workers)

        wait_until(joined, 20, "worker gw1")
    yield url, read_only.json()["token"]


def _login(tab: Tab, url: str, token: str) -> Any:
    page = tab.page
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("form#login button[type=submit]")
    page.wait_for_selector("section.page h1")
    page.locator("#live", has_text="live").wait_for()  # the event socket took the cookie
    return page


def _drop_expected(tab: Tab, status: int) -> None:
    """A refused fetch is logged by the browser as a console error: the one we asked for."""
    tab.errors = [e for e in tab.errors if f"status of {status}" not in e]


def test_login_sets_an_httponly_strict_cookie_and_logout_ends_it(
    guarded: tuple[str, str], tab: Tab
) -> None:
    url, _ = guarded
    tab.page.goto(url + "/")
    tab.page.wait_for_selector("form#login")
    tab.shot("login")
    page = _login(tab, url, ADMIN)
    (cookie,) = [c for c in tab.context.cookies() if c["name"] == "agentflow_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert "agentflow_session" not in page.evaluate("document.cookie")  # out of the script's reach
    page.goto(url + "/#/queue")
    page.locator('button[data-action="drain"][data-worker="gw1"]').wait_for()
    tab.shot("login-admin-queue")
    page.click("#logout")
    page.wait_for_selector("form#login")
    assert not [c for c in tab.context.cookies() if c["value"]]


def test_a_wrong_token_is_refused_at_login(guarded: tuple[str, str]) -> None:
    url, _ = guarded
    answer = httpx.post(url + "/ui/login", json={"token": "not-a-token"}, timeout=10)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers


def test_a_read_only_token_sees_no_mutating_button_and_is_refused(
    guarded: tuple[str, str], tab: Tab
) -> None:
    url, read_only = guarded
    page = _login(tab, url, read_only)
    page.goto(url + "/#/queue")
    page.locator("td", has_text="gw1").first.wait_for()
    assert page.locator("button[data-action]").count() == 0
    status = page.evaluate(FETCH, ["PATCH", "/api/v1/workers/gw1", {"state": "draining"}, True])
    assert status == 403  # refused by the API, CSRF token and all
    submitted = page.evaluate(FETCH, ["POST", "/api/v1/tasks", {"command": "true"}, True])
    assert submitted == 403
    _drop_expected(tab, 403)
    state = httpx.get(f"{url}/api/v1/workers/gw1", headers={"Authorization": f"Bearer {ADMIN}"})
    assert state.json()["state"] == "active"


def test_a_cookie_write_without_the_csrf_header_is_refused(
    guarded: tuple[str, str], tab: Tab
) -> None:
    url, _ = guarded
    page = _login(tab, url, ADMIN)
    body = {"command": "true", "title": "csrf-probe"}
    assert page.evaluate(FETCH, ["POST", "/api/v1/tasks", body, False]) == 403
    assert page.evaluate(FETCH, ["POST", "/api/v1/workers/gw1", None, False]) == 403
    _drop_expected(tab, 403)
    listed = httpx.get(f"{url}/api/v1/tasks", headers={"Authorization": f"Bearer {ADMIN}"})
    assert not [t for t in listed.json()["tasks"] if t["title"] == "csrf-probe"]
    assert page.evaluate(FETCH, ["POST", "/api/v1/tasks", body, True]) == 201  # with it: taken
