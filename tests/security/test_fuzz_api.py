"""The served OpenAPI document, fuzzed against a real master (bounded; ``make fuzz`` runs long).

``AGENTFLOW_FUZZ_EXAMPLES`` sets the cases per operation and generation mode (default 8 here).
"""

from __future__ import annotations

import os

import httpx
import pytest

from tests.e2e.procs import Processes
from tests.security.fuzz_api import fuzz

TOKEN = "fuzz-admin-token"


@pytest.mark.slow
def test_the_declared_api_survives_generated_requests(procs: Processes) -> None:
    _proc, url = procs.master("m1", None, "--api-token", TOKEN)
    examples = int(os.environ.get("AGENTFLOW_FUZZ_EXAMPLES", "8"))
    seed = int(os.environ.get("AGENTFLOW_FUZZ_SEED", "0"))
    report = fuzz(url, TOKEN, examples, seed)
    print(report.line())
    for failure in report.distinct()[:40]:
        print("  ", failure)
    assert report.operations > 0 and report.cases > 0, report.line()
    assert not report.failures, "\n".join([report.line(), *report.distinct()[:40]])
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200, health.text
