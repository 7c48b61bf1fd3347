"""Runs every scenario in testdata/; ``--rewrite`` stores what the core produces now."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario import run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path, request: pytest.FixtureRequest) -> None:
    expected, actual = run_file(path)
    if request.config.getoption("--rewrite"):
        path.write_text(actual)
        return
    assert actual == expected
