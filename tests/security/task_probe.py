"""Run as a task: what its environment holds and what its token may do, written as JSON.

``python task_probe.py OUT`` — each probe is one request with the task's own token
(``$AGENTFLOW_API_TOKEN``, as the SDK would use it).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx

url = os.environ["AGENTFLOW_URL"]
task_id = os.environ["AGENTFLOW_TASK_ID"]
fencing = int(os.environ["AGENTFLOW_FENCING_TOKEN"])
http = httpx.Client(
    base_url=url,
    headers={"Authorization": f"Bearer {os.environ.get('AGENTFLOW_API_TOKEN', '')}"},
    timeout=10,
)


def probe(method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = http.request(method, path, json=body)
    return {"status": response.status_code, "body": response.json() if response.content else None}


note = {"type": "note", "content": {"n": 1}}
child = probe("POST", "/api/v1/tasks", {"command": "true"})
results = {
    "env": dict(os.environ),
    "own_lock": probe(
        "POST", "/api/v1/locks/job/acquire", {"task_id": task_id, "task_token": fencing}
    ),
    "default_lock": probe("POST", "/api/v1/locks/job2/acquire", {"ttl_s": 30}),
    "named_session_lock": probe("POST", "/api/v1/locks/job3/acquire", {"session": "boss"}),
    "other_task_lock": probe(
        "POST", "/api/v1/locks/job4/acquire", {"task_id": "t-other", "task_token": 1}
    ),
    "send": probe("POST", "/api/v1/messages", {"to": "observer", **note}),
    "send_as_self": probe("POST", "/api/v1/messages", {"to": "observer", "from": task_id, **note}),
    "send_as_other": probe("POST", "/api/v1/messages", {"to": "observer", "from": "boss", **note}),
    "batch_as_other": probe(
        "POST", "/api/v1/messages/batch", {"messages": [{"to": "x", "from": "boss", **note}]}
    ),
    "own_inbox": probe("GET", f"/api/v1/agents/{task_id}/inbox"),
    "other_inbox": probe("GET", "/api/v1/agents/boss/inbox"),
    "child_inbox": probe("GET", f"/api/v1/agents/{child['body']['id']}/inbox"),
    "own_task": probe("GET", f"/api/v1/tasks/{task_id}"),
    "child": child,
    "tokens": probe("GET", "/api/v1/tokens"),
    "make_token": probe("POST", "/api/v1/tokens", {"role": "client"}),
    "drain": probe("PATCH", "/api/v1/workers/w1", {"state": "draining"}),
    "force_release": probe("POST", "/api/v1/locks/job/force-release", {}),
    "history": probe("GET", "/api/v1/messages"),
}
with open(sys.argv[1], "w") as fh:
    json.dump(results, fh)
