"""Options for the Raft tests: ``--rewrite`` regenerates scenario expectations."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite tests/raft/testdata/*.txt with the output the core produces now",
    )
