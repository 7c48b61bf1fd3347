"""Field types of decoded commands, checked against their annotations.

msgpack gives back whatever a peer or the disk holds; ``cls(**body)`` accepts any value for any
field. Checking each field against the dataclass's own annotations, once, when an entry is
decoded, means handlers only ever see the types they were written for, so a malformed entry is
refused before ``apply`` changes anything instead of failing halfway through a handler.

The check is as lenient as the producers are: an ``int`` is a ``float`` too, a ``list`` field
may hold a tuple and a tuple field a list, ``Any`` is anything. It never converts a value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["FieldTypeError", "check_fields"]

_DEPTH_MAX = 8  # annotations nest a few levels at most; deeper means a recursive type


class FieldTypeError(TypeError):
    """A decoded value does not have the type its field declares."""


_HINTS: dict[type, dict[str, Any]] = {}  # one entry per command class: bounded by the code


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def check_fields(obj: object) -> None:
    """Raise :class:`FieldTypeError` unless every field of dataclass ``obj`` has its type."""
    _check_dataclass(obj, type(obj).__name__, 0)


def _check_dataclass(obj: object, where: str, depth: int) -> None:
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        _check(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}", depth + 1)


def _check(value: Any, hint: Any, where: str, depth: int) -> None:
    assert depth <= _DEPTH_MAX, where  # our own annotations, not the data, decide the depth
    if hint is Any:
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if not any(_fits(value, arg, where, depth) for arg in args):
            raise FieldTypeError(f"{where}: {type(value).__name__} is not {_name(hint)}")
        return
    if origin in (list, tuple):
        _check_sequence(value, origin, args, where, depth)
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldTypeError(f"{where}: {type(value).__name__} is not a map")
        for key, item in value.items():
            _check(key, args[0], f"{where} key", depth + 1)
            _check(item, args[1], f"{where}[{key!r:.40}]", depth + 1)
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise FieldTypeError(f"{where}: {type(value).__name__} is not {hint.__name__}")
        _check_dataclass(value, where, depth)
        return
    if not _scalar_fits(value, hint):
        raise FieldTypeError(f"{where}: {type(value).__name__} is not {_name(hint)}")


def _check_sequence(value: Any, origin: Any, args: tuple[Any, ...], where: str, depth: int) -> None:
    if not isinstance(value, list | tuple):
        raise FieldTypeError(f"{where}: {type(value).__name__} is not a list")
    if origin is list or (len(args) == 2 and args[1] is Ellipsis):
        for i, item in enumerate(value):
            _check(item, args[0], f"{where}[{i}]", depth + 1)
        return
    if len(value) != len(args):
        raise FieldTypeError(f"{where}: {len(value)} items where {len(args)} are expected")
    for i, (item, arg) in enumerate(zip(value, args, strict=True)):
        _check(item, arg, f"{where}[{i}]", depth + 1)


def _fits(value: Any, hint: Any, where: str, depth: int) -> bool:
    try:
        _check(value, hint, where, depth)
    except FieldTypeError:
        return False
    return True


def _scalar_fits(value: Any, hint: Any) -> bool:
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint in (str, bytes):
        return isinstance(value, hint)
    raise AssertionError(f"no check for the annotation {hint!r}")  # a new field type: add it


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
