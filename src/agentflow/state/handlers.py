"""Which function applies each kind of command: one handler per kind, declared by the module
of the table the command is about (``HANDLERS`` in :mod:`~agentflow.state.tasks`,
:mod:`~agentflow.state.workers`, :mod:`~agentflow.state.workflows`,
:mod:`~agentflow.state.lock_ops`, :mod:`~agentflow.state.message_ops`,
:mod:`~agentflow.state.token_ops`, :mod:`~agentflow.state.schedule_ops`). The machine routes
by this map and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentflow.state.commands import Command

if TYPE_CHECKING:
    from agentflow.state.machine import StateMachine

__all__ = ["Handler", "route"]

Handler = Callable[["StateMachine", int, Any], Any]


def route(*declared: Mapping[type[Command], Handler]) -> dict[type[Command], Handler]:
    """The handlers of every module in one map; a kind declared twice is a programming error."""
    routes: dict[type[Command], Handler] = {}
    for handlers in declared:
        for kind, handler in handlers.items():
            if kind in routes:
                raise TypeError(f"{kind.__name__} has two handlers: {routes[kind]} and {handler}")
            routes[kind] = handler
    return routes
