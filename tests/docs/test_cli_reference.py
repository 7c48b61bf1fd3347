"""docs/cli.md holds every command and option of `agentflow` as the commands define them."""

from __future__ import annotations

from tests.docs.cli_reference import CLI_DOC, MARKER, generated


def test_cli_reference_matches_the_commands() -> None:
    text = CLI_DOC.read_text()
    assert MARKER in text, f"{CLI_DOC} lost its marker line: {MARKER}"
    written = text.split(MARKER, 1)[1].strip()
    assert written == generated().strip(), (
        "docs/cli.md disagrees with the commands; run"
        " `.venv/bin/python -m tests.docs.cli_reference` and review the diff"
    )
