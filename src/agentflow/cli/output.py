"""How list and show commands print: a table for people, JSON for scripts.

Every command that lists or shows something takes ``-o table|json`` (``--json`` is ``-o
json``) through :func:`output_options`, so they all behave the same. JSON is the API's own
object (its keys, full ids, its times), one document on stdout and nothing else there. A table
is drawn by rich on a terminal, where a narrow window may shorten a cell; when stdout is not a
terminal it is plain columns with every cell whole (full ids, nothing wrapped or cut, ``-`` for
an empty cell), so ``awk`` and ``cut`` can read it.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from agentflow.cli._app import fail

__all__ = ["Cell", "Format", "Output", "output_options"]

Cell = str | Text  # a str is shown as it is (never read as rich markup); a Text keeps its style
_GAP = "  "  # between plain columns
_EMPTY = "-"  # an empty plain cell, so that columns stay countable


class Format(enum.Enum):
    TABLE = "table"
    JSON = "json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """Where and how one command prints what it lists or shows."""

    format: Format
    tty: bool  # stdout is a terminal: rich tables; otherwise plain, whole cells

    @property
    def json(self) -> bool:
        return self.format is Format.JSON

    def document(self, data: Any) -> None:
        """``data`` (the API's objects) as one JSON document on stdout."""
        click.echo(json.dumps(data, indent=2))

    def line(self, text: Cell) -> None:
        """One line of text above or below a table (styled on a terminal only)."""
        if self.tty:
            Console().print(text if isinstance(text, Text) else Text(text))
        else:
            click.echo(_plain(text))

    def table(
        self,
        headers: Sequence[str] | None,
        rows: Sequence[Sequence[Cell]],
        *,
        whole: Collection[int] = (),
    ) -> None:
        """Rows under ``headers`` (None: a key/value list without a header line). The columns
        in ``whole`` (ids, states) are never wrapped on a terminal: others give way first."""
        if not self.tty:
            for text in plain_table(headers, rows):
                click.echo(text)
            return
        if headers is None:
            table = Table(show_header=False, box=None)
            for _ in range(max((len(r) for r in rows), default=0)):
                table.add_column()
        else:
            table = Table(*(Column(h, no_wrap=i in whole) for i, h in enumerate(headers)))
        for row in rows:
            table.add_row(*(c if isinstance(c, Text) else Text(c) for c in row))
        Console().print(table)


def _plain(cell: Cell) -> str:
    text = cell.plain if isinstance(cell, Text) else cell
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def plain_table(headers: Sequence[str] | None, rows: Sequence[Sequence[Cell]]) -> list[str]:
    """Aligned columns, every cell whole, ``-`` for an empty one, no trailing spaces."""
    grid = [list(headers)] if headers is not None else []
    grid += [[_plain(c) or _EMPTY for c in row] for row in rows]
    if not grid:
        return []
    widths = [max(len(r[i]) for r in grid if i < len(r)) for i in range(max(map(len, grid)))]
    return [_GAP.join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in grid]


def output_options(fn: Any) -> Any:
    """Adds ``-o/--output table|json`` and ``--json`` to a command; it receives ``out``, an
    :class:`Output`."""

    @functools.wraps(fn)
    def command(*args: Any, output_format: str, json_flag: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        chosen = ctx.get_parameter_source("output_format") is click.core.ParameterSource.COMMANDLINE
        if json_flag and chosen and output_format != Format.JSON.value:
            fail(f"--json and -o {output_format} disagree; give one")
        kind = Format.JSON if json_flag else Format(output_format)
        return fn(*args, out=Output(format=kind, tty=sys.stdout.isatty()), **kwargs)

    command = click.option("--json", "json_flag", is_flag=True, help="The same as -o json.")(
        command
    )
    return click.option(
        "-o",
        "--output",
        "output_format",
        type=click.Choice([f.value for f in Format]),
        default=Format.TABLE.value,
        show_default=True,
        help="table for people; json (the API's objects, full ids) for scripts.",
    )(command)
