"""One generated predicate per dataclass: is every field of the type its annotation declares?

:mod:`agentflow.state.field_types` checks each field of each decoded entry; a checker per field
costs a Python call, a ``try`` and a ``getattr`` each, for every field of every task of a
batch. Here the whole class's check is written out as one expression per field and compiled
once (as :mod:`dataclasses` compiles ``__init__``), so an entry costs one call per dataclass
value. The predicate only answers yes or no; field_types' checkers then decide (a subclass of a
field's type is theirs to accept) and say where and why.

Its source is built from our own annotations only (names of builtins, the classes themselves
passed in as globals), never from data. The rules are field_types' rules, checker for checker.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["compile_predicate", "plain"]

# Exact types: what msgpack gives back. A subclass (which the checkers accept) answers False
# here and is then judged by the checkers: the predicate may say no too often, never yes.
_SCALARS: dict[Any, str] = {
    None: "{v} is None",
    type(None): "{v} is None",
    float: "type({v}) in _NUMBERS",
    int: "type({v}) is int",
    bool: "type({v}) is bool",
    str: "type({v}) is str",
    bytes: "type({v}) is bytes",
}
_GLOBALS: dict[str, Any] = {
    "_NUMBERS": frozenset({int, float}),
    "_SEQUENCES": frozenset({list, tuple}),
}
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_PLAIN_DEPTH = 32


def plain(v: Any, depth: int = 0) -> bool:
    """Is ``v`` made only of what msgpack gives back (exact scalars, lists, dicts)?"""
    t = type(v)
    if t in _PLAIN:
        return True
    if depth >= _PLAIN_DEPTH:
        return False
    if t is list:
        return all(plain(x, depth + 1) for x in v)
    if t is dict:
        return all(plain(k, depth + 1) and plain(x, depth + 1) for k, x in v.items())
    return False


class _Writer:
    """Writes the predicate of one class; nested dataclasses get their own, referenced."""

    def __init__(self, strict: bool) -> None:
        self.globals: dict[str, Any] = dict(_GLOBALS, _plain=plain)
        self._names: Iterator[int] = itertools.count()
        self._strict = strict

    def _sequence(self, origin: Any, v: str) -> str:
        if not self._strict:
            return f"type({v}) in _SEQUENCES"
        return f"type({v}) is {'list' if origin is list else 'tuple'}"

    def expression(self, hint: Any, v: str) -> str:
        if hint is Any:
            return f"_plain({v})" if self._strict else "True"
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            return "(" + " or ".join(self.expression(arg, v) for arg in args) + ")"
        if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            item = self._fresh("x")
            each = self.expression(args[0], item)
            every = "" if each == "True" else f" and (not {v} or all({each} for {item} in {v}))"
            return f"({self._sequence(origin, v)}{every})"
        if origin is tuple:
            parts = [self.expression(arg, f"{v}[{i}]") for i, arg in enumerate(args)]
            return (
                f"({self._sequence(origin, v)} and len({v}) == {len(args)} and "
                + (" and ".join(parts) or "True")
                + ")"
            )
        if origin is dict:
            key, item = self._fresh("k"), self._fresh("x")
            key_ok, item_ok = self.expression(args[0], key), self.expression(args[1], item)
            if item_ok == "True":
                every = f"all({key_ok} for {key} in {v})"
            else:
                every = f"all({key_ok} and {item_ok} for {key}, {item} in {v}.items())"
            return f"(type({v}) is dict and (not {v} or {every}))"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            cls_name, check_name = self._fresh("C"), self._fresh("P")
            self.globals[cls_name] = hint
            self.globals[check_name] = compile_predicate(hint, strict=self._strict)
            return f"(type({v}) is {cls_name} and {check_name}({v}))"
        if hint in _SCALARS:
            return _SCALARS[hint].format(v=v)
        raise AssertionError(f"no check for the annotation {hint!r}")  # a new field type: add it

    def _fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self._names)}"


def compile_predicate(cls: type, *, strict: bool = False) -> Callable[[Any], bool]:
    """``predicate(obj)``: True when every field of ``obj`` (an instance of dataclass ``cls``)
    has the type its annotation declares, exactly; False may also mean "ask the checkers".

    ``strict``: also a list where the annotation says list and a tuple where it says tuple (not
    either), and only :func:`plain` values where it says ``Any``."""
    hints = typing.get_type_hints(cls)
    writer = _Writer(strict)
    lines = ["def predicate(o):"]
    for f in dataclasses.fields(cls):
        expression = writer.expression(hints[f.name], "v")
        if expression != "True":
            lines += [f"    v = o.{f.name}", f"    if not {expression}:", "        return False"]
    lines.append("    return True")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), writer.globals, namespace)  # our annotations' source, not data's
    predicate: Callable[[Any], bool] = namespace["predicate"]
    return predicate
