"""The replicated state machine.

Owns every piece of replicated state (tasks, attempts, workers, queues, output tails) and the
commands that change it. ``StateMachine.apply(index, command)`` is the entry point; it is pure and
deterministic: no clock, randomness, network, files or environment. It must not import
asyncio, sqlite3 or anything above it; the shell (``agentflow.cluster``) persists and replicates.
"""

from agentflow.state.commands import Command, decode_command, encode_command
from agentflow.state.machine import StateLimits, StateMachine
from agentflow.state.queue import PriorityPolicy, ReadyQueue
from agentflow.state.records import (
    Priority,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
    WorkerState,
)

__all__ = [
    "Command",
    "Priority",
    "PriorityPolicy",
    "ReadyQueue",
    "StateLimits",
    "StateMachine",
    "TaskRecord",
    "TaskStatus",
    "WorkerRecord",
    "WorkerState",
    "decode_command",
    "encode_command",
]
