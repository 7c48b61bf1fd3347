"""What a chaos task runs on a worker: two fenced writes to the storage host around a sleep.

``python -m agentflow.testing.chaos.taskbody --storage URL --rule RULE``, with the worker's
AGENTFLOW_TASK_ID, AGENTFLOW_ATTEMPT and AGENTFLOW_FENCING_TOKEN. The attempt writes ``start``
to stream ``task:<task id>`` as writer ``<task id>/<attempt>`` with its fencing token, sleeps,
and writes ``end``. The rule says how the attempt ends:

- ``ok``: exit 0;
- ``fail-once``: exit 1 (after ``start``, without ``end``) on attempt 1, then like ``ok``;
- ``fail-always``: exit 1 (after ``start``, without ``end``) on every attempt;
- ``slow``: like ``ok`` with a sleep of 3-6 s, so that faults catch it running.

A write that got no answer is sent again until WRITE_DEADLINE_S has passed: the first may have
landed, so the same write can appear twice in the records (the checkers allow it).

Exit codes: 0 the ``end`` was accepted; 1 the rule failed the attempt; 2 bad usage (no task
environment); 3 fenced off (the storage host refused a write: a newer attempt has written);
4 the storage host did not answer in time.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from agentflow.testing.chaos.storage import StorageClient

__all__ = [
    "EXIT_FENCED",
    "EXIT_OK",
    "EXIT_RULE",
    "EXIT_UNANSWERED",
    "EXIT_USAGE",
    "RULES",
    "main",
]

RULES = ("ok", "fail-once", "fail-always", "slow")
EXIT_OK = 0
EXIT_RULE = 1
EXIT_USAGE = 2
EXIT_FENCED = 3
EXIT_UNANSWERED = 4
WRITE_DEADLINE_S = 20.0  # how long one write is retried while the storage host is unreachable
RETRY_PAUSE_S = 0.2
SHORT_SLEEP_S = (0.05, 0.3)
SLOW_SLEEP_S = (3.0, 6.0)  # past the 3 s loss timeout: a cut-off worker's body outlives it


class _UnansweredError(Exception):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class _Attempt:
    storage: StorageClient
    stream: str
    writer: str
    token: int
    deadline_s: float

    def write(self, event: str) -> bool:
        """Whether the host accepted ``event``; retried while unanswered, up to the deadline."""
        deadline = time.monotonic() + self.deadline_s
        while True:
            try:
                answer = self.storage.write(self.stream, self.writer, self.token, event)
                return bool(answer["accepted"])
            except httpx.TransportError as exc:  # no answer; a 4xx is a bug: it propagates
                if time.monotonic() + RETRY_PAUSE_S >= deadline:
                    raise _UnansweredError(str(exc)) from exc
                time.sleep(RETRY_PAUSE_S)


def run(
    storage_url: str, rule: str, env: Mapping[str, str], deadline_s: float = WRITE_DEADLINE_S
) -> int:
    """One attempt by ``rule``, given the task's environment; the exit code."""
    task_id = env.get("AGENTFLOW_TASK_ID", "")
    attempt = env.get("AGENTFLOW_ATTEMPT", "")
    token = env.get("AGENTFLOW_FENCING_TOKEN", "")
    if not task_id or not attempt.isdigit() or not token.isdigit():
        print("taskbody: no task environment (AGENTFLOW_TASK_ID, ...)", file=sys.stderr)
        return EXIT_USAGE
    rng = random.Random(f"{task_id}/{attempt}")
    pause = SLOW_SLEEP_S if rule == "slow" else SHORT_SLEEP_S
    with StorageClient(storage_url) as storage:
        me = _Attempt(
            storage=storage,
            stream=f"task:{task_id}",
            writer=f"{task_id}/{attempt}",
            token=int(token),
            deadline_s=deadline_s,
        )
        try:
            if not me.write("start"):
                return EXIT_FENCED
            time.sleep(rng.uniform(*pause))
            if rule == "fail-always" or (rule == "fail-once" and attempt == "1"):
                return EXIT_RULE
            if not me.write("end"):
                return EXIT_FENCED
        except _UnansweredError as exc:
            print(f"taskbody: storage host did not answer: {exc}", file=sys.stderr)
            return EXIT_UNANSWERED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentflow.testing.chaos.taskbody")
    parser.add_argument("--storage", required=True, help="the storage host's URL")
    parser.add_argument("--rule", choices=RULES, default="ok")
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=WRITE_DEADLINE_S,
        help="how long one write is retried while the storage host does not answer",
    )
    args = parser.parse_args(argv)
    return run(args.storage, args.rule, os.environ, args.deadline_s)


if __name__ == "__main__":
    raise SystemExit(main())
