"""The code blocks of the Markdown docs, and which of them a test runs.

A block is checked when the line just before its opening fence is one of these comments:

- ``<!-- run -->`` runs it, by its language: ``console`` runs each ``$ `` line in a shell (the
  lines under a command are output it must print; see :mod:`tests.docs.session`), ``python``
  runs the snippet as a script (a ``print(...)  # TEXT`` line must print TEXT, ``...``
  matching anything), ``yaml`` submits it to ``POST /api/v1/workflows/validate``.
- ``<!-- file: PATH -->`` writes the block to ``PATH`` (relative to the session's directory)
  for later blocks to use; where the repository has a file at ``PATH`` (``examples/...``), the
  block must be exactly that file's content.

Blocks without a marker are illustrations and are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- (?:(run)|(file): (\S+)) -->$")
LOOKS_LIKE_MARKER = re.compile(r"^<!--\s*(run|file)\b")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")

__all__ = ["ROOT", "Block", "blocks", "doc_files"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    action: str | None  # "run", "file" or None (not checked)
    target: str | None  # the file's path for "file"
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every page under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of ``path``, in order, with its marker if it has one."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2)
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path}:{i + 1}: code block never closed")
        before = lines[i - 1] if i else ""
        marker = MARKER.match(before)
        assert marker or not LOOKS_LIKE_MARKER.match(before), (
            f"{path}:{i}: write `<!-- run -->` or `<!-- file: PATH -->`, not {before!r}"
        )
        text = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(
            Block(
                path=path,
                line=i + 1,
                lang=lang,
                action=(marker.group(1) or marker.group(2)) if marker else None,
                target=marker.group(3) if marker else None,
                text=text,
            )
        )
        i = end + 1
    return found
