"""A stand-in for a coding agent's command line, so that examples/demo.yaml runs offline.

``agentflow run examples/demo.yaml`` gives its local workers the template of the file's
``agents:`` section, ``python ./standin_agent.py {prompt}``; ``--agent coder='claude -p
{prompt}'`` puts a real agent in its place, reading the same prompts. No model is reachable
here, so this script acts out what its step's prompt asks, with the agentflow SDK, as an agent
would with the ``agentflow`` commands the prompt names. What it does follows from what it is
given:

- no parents (the planner): find the team (the steps after this one) and write the plan as
  this step's result ($AGENTFLOW_OUTPUT_FILE);
- a plan from its parent (an agent): tell the other agents what it works on (messages to
  their task ids), take the plan's lock, append one line to the shared notes with the lock's
  fencing token, release it, read what the others said, and hand off to the reviewer;
- the agents' results (the reviewer): read their hand-offs and the notes, check that the
  fencing tokens rose turn by turn, and show that a late write with an old token is refused.

``STANDIN_FAIL_ATTEMPTS=N`` in a step's env makes its first N attempts crash while holding the
lock: the master releases a lock when the attempt holding it ends, and the step is retried.
Only the Python standard library and the agentflow SDK are used.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentflow.client import Agent, Client, FencedFile, Message
from agentflow.errors import StaleTokenError

WORK_S = 0.15  # how long an agent "works" while it holds the lock, so turns are visible
HEAR_WAIT_S = 10.0  # how long an agent waits to hear from every other agent
PROMPT_SHOWN = 60  # characters of the prompt echoed
PARTS = {
    "api": "an /api/theme endpoint that stores each user's theme",
    "ui": "a dark-mode toggle in the settings page, calling /api/theme",
    "docs": "a page on choosing a theme, with a screenshot of the toggle",
}


def say(line: str) -> None:
    print(line, flush=True)  # the live view shows each line as it comes


def write_result(value: dict[str, Any]) -> None:
    Path(os.environ["AGENTFLOW_OUTPUT_FILE"]).write_text(json.dumps(value))


def parents() -> list[dict[str, Any]]:
    path = os.environ.get("AGENTFLOW_PARENTS_FILE")
    return json.loads(Path(path).read_text()) if path else []


def result_of(parent: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(parent.get("result") or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def plan(client: Client, task_id: str) -> None:
    """The planner: one part per step after this one, a lock and a file they share."""
    me = client.request("GET", f"/api/v1/tasks/{task_id}")
    workflow = client.workflow(me["workflow_id"])
    tasks = workflow["tasks"]
    team = [t for t in tasks if me["key"] in t["dependencies"]]
    keys = [t["key"] for t in team]
    reviewer = next(t for t in tasks if set(keys) & set(t["dependencies"]))
    say(f"planning {workflow['name']} for {len(team)} agents: {', '.join(keys)}")
    notes = Path(tempfile.mkdtemp(prefix="agentflow-demo-")) / "NOTES.md"
    agents = {}
    for n, t in enumerate(team, 1):
        part = PARTS.get(t["key"], f"part {n} of {workflow['name']}")
        agents[t["key"]] = {"task": t["id"], "part": part}
        say(f"  {t['key']}: {part}")
    write_result(
        {
            "feature": workflow["name"],
            "lock": f"{workflow['id']}/notes",
            "shared_file": str(notes),
            "agents": agents,
            "reviewer": {"key": reviewer["key"], "task": reviewer["id"]},
        }
    )
    say(f"plan written: {len(agents)} parts, for {', '.join(agents)}")


def greet(agent: Agent, me: str, the_plan: dict[str, Any]) -> dict[str, str]:
    """Tell every other agent what this one works on; returns their task ids by step name."""
    others = {k: a["task"] for k, a in the_plan["agents"].items() if k != me}
    note = {"step": me, "part": the_plan["agents"][me]["part"]}
    for task in others.values():
        # The same id on a retried attempt: the message is delivered once.
        agent.send(task, "StatusUpdate", note, id=f"{agent.id}-to-{task}")
    say(f"told {', '.join(others)} what it works on ({len(others)} messages)")
    return others


def take_turn(client: Client, me: str, the_plan: dict[str, Any], attempt: int) -> int:
    """Append this agent's line to the shared notes while holding the lock; returns its token."""
    notes = FencedFile(the_plan["shared_file"])
    asked = time.monotonic()
    with client.lock(the_plan["lock"], wait_s=30.0, ttl_s=10.0) as lease:
        waited = time.monotonic() - asked
        say(f"took lock {the_plan['lock']} with fencing token {lease.token} (waited {waited:.1f}s)")
        if attempt <= int(os.environ.get("STANDIN_FAIL_ATTEMPTS", "0")):
            say(f"attempt {attempt} crashes while holding the lock (STANDIN_FAIL_ATTEMPTS)")
            os._exit(1)  # no release: the master frees the lock when the attempt ends
        time.sleep(WORK_S)
        part = the_plan["agents"][me]["part"]
        notes.append(lease.token, f"[token {lease.token}] {me}: {part}\n")
        token = lease.token
    say(f"wrote its line to NOTES.md with token {token} and released the lock")
    return token


