"""Field types of decoded commands, checked against their annotations.

msgpack gives back whatever a peer or the disk holds; ``cls(**body)`` accepts any value for any
field. Checking each field against the dataclass's own annotations, once, when an entry is
decoded, means handlers only ever see the types they were written for, so a malformed entry is
refused before ``apply`` changes anything instead of failing halfway through a handler.

Each annotation is compiled once into a small checker (this runs for every field of every entry
on every replica, 10,000 tasks in one batch entry included); the path of a bad value is built
only when one is found.

The check is as lenient as the producers are: an ``int`` is a ``float`` too, a ``list`` field
may hold a tuple and a tuple field a list, ``Any`` is anything. It never converts a value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from agentflow.state._field_predicates import compile_predicate

__all__ = ["FieldTypeError", "check_fields"]

_DEPTH_MAX = 8  # annotations nest a few levels at most; deeper means a recursive type

Checker = Callable[[Any], None]


class FieldTypeError(TypeError):
    """A decoded value does not have the type its field declares."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def at(self, part: str) -> FieldTypeError:
        """The same error, one level further out (``part`` goes in front of the path)."""
        return FieldTypeError(self.reason, part + self.path)


# One entry per command class and per annotation: bounded by the code, not by the data.
_FIELDS: dict[type, tuple[tuple[str, Checker], ...]] = {}
_PREDICATES: dict[type, Callable[[Any], bool]] = {}


def check_fields(obj: object) -> None:
    """Raise :class:`FieldTypeError` unless every field of dataclass ``obj`` has its type.

    The class's generated predicate (one call, every check inline, exact types) clears what
    decoding gives back; only a value it does not clear goes through the checkers below, which
    decide and say where and why."""
    if _predicate_of(type(obj))(obj):
        return
    try:
        _check_dataclass(obj)
    except FieldTypeError as exc:
        raise exc.at(type(obj).__name__) from None


def _check_dataclass(obj: object) -> None:
    for name, check in _fields_of(type(obj), 0):
        try:
            check(getattr(obj, name))
        except FieldTypeError as exc:
            raise exc.at(f".{name}") from None


def _fields_of(cls: type, depth: int) -> tuple[tuple[str, Checker], ...]:
    checkers = _FIELDS.get(cls)
    if checkers is None:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        checkers = _FIELDS[cls] = tuple((f.name, _compile(hints[f.name], depth)) for f in fields)
    return checkers


def _predicate_of(cls: type) -> Callable[[Any], bool]:
    predicate = _PREDICATES.get(cls)
    if predicate is None:
        _fields_of(cls, 0)  # the same annotations, refused the same way if one is unknown
        predicate = _PREDICATES[cls] = compile_predicate(cls)
    return predicate


def _compile(hint: Any, depth: int) -> Checker:
    assert depth <= _DEPTH_MAX, hint  # our own annotations, not the data, decide the depth
    if hint is Any:
        return _anything
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(hint, [_compile(arg, depth + 1) for arg in args])
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return _sequence(_compile(args[0], depth + 1))
    if origin is tuple:
        return _fixed_tuple([_compile(arg, depth + 1) for arg in args])
    if origin is dict:
        return _mapping(_compile(args[0], depth + 1), _compile(args[1], depth + 1))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _nested(hint, depth)
    return _scalar(hint)


def _anything(value: Any) -> None:
    return


def _union(hint: Any, parts: list[Checker]) -> Checker:
    optional = _none in parts  # ``X | None``, the common case, answers None at once
    parts = [part for part in parts if part is not _none]

    def check(value: Any) -> None:
        if value is None and optional:
            return
        for part in parts:
            try:
                part(value)
            except FieldTypeError:
                continue
            return
        raise FieldTypeError(f"{type(value).__name__} is not {_name(hint)}")

    return check


def _sequence(item: Checker) -> Checker:
    def check(value: Any) -> None:
        if not isinstance(value, list | tuple):
            raise FieldTypeError(f"{type(value).__name__} is not a list")
        for i, element in enumerate(value):
            try:
                item(element)
            except FieldTypeError as exc:
                raise exc.at(f"[{i}]") from None

    return check


def _fixed_tuple(items: list[Checker]) -> Checker:
    def check(value: Any) -> None:
        if not isinstance(value, list | tuple):
            raise FieldTypeError(f"{type(value).__name__} is not a list")
        if len(value) != len(items):
            raise FieldTypeError(f"{len(value)} items where {len(items)} are expected")
        for i, (element, item) in enumerate(zip(value, items, strict=True)):
            try:
                item(element)
            except FieldTypeError as exc:
                raise exc.at(f"[{i}]") from None

    return check


def _mapping(key_check: Checker, item_check: Checker) -> Checker:
    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise FieldTypeError(f"{type(value).__name__} is not a map")
        for key, item in value.items():
            try:
                key_check(key)
            except FieldTypeError as exc:
                raise exc.at(" key") from None
            try:
                item_check(item)
            except FieldTypeError as exc:
                raise exc.at(f"[{key!r:.40}]") from None

    return check


def _nested(cls: type, depth: int) -> Checker:
    _fields_of(cls, depth + 1)  # compiled now: a new field type fails at start, not on data

    def check(value: Any) -> None:
        if not isinstance(value, cls):
            raise FieldTypeError(f"{type(value).__name__} is not {cls.__name__}")
        _check_dataclass(value)

    return check


def _scalar(hint: Any) -> Checker:
    checker = _SCALARS.get(hint)
    if checker is None:
        raise AssertionError(f"no check for the annotation {hint!r}")  # a new field type: add it
    return checker


def _refuse(value: Any, name: str) -> FieldTypeError:
    return FieldTypeError(f"{type(value).__name__} is not {name}")


# One plain function per scalar type: these run for almost every value of every entry.


def _none(value: Any) -> None:
    if value is not None:
        raise _refuse(value, "None")


def _float(value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _refuse(value, "float")


def _int(value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _refuse(value, "int")


def _bool(value: Any) -> None:
    if not isinstance(value, bool):
        raise _refuse(value, "bool")


def _str(value: Any) -> None:
    if not isinstance(value, str):
        raise _refuse(value, "str")


def _bytes(value: Any) -> None:
    if not isinstance(value, bytes):
        raise _refuse(value, "bytes")


_SCALARS: dict[Any, Checker] = {
    None: _none,
    type(None): _none,
    float: _float,
    int: _int,
    bool: _bool,
    str: _str,
    bytes: _bytes,
}


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
