"""The click group and its error handling: one line on stderr and an exit code, never a
traceback."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from agentflow._version import __version__
from agentflow.errors import AgentFlowError

__all__ = ["AgentFlowGroup", "fail", "main"]


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# Each command's module is imported only when that command runs, so `agentflow worker` does
# not pay for the API server, the SDK or YAML (a worker's memory stays small).
LAZY_COMMANDS: dict[str, str] = {
    "master": "agentflow.cli.server:master_command",
    "worker": "agentflow.cli.server:worker_command",
    "run": "agentflow.cli.local:run",
    "submit": "agentflow.cli.tasks:submit",
    "status": "agentflow.cli.tasks:status",
    "logs": "agentflow.cli.tasks:logs",
    "tasks": "agentflow.cli.tasks:tasks",
    "cancel": "agentflow.cli.tasks:cancel",
    "workers": "agentflow.cli.tasks:workers",
    "queue": "agentflow.cli.tasks:queue",
    "cluster": "agentflow.cli.cluster:cluster",
    "workflow": "agentflow.cli.workflow:workflow",
    "lock": "agentflow.cli.lock:lock",
    "msg": "agentflow.cli.msg:msg",
    "token": "agentflow.cli.token:token",
    "agent": "agentflow.cli.msg:agent",
}


class AgentFlowGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentFlowError as exc:
            fail(exc.detail, exc.exit_code)
        except click.BadParameter as exc:  # a bad value: one line, not the usage block
            fail(exc.format_message())
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except OSError as exc:
            fail(str(exc), 1)


@click.group(
    cls=AgentFlowGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,  # bare `agentflow` is a question, not a usage error
)
@click.version_option(__version__, prog_name="agentflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """AgentFlow: run work across many machines, coordinated by replicated masters.

    Durations (--timeout, --ttl, --wait, ...) take 90, 90s, 5m, 1h30m, 250ms or 1.5h.

    Shell completion: eval "$(_AGENTFLOW_COMPLETE=bash_source agentflow)" in ~/.bashrc
    (zsh_source, fish_source for those shells)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