def listen(agent: Agent, others: dict[str, str]) -> list[str]:
    """Read the inbox until every other agent was heard from (or the wait runs out)."""
    heard: dict[str, Message] = {}
    deadline = time.monotonic() + HEAR_WAIT_S
    while len(heard) < len(others) and (left := deadline - time.monotonic()) > 0:
        batch = agent.receive(wait_s=min(left, 1.0))
        for message in batch:
            if message.type == "StatusUpdate":
                heard.setdefault(message.content["step"], message)
        if batch:
            agent.ack(batch[-1])
    for key, message in sorted(heard.items()):
        say(f"heard from {key}: {message.content['part']}")
    missing = sorted(set(others) - set(heard))
    if missing:
        say(f"no word from {', '.join(missing)}")
    return sorted(heard)


def work(client: Client, task_id: str, the_plan: dict[str, Any]) -> None:
    """An agent: its part of the plan, in turn with the others."""
    me = next(k for k, a in the_plan["agents"].items() if a["task"] == task_id)
    attempt = int(os.environ.get("AGENTFLOW_ATTEMPT", "1"))
    say(f"attempt {attempt}: my part is {the_plan['agents'][me]['part']}")
    with client.agent() as agent:
        others = greet(agent, me, the_plan)
        token = take_turn(client, me, the_plan, attempt)
        heard = listen(agent, others)
        summary = {"step": me, "token": token, "heard_from": heard}
        reviewer = the_plan["reviewer"]["task"]
        agent.send(reviewer, "TaskResponse", summary, id=f"{task_id}-handoff")
    write_result({**summary, "shared_file": the_plan["shared_file"]})
    say(f"handed off to {the_plan['reviewer']['key']}: token {token}, heard from {len(heard)}")


def review(client: Client, results: list[dict[str, Any]]) -> None:
    """The join: the agents' hand-offs, their notes in turn, and fencing at work."""
    with client.agent() as agent:
        handoffs = [m for m in agent.receive(wait_s=1.0) if m.type == "TaskResponse"]
    say(f"hand-offs received: {', '.join(sorted(m.content['step'] for m in handoffs))}")
    notes = FencedFile(results[0]["shared_file"])
    lines = notes.path.read_text().splitlines()
    say("NOTES.md, written in turn:")
    for line in lines:
        say(f"  {line}")
    tokens = [int(line.split("]")[0].removeprefix("[token ")) for line in lines]
    rising = all(a < b for a, b in itertools.pairwise(tokens))
    say(f"fencing tokens {' < '.join(map(str, tokens))}: {'rose' if rising else 'DID NOT rise'}")
    try:
        notes.append(tokens[0], "a late write with the first token\n")
        say(f"a late write with token {tokens[0]} was accepted (it should not have been)")
    except StaleTokenError as exc:
        say(f"a late write with token {tokens[0]} is refused: {exc}")
    shutil.rmtree(notes.path.parent, ignore_errors=True)
    messages = sum(len(r["heard_from"]) for r in results) + len(handoffs)
    write_result({"approved": rising, "parts": len(results), "messages": messages})
    verdict = "approved" if rising and len(handoffs) == len(results) else "NOT approved"
    say(f"{verdict}: {len(results)} parts, {messages} messages between the agents")


def main() -> int:
    prompt = sys.argv[1] if len(sys.argv) > 1 else ""
    task_id = os.environ["AGENTFLOW_TASK_ID"]
    gist = " ".join(prompt.split())
    say(
        f"stand-in agent, prompt: {gist[:PROMPT_SHOWN] + ('…' if len(gist) > PROMPT_SHOWN else '')}"
    )
    results = [result_of(p) for p in parents()]
    with Client() as client:
        if not results:
            plan(client, task_id)
        elif "agents" in results[0]:
            work(client, task_id, results[0])
        else:
            review(client, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
