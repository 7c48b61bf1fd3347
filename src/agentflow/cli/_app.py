"""The click group and its error handling: one line on stderr and an exit code, never a
traceback."""

from __future__ import annotations

import importlib
import os
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
    "events": "agentflow.cli.events:events",
    "workers": "agentflow.cli.tasks:workers",
    "queue": "agentflow.cli.tasks:queue",
    "cluster": "agentflow.cli.cluster:cluster",
    "workflow": "agentflow.cli.workflow:workflow",
    "lock": "agentflow.cli.lock:lock",
    "msg": "agentflow.cli.msg:msg",
    "token": "agentflow.cli.token:token",
    "schedule": "agentflow.cli.schedule:schedule",
    "agent": "agentflow.cli.msg:agent",
    "config": "agentflow.cli.config:config",
    "top": "agentflow.cli.top:top",
    "diff": "agentflow.cli.diff:diff",
}


def _one_line(exc: click.ClickException) -> str:
    """A usage error as one line that names the command to ask for help."""
    message = exc.format_message()
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        words = exc.ctx.command_path.split()
        if len(words) > 1 and words[0] == f"agentflow-{words[1]}":
            del words[1]  # `agentflow-master`, not `agentflow-master master`
        return f"{message} (see '{' '.join(words)} --help')"
    return message


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (`agentflow tasks | head`): stop without a word, as a
    C tool killed by SIGPIPE would; stdout is pointed at /dev/null so the flush at exit
    cannot fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


class AgentFlowGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Every error, click's usage errors included, is one line on stderr and an exit
        code; bare help (`agentflow lock`) is still help."""
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            if exc.ctx is not None:
                click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            _quiet_broken_pipe()
        sys.exit(result if isinstance(result, int) else 0)

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
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            _quiet_broken_pipe()
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
