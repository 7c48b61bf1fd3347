"""The token table and its commands: pure, replicated, snapshotted, never holding a secret."""

from __future__ import annotations

import hashlib

import pytest

from agentflow.errors import ConflictError, NotFoundError, OverloadedError, ValidationError
from agentflow.state import StateMachine
from agentflow.state.commands import CreateToken, RevokeToken, decode_command, encode_command
from agentflow.state.tokens import Role, TokenLimits, TokenRecord, TokenTable

DIGEST = hashlib.sha256(b"secret").hexdigest()


def _create(token_id: str, now_ms: int = 1000, **fields: object) -> CreateToken:
    values: dict[str, object] = {"name": "", "role": "client", "secret_sha256": DIGEST}
    values.update(fields)
    return CreateToken(now_ms=now_ms, id=token_id, **values)  # type: ignore[arg-type]


def test_tokens_are_created_revoked_and_replicated_alike() -> None:
    machines = [StateMachine(), StateMachine()]
    log = [
        _create("aaaaaaaaaaaa", role="read-only", expires_ms=5000),
        _create("bbbbbbbbbbbb", name="ci"),
        RevokeToken(now_ms=2000, id="aaaaaaaaaaaa"),
    ]
    for sm in machines:
        for index, command in enumerate(log, start=1):
            result = sm.apply(index, decode_command(encode_command(command)))
            assert not isinstance(result, Exception)
    a, b = machines
    assert list(a.tokens.tokens) == ["bbbbbbbbbbbb"]
    assert a.tokens.tokens["bbbbbbbbbbbb"].role is Role.CLIENT
    assert a.digest() == b.digest()
    restored = StateMachine()
    restored.restore(a.snapshot())
    assert restored.tokens.tokens == a.tokens.tokens
    assert restored.digest() == a.digest()


def test_refusals_change_nothing() -> None:
    sm = StateMachine()
    sm.apply(1, _create("aaaaaaaaaaaa"))
    before = sm.tokens.snapshot()
    assert isinstance(sm.apply(2, _create("aaaaaaaaaaaa")), ConflictError)
    assert isinstance(sm.apply(3, _create("cccccccccccc", role="admin")), ValidationError)
    assert isinstance(sm.apply(4, _create("dddddddddddd", role="root")), ValidationError)
    assert isinstance(sm.apply(5, _create("eeeeeeeeeeee", secret_sha256="x")), ValidationError)
    assert isinstance(sm.apply(6, RevokeToken(now_ms=1, id="ffffffffffff")), NotFoundError)
    assert sm.tokens.tokens.keys() == {"aaaaaaaaaaaa"}
    assert sm.tokens.snapshot() == before


def test_expiry_is_decided_by_the_time_given() -> None:
    record = TokenRecord(
        id="a", name="", role=Role.CLIENT, secret_sha256=DIGEST, created_ms=0, expires_ms=100
    )
    assert not record.expired(99)
    assert record.expired(100)


def test_a_full_table_drops_expired_tokens_first_then_refuses() -> None:
    table = TokenTable(TokenLimits(tokens_max=2))

    def record(token_id: str, expires_ms: int | None) -> TokenRecord:
        return TokenRecord(
            id=token_id,
            name="",
            role=Role.CLIENT,
            secret_sha256=DIGEST,
            created_ms=0,
            expires_ms=expires_ms,
        )

    table.create(record("a", 10), now_ms=0)
    table.create(record("b", None), now_ms=0)
    with pytest.raises(OverloadedError):
        table.create(record("c", None), now_ms=5)  # nothing expired yet
    table.create(record("c", None), now_ms=10)  # "a" has expired: it makes room
    assert set(table.tokens) == {"b", "c"}
