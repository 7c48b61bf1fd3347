"""Apply one mutant as a source mutation, through an import hook, before anything imports it.

The file on disk is never touched: a meta-path finder serves the target module from its
source with the mutant's exact snippet replaced. A snippet that does not occur exactly once
is refused (the code moved on: the catalogue must follow), and so is a target module that
is already imported (the mutation would silently not apply).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from pathlib import Path

from agentflow.testing.mutants._catalogue import Mutant

__all__ = ["MutantRefusedError", "MutationFinder", "install", "mutated_source", "source_path"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # .../src/agentflow


class MutantRefusedError(Exception):
    """The mutant cannot be applied as written: its snippet or its module does not fit."""


def source_path(mutant: Mutant) -> Path:
    return _PACKAGE_ROOT / mutant.file


def mutated_source(mutant: Mutant) -> str:
    """The target file's text with the one snippet replaced; refused unless it is unique."""
    path = source_path(mutant)
    if not path.is_file():
        raise MutantRefusedError(f"mutant {mutant.name}: no file agentflow/{mutant.file}")
    text = path.read_text(encoding="utf-8")
    found = text.count(mutant.old)
    if found != 1:
        raise MutantRefusedError(
            f"mutant {mutant.name}: its snippet occurs {found} times in agentflow/{mutant.file} "
            "(expected exactly once: update the catalogue)"
        )
    return text.replace(mutant.old, mutant.new)


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, finder: MutationFinder, source: str, path: Path) -> None:
        self._finder = finder
        self._source = source
        self._path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        code = compile(self._source, str(self._path), "exec", dont_inherit=True)
        self._finder.loaded = True
        exec(code, module.__dict__)  # the catalogue's mutation of our own source


class MutationFinder(importlib.abc.MetaPathFinder):
    """Serves the mutant's module from the mutated source; every other import is untouched."""

    def __init__(self, mutant: Mutant) -> None:
        self.mutant = mutant
        self.module = mutant.module
        self.loaded = False
        self._source = mutated_source(mutant)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        where = source_path(self.mutant)
        loader = _MutantLoader(self, self._source, where)
        return importlib.util.spec_from_file_location(fullname, where, loader=loader)


def install(mutant: Mutant) -> MutationFinder:
    """Put the mutant's finder first on the meta path; its module must not be imported yet."""
    if mutant.module in sys.modules:
        raise MutantRefusedError(
            f"mutant {mutant.name}: {mutant.module} is already imported; the mutation would "
            "not apply (install the hook in a fresh process)"
        )
    finder = MutationFinder(mutant)
    sys.meta_path.insert(0, finder)
    return finder
