"""API tokens with a role: a pure table of ids, roles and secret hashes (issue 12).

A token reads ``af_<id>_<secret>``. The id is public (it names the token in lists and in
``revoke``); only ``sha256(secret)`` is kept, so neither the state nor its snapshot nor the
log holds anything that authenticates. Expiry is a time stored with the token; whether a
request's time is past it is decided by the API with the master's clock, never here.

Nothing here reads a clock or does I/O. Refusals raise typed errors from
:mod:`agentflow.errors`; the state machine turns them into results.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agentflow.errors import ConflictError, NotFoundError, OverloadedError, ValidationError

__all__ = ["Role", "TokenLimits", "TokenRecord", "TokenTable"]


class Role(StrEnum):
    ADMIN = "admin"  # the master's --api-token only; never stored
    CLIENT = "client"  # submit and read tasks and workflows, locks, messages
    WORKER = "worker"  # worker sessions only
    READ_ONLY = "read-only"  # GET only
    TASK = "task"  # a task's attempt-scoped token; never stored


STORED_ROLES = frozenset({Role.CLIENT, Role.WORKER, Role.READ_ONLY})


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenLimits:
    """Bounds on the token table. Part of the cluster's configuration."""

    tokens_max: int = 10_000
    name_max: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    id: str
    name: str
    role: Role
    secret_sha256: str  # hex digest of the secret part; the secret itself is never stored
    created_ms: int
    expires_ms: int | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expires_ms is not None and now_ms >= self.expires_ms

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "secret_sha256": self.secret_sha256,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TokenRecord:
        return cls(**(data | {"role": Role(data["role"])}))


class TokenTable:
    """Tokens by id. Expired tokens stay listed (marked) until revoked or pushed out by a
    newer token when the table is full."""

    def __init__(self, limits: TokenLimits | None = None) -> None:
        self.limits = limits or TokenLimits()
        self.tokens: dict[str, TokenRecord] = {}

    def create(self, record: TokenRecord, *, now_ms: int) -> TokenRecord:
        if record.role not in STORED_ROLES:
            raise ValidationError(f"role {record.role.value!r} cannot be given to a token")
        if len(record.name) > self.limits.name_max:
            raise ValidationError(f"token name is longer than {self.limits.name_max}")
        if len(record.secret_sha256) != 64:
            raise ValidationError("secret_sha256 is a sha256 hex digest")
        if record.id in self.tokens:
            raise ConflictError(f"token {record.id} exists", token_id=record.id)
        if len(self.tokens) >= self.limits.tokens_max:
            self._drop_expired(now_ms)
        if len(self.tokens) >= self.limits.tokens_max:
            raise OverloadedError(f"{self.limits.tokens_max} tokens exist: revoke some first")
        self.tokens[record.id] = record
        return record

    def revoke(self, token_id: str) -> TokenRecord:
        record = self.tokens.pop(token_id, None)
        if record is None:
            raise NotFoundError(f"no token {token_id}", token_id=token_id)
        return record

    def get(self, token_id: str) -> TokenRecord | None:
        return self.tokens.get(token_id)

    def _drop_expired(self, now_ms: int) -> None:
        for token_id in [t.id for t in self.tokens.values() if t.expired(now_ms)]:
            del self.tokens[token_id]

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        return [t.to_wire() for t in self.tokens.values()]

    def restore(self, data: list[dict[str, Any]]) -> None:
        self.tokens = {}
        for wire in data:
            record = TokenRecord.from_wire(wire)
            self.tokens[record.id] = record
