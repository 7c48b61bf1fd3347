"""Bearer tokens to identities, and the route policy per role (issue 12)."""

from __future__ import annotations

import hashlib

import pytest

from agentflow.api.identity import Identity, TokenVerifier, authorize, task_token
from agentflow.errors import AuthError, ForbiddenError
from agentflow.state import StateMachine
from agentflow.state.commands import CreateToken, RevokeToken
from agentflow.state.records import TaskRecord, TaskStatus
from agentflow.state.tokens import Role

ADMIN = "the-admin-token"
SECRET = "s" * 48


def _verifier(now_ms: list[int]) -> tuple[StateMachine, TokenVerifier]:
    sm = StateMachine()
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    for index, (token_id, role, expires) in enumerate(
        [("aaaaaaaaaaaa", "client", None), ("bbbbbbbbbbbb", "read-only", 500)], start=1
    ):
        sm.apply(
            index,
            CreateToken(
                now_ms=0,
                id=token_id,
                name="",
                role=role,
                secret_sha256=digest,
                expires_ms=expires,
            ),
        )
    return sm, TokenVerifier(ADMIN, sm, lambda: now_ms[0])


def test_tokens_resolve_until_expired_or_revoked() -> None:
    now = [100]
    sm, verifier = _verifier(now)
    assert verifier.identify(ADMIN.encode()).role is Role.ADMIN
    client = f"af_aaaaaaaaaaaa_{SECRET}".encode()
    reader = f"af_bbbbbbbbbbbb_{SECRET}".encode()
    assert verifier.identify(client).role is Role.CLIENT
    assert verifier.identify(reader).role is Role.READ_ONLY
    for wrong in (b"", b"nope", b"af_aaaaaaaaaaaa_" + b"t" * 48, b"af_cccccccccccc_x", b"aft_1"):
        with pytest.raises(AuthError):
            verifier.identify(wrong)
    now[0] = 500
    with pytest.raises(AuthError, match="expired"):
        verifier.identify(reader)
    sm.apply(3, RevokeToken(now_ms=0, id="aaaaaaaaaaaa"))
    with pytest.raises(AuthError):
        verifier.identify(client)


def test_a_task_token_holds_while_its_attempt_runs() -> None:
    sm, verifier = _verifier([0])
    task = TaskRecord.__new__(TaskRecord)  # the verifier reads only its attempt and status
    task.fencing_token, task.status = 7, TaskStatus.RUNNING
    sm.tasks["t-1"] = task
    token = task_token(verifier.task_key, "t-1", 7)
    identity = verifier.identify(token.encode())
    assert (identity.role, identity.task_id, identity.lock_session) == (
        Role.TASK,
        "t-1",
        "task:t-1:7",
    )
    forged = token.replace("aft_7_", "aft_8_")
    with pytest.raises(AuthError):
        verifier.identify(forged.encode())
    other_key = task_token(b"another master's key", "t-1", 7)
    with pytest.raises(AuthError):
        verifier.identify(other_key.encode())
    task.status = TaskStatus.COMPLETED
    with pytest.raises(AuthError, match="ended"):
        verifier.identify(token.encode())


ALLOWED = {
    Role.READ_ONLY: [("GET", "/api/v1/tasks"), ("GET", "/metrics")],
    Role.CLIENT: [
        ("POST", "/api/v1/tasks"),
        ("POST", "/api/v1/tasks/t-9/cancel"),
        ("POST", "/api/v1/locks/a/force-release"),
        ("WS", "/api/v1/agents/anyone/stream"),
        ("GET", "/api/v1/workers"),
    ],
    Role.WORKER: [("WS", "/api/v1/workers/w1/session")],
    Role.TASK: [
        ("POST", "/api/v1/tasks"),
        ("GET", "/api/v1/tasks/t-9"),
        ("POST", "/api/v1/locks/a/acquire"),
        ("WS", "/api/v1/locks"),
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/agents/t-1/inbox"),
        ("WS", "/api/v1/agents/t-1/stream"),
    ],
}
REFUSED = {
    Role.READ_ONLY: [("POST", "/api/v1/tasks"), ("WS", "/api/v1/locks")],
    Role.CLIENT: [
        ("GET", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/aaaaaaaaaaaa"),
        ("PATCH", "/api/v1/workers/w1"),
        ("DELETE", "/api/v1/workers/w1"),
        ("WS", "/api/v1/workers/w1/session"),
        ("POST", "/api/v1/cluster/members"),
    ],
    Role.WORKER: [("POST", "/api/v1/tasks"), ("GET", "/api/v1/tasks")],
    Role.TASK: [
        ("GET", "/api/v1/agents/t-2/inbox"),
        ("WS", "/api/v1/agents/t-2/stream"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/messages"),
        ("POST", "/api/v1/locks/a/force-release"),
        ("POST", "/api/v1/tasks/t-9/cancel"),
        ("GET", "/api/v1/tokens"),
        ("GET", "/api/v1/workers"),
        ("WS", "/api/v1/workers/w1/session"),
    ],
}


@pytest.mark.parametrize("role", list(ALLOWED))
def test_each_role_may_do_its_routes_and_no_other(role: Role) -> None:
    identity = Identity(role=role, name="x", task_id="t-1", fencing_token=3)
    for method, path in ALLOWED[role]:
        authorize(identity, method, path)
    for method, path in REFUSED[role]:
        with pytest.raises(ForbiddenError):
            authorize(identity, method, path)
    admin = Identity(role=Role.ADMIN, name="admin")
    for method, path in REFUSED[role]:
        authorize(admin, method, path)
