"""What this code writes while a member of the previous release is in the cluster, read by
that release's own code (its source from git, the same venv): log entries of format 1, the
state image with its format header, and the peer hello that advertises the formats read.

Without git history (an exported tree, a shallow clone) there is no previous release to run:
the test is skipped, and the fixtures of tests/unit/test_upgrade_formats.py still hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from agentflow.cluster.image import Image
from agentflow.cluster.versions import advertised_formats
from agentflow.state import StateMachine, encode_command
from agentflow.state.commands import ConnectAgent, NewTask, SubmitTasks
from agentflow.state.envelope import LOG_FORMAT_LEGACY
from tests.e2e.previous_release import previous_release

pytestmark = pytest.mark.raft_only  # the previous release reads Raft entries and peer hellos

READER = """
import importlib.util, json, sys
assert importlib.util.find_spec("agentflow.state.envelope") is None, "not the previous release"
from agentflow.cluster.image import Image, restore_error
from agentflow.cluster.peerwire import decode_hello
from agentflow.state import StateMachine
doc = json.load(sys.stdin)
sm = StateMachine()
for i, data in enumerate(doc["entries"], start=1):
    result = sm.apply_entry(i, bytes.fromhex(data))
    assert not isinstance(result, Exception), result
image = bytes.fromhex(doc["image"])
assert restore_error(image, StateMachine()) is None
restored = StateMachine()
restored.restore(Image.unpack(image).machine)
hello = decode_hello(bytes.fromhex(doc["hello"]))
print(json.dumps({"digest": sm.digest(), "restored": restored.digest(),
                  "rejected": sm.rejected.total, "hello_version": hello.version}))
"""


def test_the_previous_release_reads_what_this_code_writes_for_it(tmp_path: Path) -> None:
    old = previous_release(tmp_path / "previous")
    if old is None:
        pytest.skip("no git history: the release before format versions cannot be checked out")
    task = NewTask(id="t1", title="t1", description="echo hi", spec={"command": "echo hi"})
    commands = [
        SubmitTasks(now_ms=1000, tasks=[task]),
        ConnectAgent(now_ms=1001, agent_id="a", ttl_ms=60_000),
    ]
    entries = [encode_command(c, LOG_FORMAT_LEGACY) for c in commands]
    sm = StateMachine()
    for i, data in enumerate(entries, start=1):
        sm.apply_entry(i, data)
    image = Image.fresh("m1", "127.0.0.1:1", "http://127.0.0.1:2", {})
    image.index, image.machine = 2, sm.snapshot()
    hello = msgpack.packb(
        {
            "k": "hello",
            "v": 2,
            "cluster": "agentflow",
            "from": "m1",
            "to": "m2",
            "nonce": b"\0" * 16,
            "info": {"api_url": "http://127.0.0.1:2", **advertised_formats()},
        },
        use_bin_type=True,
    )
    doc = {"entries": [e.hex() for e in entries], "image": image.pack().hex(), "hello": hello.hex()}
    env = {**os.environ, "PYTHONPATH": str(old)}
    done = subprocess.run(
        [sys.executable, "-c", READER],
        input=json.dumps(doc),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "digest": sm.digest(),
        "restored": sm.digest(),
        "rejected": 0,
        "hello_version": 2,
    }
