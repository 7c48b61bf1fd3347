"""Messaging commands applied to the state machine's :class:`MessageTable`.

An agent is live while its named session lasts (``ConnectAgent`` renews it) or, for an agent
whose id is a task's, while that task runs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from agentflow.errors import AgentFlowError, ValidationError
from agentflow.state.commands import (
    AckMessages,
    Command,
    ConnectAgent,
    DisconnectAgent,
    SendMessage,
    SendMessages,
    Subscribe,
    Unsubscribe,
)
from agentflow.state.messages import AgentBox, Message, Sent

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = [
    "HANDLERS",
    "ack",
    "connect",
    "disconnect",
    "is_live",
    "send",
    "send_many",
    "subscribe",
    "unsubscribe",
]


def is_live(sm: StateMachine, agent_id: str, now_ms: int) -> bool:
    """:meth:`StateMachine.agent_live`."""
    return sm.agent_live(agent_id, now_ms)


def connect(sm: StateMachine, index: int, cmd: ConnectAgent) -> AgentBox:
    return sm.messages.connect(cmd.agent_id, ttl_ms=cmd.ttl_ms, now_ms=cmd.now_ms)


def disconnect(sm: StateMachine, index: int, cmd: DisconnectAgent) -> AgentBox:
    return sm.messages.disconnect(cmd.agent_id)


def subscribe(sm: StateMachine, index: int, cmd: Subscribe) -> AgentBox:
    return sm.messages.subscribe(cmd.agent_id, cmd.pattern, now_ms=cmd.now_ms)


def unsubscribe(sm: StateMachine, index: int, cmd: Unsubscribe) -> AgentBox:
    return sm.messages.unsubscribe(cmd.agent_id, cmd.pattern)


def send(sm: StateMachine, index: int, cmd: SendMessage) -> Sent:
    message = Message(
        id=cmd.id,
        index=index,
        sender=cmd.sender,
        to=cmd.to,
        type=cmd.type,
        content=cmd.content,
        timestamp_ms=cmd.now_ms,
        correlation_id=cmd.correlation_id,
        requires_response=cmd.requires_response,
        ttl_ms=cmd.ttl_ms,
        size=cmd.size,
    )
    return sm.messages.send(
        message, is_live=lambda a: is_live(sm, a, cmd.now_ms), timeout_ms=cmd.timeout_ms
    )


def send_many(sm: StateMachine, index: int, cmd: SendMessages) -> list[Sent | AgentFlowError]:
    """Each message as if sent alone, in order; a refusal refuses that message only."""
    results: list[Sent | AgentFlowError] = []
    for one in cmd.messages:
        try:
            if one.requires_response:
                raise ValidationError("a request cannot be part of a batch")
            results.append(send(sm, index, replace(one, now_ms=cmd.now_ms)))
        except AgentFlowError as refused:
            results.append(refused)
    return results


def ack(sm: StateMachine, index: int, cmd: AckMessages) -> AgentBox:
    return sm.messages.ack(cmd.agent_id, cmd.cursor, now_ms=cmd.now_ms)


HANDLERS: dict[type[Command], Handler] = {
    ConnectAgent: connect,
    DisconnectAgent: disconnect,
    Subscribe: subscribe,
    Unsubscribe: unsubscribe,
    SendMessage: send,
    SendMessages: send_many,
    AckMessages: ack,
}
