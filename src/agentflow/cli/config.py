"""The settings' click options, and ``agentflow config show``: the effective configuration of a
master or a worker and where each value came from."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from agentflow.cli.output import Output, output_options
from agentflow.settings import ROLES, Role, Setting
from agentflow.sources import Layered, default_of, layer, read_config_file, settings_for, show_value

__all__ = ["SettingOption", "config", "load_settings", "setting_options"]

_F = TypeVar("_F", bound=Callable[..., Any])

CONFIG_ENV = "AGENTFLOW_CONFIG"
_METAVARS = {
    "int": "INTEGER",
    "duration": "DURATION",
    "size": "SIZE",
    "path": "PATH",
    "file": "FILE",
    "list": "LIST",
    "pairs": "NAME=VALUE",
}
_MASK = "********"


class SettingOption(click.Option):
    """An option that shows its environment variable in ``--help`` but leaves reading it to
    :func:`agentflow.sources.layer`, which knows the older names too and says where a value
    came from."""

    def __init__(self, *args: Any, default_text: str = "", **attrs: Any) -> None:
        super().__init__(*args, **attrs)
        self.default_text = default_text  # the default as a person writes it: 10s, 16M

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        return None

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.default_text:
            extra["default"] = self.default_text
        return extra


def setting_options(role: Role) -> Callable[[_F], _F]:
    """Decorate a command with ``--config`` and one option per setting of ``role``."""

    def decorate(command: _F) -> _F:
        for s in reversed(settings_for(role)):
            command = _option(s, role)(command)
        return click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            envvar=CONFIG_ENV,
            show_envvar=True,
            help=f"TOML file with a [{role}] table of settings.",
        )(command)

    return decorate


def _option(s: Setting, role: Role) -> Callable[[_F], _F]:
    default = s.default_text or show_value(s, default_of(s, role))
    return click.option(
        s.flag,
        s.field,
        cls=SettingOption,
        is_flag=s.kind == "bool",
        default=None,
        multiple=s.repeatable,
        metavar=_METAVARS.get(s.kind),
        envvar=s.envvar,
        show_envvar=True,
        default_text="" if default in ("-", "false") else default,
        help=s.help,
    )


def load_settings(role: Role, config_file: str | None, flags: dict[str, Any]) -> Layered:
    """The role's settings from ``flags`` (by field), the environment and ``config_file``."""
    file = read_config_file(config_file, role)
    return layer(role, flags, file=file, file_name=str(config_file or ""))


@click.group("config")
def config() -> None:
    """Inspect the configuration of a master or a worker."""


@config.command("show", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="master",
    show_default=True,
    help="The command whose configuration to show.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="The TOML file the role would be started with.",
)
@output_options
@click.pass_context
def show(ctx: click.Context, role: Role, config_file: str | None, out: Output) -> None:
    """Print the configuration `agentflow ROLE` would run with, given the same flags (any of
    the role's), environment and --config file, and where each value came from: default,
    file:PATH, env VAR or flag --NAME. Tokens are masked; in JSON, durations are seconds
    and sizes bytes.

    \b
    agentflow config show --config agentflow.toml --port 7000
    agentflow config show --role worker --config agentflow.toml -o json
    """
    flags = _role_flags(ctx, role)
    layered = load_settings(role, config_file or flags.pop("config_file", None), flags)
    rows = [_row(s, layered) for s in settings_for(role)]
    if out.json:
        out.document(
            {
                "role": role,
                "config_file": config_file,
                "settings": {key: {"value": v, "source": src} for key, v, _, src in rows},
            }
        )
        return
    out.table(
        ["KEY", "VALUE", "SOURCE"], [(key, text, src) for key, _, text, src in rows], whole=(0,)
    )


def _role_flags(ctx: click.Context, role: Role) -> dict[str, Any]:
    """The role's flags among ``show``'s extra arguments, parsed by the role's own command."""
    from agentflow.cli.server import master_command, worker_command

    command = master_command if role == "master" else worker_command
    with command.make_context(role, list(ctx.args), parent=ctx) as sub:
        return dict(sub.params)


def _row(s: Setting, layered: Layered) -> tuple[str, Any, str, str]:
    """(key, value for JSON, value as text, source) of one setting."""
    given = s.key in layered.values
    value = layered.values[s.key] if given else default_of(s, layered.role)
    text = show_value(s, value)
    if s.secret and value:
        value = text = _MASK
    elif s.redact and value:
        value = text  # a URL, its password masked
    elif not given and s.default_text:
        text = s.default_text if text == "-" else f"{text} ({s.default_text})"
    return s.key, _jsonable(value), text, str(layered.origins[s.key])


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value
