"""The click group and its error handling: one line on stderr and an exit code, never a
traceback."""

from __future__ import annotations

import sys
from typing import Any

import click

from agentflow._version import __version__
from agentflow.errors import AgentFlowError

__all__ = ["AgentFlowGroup", "fail", "main"]


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class AgentFlowGroup(click.Group):
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
        except OSError as exc:
            fail(str(exc), 1)


@click.group(cls=AgentFlowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentflow")
def main() -> None:
    """AgentFlow: run work across many machines, coordinated by replicated masters."""
