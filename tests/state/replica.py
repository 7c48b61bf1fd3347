"""One replica for state tests: commands applied through their wire encoding, as the log does."""

from __future__ import annotations

from agentflow.errors import AgentFlowError
from agentflow.state import StateMachine
from agentflow.state.commands import Command, decode_command, encode_command


class Log:
    """Applies commands through the wire encoding, as a replica would; returns the result (a
    refusal included)."""

    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0

    def __call__(self, command: Command) -> object:
        self.index += 1
        return self.sm.apply(self.index, decode_command(encode_command(command)))


class StrictLog(Log):
    """As :class:`Log`, but a refusal raises, as ``propose`` does."""

    def __call__(self, command: Command) -> object:
        result = super().__call__(command)
        if isinstance(result, AgentFlowError):
            raise result
        return result
