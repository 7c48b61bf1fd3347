"""The shared output of list and show commands (cli/output.py) and the link of a cluster
member as one master judges it (cluster/status.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.text import Text

from agentflow.cli import main
from agentflow.cli.output import Format, Output, plain_table
from agentflow.cluster.status import _link

LISTINGS = [
    ("tasks",),
    ("status",),
    ("workers",),
    ("queue",),
    ("workflow", "status"),
    ("workflow", "list"),
    ("lock", "list"),
    ("lock", "show"),
    ("lock", "acquire"),
    ("agent", "list"),
    ("cluster", "status"),
    ("token", "list"),
]


@pytest.mark.parametrize("path", LISTINGS, ids=" ".join)
def test_every_list_and_show_command_takes_output_and_json(path: tuple[str, ...]) -> None:
    command: Any = main
    ctx = click.Context(main)
    for name in path:
        command = command.get_command(ctx, name)
    flags = {opt for p in command.params for opt in p.opts}
    assert {"-o", "--output", "--json"} <= flags


def test_json_and_a_table_asked_together_are_refused_before_any_request() -> None:
    result = CliRunner().invoke(
        main, ["tasks", "-o", "table", "--json", "--master-url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert result.output == "error: --json and -o table disagree; give one\n"


def test_a_plain_table_keeps_every_cell_whole_and_countable() -> None:
    lines = plain_table(
        ("id", "worker", "reason"),
        [["t-0123456789abcdef", "", "two\nlines"], ["t-1", Text("w1", style="red"), "x"]],
    )
    assert lines == [
        "id                  worker  reason",
        "t-0123456789abcdef  -       two lines",
        "t-1                 w1      x",
    ]
    assert plain_table(None, [["queued", "3"], ["oldest wait", "1.0s"]]) == [
        "queued       3",
        "oldest wait  1.0s",
    ]


def test_a_terminal_table_shows_text_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    Output(format=Format.TABLE, tty=True).table(("title",), [["[bold]not markup[/]"]])
    assert "[bold]not markup[/]" in capsys.readouterr().out


def _node(*, me: str, leader: str | None, connected: set[str]) -> Any:
    return SimpleNamespace(
        config=SimpleNamespace(node_id=me),
        transport=SimpleNamespace(connected=lambda nid: nid in connected),
        is_leader=leader == me,
        leader_id=leader,
    )


def test_the_leader_calls_a_silent_member_down() -> None:
    leader = _node(me="m1", leader="m1", connected={"m2", "m3"})
    assert _link(leader, "m1", None, 0.7) == "self"
    assert _link(leader, "m2", 0.1, 0.7) == "up"
    assert _link(leader, "m3", 2.0, 0.7) == "down"  # connected, but it stopped answering
    assert _link(_node(me="m1", leader="m1", connected=set()), "m2", 0.1, 0.7) == "down"


def test_a_follower_judges_the_leader_but_cannot_tell_for_other_followers() -> None:
    follower = _node(me="m2", leader="m1", connected={"m1", "m3"})
    assert _link(follower, "m1", 0.1, 0.7) == "up"
    assert _link(follower, "m1", 5.0, 0.7) == "down"
    assert _link(follower, "m3", None, 0.7) == "unknown"
    assert _link(follower, "m3", 0.2, 0.7) == "up"


def test_cluster_status_on_a_sql_store_names_it_and_what_its_settings_risk(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agentflow.cli.cluster import _show

    status: dict[str, Any] = {
        "node_id": "m1", "leader_id": "m1", "leader_url": "http://m1", "term": 3,
        "commit_index": 9, "members": [], "store": "postgresql://af@db/af",
        "store_warning": "fsync is off: a commit may be lost when the host crashes",
    }  # fmt: skip
    _show(status, Output(format=Format.TABLE, tty=False))
    said = capsys.readouterr().out
    assert "store postgresql://af@db/af: may lose commits: fsync is off" in said
    _show(status | {"store_warning": None}, Output(format=Format.TABLE, tty=False))
    said = capsys.readouterr().out
    assert "store postgresql://af@db/af\n" in said and "may lose" not in said
