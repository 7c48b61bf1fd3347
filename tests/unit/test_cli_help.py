"""What `--help` shows, for every command: each option's environment variable, and text
written for a terminal (no reStructuredText markup)."""

from __future__ import annotations

from collections.abc import Iterator

import click

from agentflow.cli._app import main


def _commands(group: click.Group, ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{ctx.command_path} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, info_name=path, parent=ctx))


def _all() -> list[tuple[str, click.Command]]:
    root = click.Context(main, info_name="agentflow")
    return list(_commands(main, root))


def test_every_option_read_from_the_environment_says_so_in_help() -> None:
    hidden = [
        f"{path} {option.opts[0]}"
        for path, command in _all()
        for option in command.params
        if isinstance(option, click.Option) and option.envvar and not option.show_envvar
    ]
    assert hidden == []


def test_no_help_text_carries_rst_markup() -> None:
    marked = []
    for path, command in _all():
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        marked += [path for text in texts if "``" in text]
    assert marked == []
