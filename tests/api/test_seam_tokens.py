"""Token routes and the roles they make, in process, on a master started with --api-token."""

from __future__ import annotations

from tests.api.conftest import Master, ok, problem


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_or_a_wrong_one_is_a_401(guarded: Master) -> None:
    client = guarded.client
    answer = await client.get("/api/v1/tasks", headers={"Authorization": ""})
    problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    problem(await client.get("/api/v1/tasks", headers=bearer("af_000000000000_nope")), 401)
    assert ok(await client.get("/health", headers={"Authorization": ""}))["status"] == "ok"


async def test_create_use_list_and_revoke(guarded: Master) -> None:
    client = guarded.client
    made = ok(await client.post("/api/v1/tokens", json={"role": "client", "name": "ci"}), 201)
    assert made["role"] == "client" and made["token"].startswith("af_")
    task = {"command": "true"}
    ok(await client.post("/api/v1/tasks", json=task, headers=bearer(made["token"])), 201)
    # A client token may not manage tokens, workers or the cluster.
    problem(await client.get("/api/v1/tokens", headers=bearer(made["token"])), 403, "forbidden")
    listed = ok(await client.get("/api/v1/tokens"))
    assert [(t["id"], t["name"]) for t in listed["tokens"]] == [(made["id"], "ci")]
    revoked = ok(await client.delete(f"/api/v1/tokens/{made['id']}"))
    assert revoked["revoked"] is True
    problem(await client.get("/api/v1/tasks", headers=bearer(made["token"])), 401)
    problem(await client.delete("/api/v1/tokens/000000000000"), 404)
    problem(await client.delete("/api/v1/tokens/not-an-id"), 422)


async def test_roles(guarded: Master) -> None:
    client = guarded.client
    reader = ok(await client.post("/api/v1/tokens", json={"role": "read-only"}), 201)["token"]
    worker = ok(await client.post("/api/v1/tokens", json={"role": "worker"}), 201)["token"]
    ok(await client.get("/api/v1/tasks", headers=bearer(reader)))
    problem(await client.post("/api/v1/tasks", json={}, headers=bearer(reader)), 403)
    problem(await client.get("/api/v1/tasks", headers=bearer(worker)), 403)
    problem(await client.post("/api/v1/tokens", json={"role": "admin"}), 422)  # never made


async def test_a_token_expires_on_the_masters_clock(guarded: Master) -> None:
    client = guarded.client
    made = ok(await client.post("/api/v1/tokens", json={"role": "client", "ttl_s": 60}), 201)
    ok(await client.get("/api/v1/tasks", headers=bearer(made["token"])))
    guarded.clock.now += 61_000
    problem(await client.get("/api/v1/tasks", headers=bearer(made["token"])), 401)
    assert ok(await client.get("/api/v1/tokens"))["tokens"][0]["expired"] is True


async def test_an_open_master_makes_no_tokens(master: Master) -> None:
    problem(await master.client.post("/api/v1/tokens", json={"role": "client"}), 409)
