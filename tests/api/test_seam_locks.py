"""Lock routes in process: acquire, contend, wait, renew, release, force, fencing, reads."""

from __future__ import annotations

import asyncio

from tests.api.conftest import Master, ok, problem

LOCK = "/api/v1/locks/db/migrate"


async def test_acquire_renew_release(master: Master) -> None:
    grant = ok(await master.client.post(f"{LOCK}/acquire", json={"session": "a", "ttl_s": 10}))
    assert grant["name"] == "db/migrate" and grant["session"] == "a" and grant["token"] >= 1
    view = ok(await master.client.get(LOCK))
    assert view["held"] is True and [h["session"] for h in view["holders"]] == ["a"]
    renewed = ok(
        await master.client.post(
            f"{LOCK}/renew", json={"session": "a", "token": grant["token"], "ttl_s": 20}
        )
    )
    assert renewed["token"] == grant["token"] and renewed["ttl_s"] == 20.0
    released = ok(
        await master.client.post(f"{LOCK}/release", json={"session": "a", "token": grant["token"]})
    )
    assert released["released"] == [{"session": "a", "token": grant["token"]}]
    assert ok(await master.client.get(LOCK))["held"] is False  # known from its history
    assert ok(await master.client.get("/api/v1/locks"))["count"] == 0


async def test_a_second_exclusive_holder_is_refused_and_tokens_only_rise(master: Master) -> None:
    first = ok(await master.client.post(f"{LOCK}/acquire", json={"session": "a"}))
    refused = problem(await master.client.post(f"{LOCK}/acquire", json={"session": "b"}), 409)
    assert refused["holders"] == ["a"]
    stale = {"session": "a", "token": first["token"] + 1}
    problem(await master.client.post(f"{LOCK}/renew", json=stale), 409)
    problem(await master.client.post(f"{LOCK}/release", json=stale), 409)
    forced = ok(await master.client.post(f"{LOCK}/force-release", json={"reason": "stuck"}))
    assert forced["released"] == [{"session": "a", "token": first["token"]}]
    second = ok(await master.client.post(f"{LOCK}/acquire", json={"session": "b"}))
    assert second["token"] > first["token"]
    # The old holder's token no longer holds anything.
    old = {"session": "a", "token": first["token"]}
    problem(await master.client.post(f"{LOCK}/renew", json=old), 409)


async def test_a_waiter_is_granted_when_the_holder_releases(master: Master) -> None:
    first = ok(await master.client.post(f"{LOCK}/acquire", json={"session": "a"}))
    waiting = asyncio.create_task(
        master.client.post(f"{LOCK}/acquire", json={"session": "b", "wait_s": 30})
    )
    while master.machine.locks.waiting_for("b") is None:  # queued behind a, in the state
        await asyncio.sleep(0)
    ok(await master.client.post(f"{LOCK}/release", json={"session": "a", "token": first["token"]}))
    granted = ok(await asyncio.wait_for(waiting, 10))
    assert granted["session"] == "b" and granted["token"] > first["token"]


async def test_a_semaphore_and_shared_holders(master: Master) -> None:
    body = {"limit": 2}
    ok(await master.client.post(f"{LOCK}/acquire", json=body | {"session": "a"}))
    ok(await master.client.post(f"{LOCK}/acquire", json=body | {"session": "b"}))
    problem(await master.client.post(f"{LOCK}/acquire", json=body | {"session": "c"}), 409)
    problem(await master.client.post(f"{LOCK}/acquire", json={"session": "c"}), 409)  # limit 1
    shared = "/api/v1/locks/read-mostly"
    for session in ("r1", "r2", "r3"):
        ok(
            await master.client.post(
                f"{shared}/acquire", json={"session": session, "mode": "shared"}
            )
        )
    problem(await master.client.post(f"{shared}/acquire", json={"session": "w"}), 409)
    mine = ok(await master.client.get("/api/v1/locks", params={"session": "b"}))
    assert [lock["name"] for lock in mine["locks"]] == ["db/migrate"]


async def test_bad_lock_requests(master: Master) -> None:
    problem(await master.client.get("/api/v1/locks/never-held"), 404, "not-found")
    problem(await master.client.post(f"{LOCK}/acquire", json={"ttl_s": 0}), 422)
    problem(await master.client.post(f"{LOCK}/renew", json={"token": 1}), 422)  # whose?
    problem(await master.client.post(f"{LOCK}/release", json={"session": "a"}), 422)
    problem(await master.client.post(f"{LOCK}/acquire", json={"session": "a", "x": 1}), 422)
    assert master.machine.locks.names() == []
