"""Token commands applied to the state machine's :class:`TokenTable`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentflow.errors import ValidationError
from agentflow.state.commands import Command, CreateToken, RevokeToken
from agentflow.state.tokens import Role, TokenRecord

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = ["HANDLERS", "create", "revoke"]


def create(sm: StateMachine, index: int, cmd: CreateToken) -> TokenRecord:
    try:
        role = Role(cmd.role)
    except ValueError:
        raise ValidationError(f"unknown role {cmd.role!r}") from None
    record = TokenRecord(
        id=cmd.id,
        name=cmd.name,
        role=role,
        secret_sha256=cmd.secret_sha256,
        created_ms=cmd.now_ms,
        expires_ms=cmd.expires_ms,
    )
    return sm.tokens.create(record, now_ms=cmd.now_ms)


def revoke(sm: StateMachine, index: int, cmd: RevokeToken) -> TokenRecord:
    return sm.tokens.revoke(cmd.id)


HANDLERS: dict[type[Command], Handler] = {
    CreateToken: create,
    RevokeToken: revoke,
}
