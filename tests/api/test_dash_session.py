"""The dashboard's way in, without a browser: the page and its files, the login cookie, the
CSRF check on every write the cookie carries, and what stays as it was (bearer clients, the
JSON index, the browser guard)."""

from __future__ import annotations

import httpx

from tests.api.conftest import ADMIN_TOKEN, Master, ok, problem

HTML = {"Accept": "text/html,application/xhtml+xml"}


async def _login(master: Master, token: str = ADMIN_TOKEN) -> tuple[str, str]:
    """Log in; the cookie header to send and the session's CSRF token."""
    answer = await master.client.post("/ui/login", json={"token": token}, headers={})
    body = ok(answer)
    set_cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    return set_cookie.split(";", 1)[0], body["csrf"]


def _anonymous(master: Master) -> httpx.AsyncClient:
    master.client.headers.pop("Authorization", None)
    return master.client


async def test_a_browser_gets_the_page_and_other_clients_the_json_index(master: Master) -> None:
    page = await master.client.get("/", headers=HTML)
    assert page.headers["content-type"].startswith("text/html")
    assert "/ui/static/app.js" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "links" in ok(await master.client.get("/"))
    script = await master.client.get("/ui/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    again = await master.client.get(
        "/ui/static/app.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304


async def test_only_shipped_files_are_served(master: Master) -> None:
    for path in (
        "/ui/static/../_middleware.py",
        "/ui/static/nope.js",
        "/ui/static/%2e%2e/__init__.py",
    ):
        problem(await master.client.get(path), 404, "not-found")
    problem(await master.client.post("/ui/session"), 405)


async def test_an_open_master_needs_no_login(master: Master) -> None:
    assert ok(await master.client.get("/ui/session")) == {
        "auth": False,
        "logged_in": True,
        "role": "admin",
        "csrf": "",
    }
    problem(await master.client.post("/ui/login", json={"token": "x"}), 400)


async def test_the_page_and_login_need_no_token_but_the_api_still_does(guarded: Master) -> None:
    client = _anonymous(guarded)
    assert (await client.get("/", headers=HTML)).status_code == 200
    assert ok(await client.get("/ui/session"))["logged_in"] is False
    problem(await client.get("/api/v1/tasks"), 401)
    problem(await client.post("/ui/login", json={"token": "wrong"}), 401)
    problem(await client.post("/ui/login", json={"token": 1}), 422)
    problem(await client.post("/ui/login", json={"token": "x", "role": "admin"}), 422)
    problem(
        await client.post("/ui/login", content=b"{", headers={"Content-Type": "application/json"}),
        400,
    )


async def test_the_cookie_reads_and_writes_only_with_its_csrf_token(guarded: Master) -> None:
    cookie, csrf = await _login(guarded)
    client = _anonymous(guarded)
    session = ok(await client.get("/ui/session", headers={"Cookie": cookie}))
    assert session == {"auth": True, "logged_in": True, "role": "admin", "csrf": csrf}
    ok(await client.get("/api/v1/tasks", headers={"Cookie": cookie}))
    body = {"command": "true"}
    problem(
        await client.post("/api/v1/tasks", json=body, headers={"Cookie": cookie}), 403, "forbidden"
    )
    wrong = {"Cookie": cookie, "X-CSRF-Token": "0" * 64}
    problem(await client.post("/api/v1/tasks", json=body, headers=wrong), 403, "forbidden")
    listed = ok(await client.get("/api/v1/tasks", headers={"Cookie": cookie}))
    assert listed["tasks"] == []  # nothing was committed
    right = {"Cookie": cookie, "X-CSRF-Token": csrf}
    ok(await client.post("/api/v1/tasks", json=body, headers=right), 201)
    # A bearer client is no browser session: it needs no CSRF token, the cookie aside.
    bearer = {"Cookie": cookie, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    ok(await client.post("/api/v1/tasks", json=body, headers=bearer), 201)


async def test_a_read_only_session_is_refused_every_write(guarded: Master) -> None:
    made = ok(await guarded.client.post("/api/v1/tokens", json={"role": "read-only"}), 201)
    cookie, csrf = await _login(guarded, made["token"])
    client = _anonymous(guarded)
    assert ok(await client.get("/ui/session", headers={"Cookie": cookie}))["role"] == "read-only"
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf}
    problem(await client.post("/api/v1/tasks", json={"command": "true"}, headers=headers), 403)
    ok(await client.get("/api/v1/tasks", headers=headers))


async def test_a_worker_token_cannot_open_the_dashboard(guarded: Master) -> None:
    made = ok(await guarded.client.post("/api/v1/tokens", json={"role": "worker"}), 201)
    problem(await _anonymous(guarded).post("/ui/login", json={"token": made["token"]}), 403)


async def test_logout_needs_the_csrf_token_and_clears_the_cookie(guarded: Master) -> None:
    cookie, csrf = await _login(guarded)
    client = _anonymous(guarded)
    problem(await client.post("/ui/logout", headers={"Cookie": cookie}), 403)
    answer = await client.post("/ui/logout", headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert ok(answer) == {"logged_in": False}
    assert "Max-Age=0" in answer.headers["set-cookie"]


async def test_the_browser_guard_still_comes_first(guarded: Master) -> None:
    cookie, csrf = await _login(guarded)
    client = _anonymous(guarded)
    foreign = {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    problem(
        await client.post("/api/v1/tasks", json={"command": "true"}, headers=foreign),
        403,
        "foreign-origin",
    )
    problem(
        await client.post(
            "/ui/login", json={"token": ADMIN_TOKEN}, headers={"Origin": "https://evil.example"}
        ),
        403,
    )
    form = {"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "text/plain"}
    problem(await client.post("/api/v1/tasks", content=b"{}", headers=form), 415)
