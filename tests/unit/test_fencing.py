"""The SDK's fencing helpers and the client-side view of a lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agentflow.client import FencedFile, FencedResource, Lease
from agentflow.errors import LeaseLostError, StaleTokenError


def test_fenced_resource_refuses_tokens_older_than_the_highest_seen() -> None:
    res = FencedResource()
    res.admit(5)
    res.admit(5)  # the same holder writes again
    with res.guard(9):
        pass
    with pytest.raises(StaleTokenError) as refused:
        res.admit(7)
    assert refused.value.extra == {"token": 7, "highest": 9}
    assert res.highest == 9


def test_fenced_file_keeps_the_highest_token_across_writers(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    FencedFile(path).append(3, "a\n")
    FencedFile(path).append(8, b"b\n")
    with pytest.raises(StaleTokenError):
        FencedFile(path).append(3, "late\n")
    assert path.read_text() == "a\nb\n"
    assert FencedFile(path).highest == 8


def test_a_lease_counts_as_lost_once_its_ttl_passes_without_a_renewal() -> None:
    seen: list[str] = []
    lease = Lease(
        name="x",
        token=4,
        session="s",
        mode="exclusive",
        ttl_s=0.05,
        holder={"session": "s"},
        valid_until=time.monotonic() + 0.05,
    )
    lease._on_lost.append(lambda lost: seen.append(lost.lost_reason or ""))
    assert not lease.lost
    lease.check()
    time.sleep(0.06)
    assert lease.lost
    with pytest.raises(LeaseLostError):
        lease.check()
    assert len(seen) == 1 and "within its 0.05s TTL" in seen[0]
