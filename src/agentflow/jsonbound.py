"""Strict, bounded JSON values: the one check every decoded input passes before it is used.

A value that can reach the command log must survive being encoded there (msgpack: integers
within 64 bits, text that is valid UTF-8) and being read back as JSON (no NaN or Infinity).
:func:`loads` decodes JSON text that way; :func:`check_value` checks a value that arrived
decoded by other means (a msgpack frame). Both raise :class:`~agentflow.errors.ClientError`
(400, the text is not JSON) or its subclass :class:`~agentflow.errors.ValidationError` (422, a
value is out of bounds), and nothing else, whatever the input.

:func:`tolerant` is the other direction: a value to answer with, made encodable even if it holds
what an older version let through, so reads never fail on stored data.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from agentflow.errors import ClientError, ValidationError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "check_value",
    "dumps",
    "loads",
    "tolerant",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MAX_DEPTH = 64  # containers nested inside each other, the top one included
_MAX_INT_CHARS = 20  # "-9223372036854775808": anything longer is out of range


def _refuse_constant(name: str) -> NoReturn:
    raise ValidationError(f"{name} is not a JSON number: send a finite number or null")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_CHARS - 1:
        raise ValidationError(f"integer {text[:24]}... is outside the 64-bit range")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValidationError("integer outside the 64-bit range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" parses as inf
        raise ValidationError(f"number {value} is not finite")
    return value


# A lone surrogate can only come from an escape (``"\\ud800"``) or, in bytes, from UTF-8 that
# encodes one (json decodes bytes with "surrogatepass"). Either is rare: seeing one sends the
# value through the full walk, which names it; otherwise no string is looked at again.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Outside strings, only brackets count for the depth: "[{" open, "]}" close, all else goes.
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[{]}")


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of strict JSON text: no NaN/Infinity, finite floats, 64-bit integers,
    valid UTF-8 text, at most ``max_depth`` containers deep.

    One pass of the C parser with hooks for the numbers (integers and floats are checked as
    they are parsed), then checks on the text itself, at C speed, for what the hooks cannot
    see: the nesting depth and lone surrogates. No walk over the decoded value."""
    try:
        text = data if isinstance(data, str) else _text_of(bytes(data))
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, bad UTF-8, not text at all
        raise ClientError(f"malformed JSON: {exc}") from None
    if not _depth_within(text, max_depth):
        raise ValidationError(f"value nested deeper than {max_depth} levels")
    if _may_hold_surrogates(text):
        check_value(value, max_depth=max_depth)  # names the bad string, as it always did
    return value


def _text_of(data: bytes) -> str:
    """Bytes as the json module reads them (its encoding detection, surrogates passed)."""
    return data.decode(json.detect_encoding(data), "surrogatepass")


def _may_hold_surrogates(text: str) -> bool:
    if _SURROGATE_ESCAPE.search(text) is not None:
        return True
    if text.isascii():  # O(1) in CPython: the string knows its kind
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _depth_within(text: str, max_depth: int) -> bool:
    """Whether valid JSON ``text`` nests at most ``max_depth`` containers deep.

    Strings are cut out (escaped backslashes, then escaped quotes, go first, so that every
    quote left delimits a string), everything but the brackets is deleted, and each pass of
    ``replace("()", "")`` removes the innermost containers: the depth is the number of passes
    that empty it. Every step is a C loop over bytes."""
    if text.count("[") + text.count("{") <= max_depth:
        return True  # the common small body: not enough containers to be too deep
    raw = text.encode("utf-8", "surrogatepass")
    if b'"' in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
        raw = b"".join(raw.split(b'"')[0::2])
    skeleton = raw.translate(_BRACKETS, _NOT_BRACKETS)  # deletes first, then maps
    for _ in range(max_depth):
        skeleton = skeleton.replace(b"()", b"")
        if not skeleton:
            return True
    return False


def check_value(obj: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse (422) what the log cannot carry or a JSON reader cannot take back: a float that
    is not finite, an integer outside 64 bits, text that is not UTF-8, containers nested deeper
    than ``max_depth``, or a value of another type (bytes are allowed: msgpack carries them)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth > max_depth:
                raise ValidationError(f"value nested deeper than {max_depth} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_scalar(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        else:
            _check_scalar(value)


def _check_scalar(value: Any) -> None:
    if value is None or isinstance(value, bool | bytes):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValidationError("integer outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"number {value} is not finite")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("text holds a lone surrogate (not valid UTF-8)") from None
    else:
        raise ValidationError(f"unsupported value of type {type(value).__name__}")


def tolerant(obj: Any) -> Any:
    """``obj`` made strict-JSON encodable: non-finite floats become null, integers outside 64
    bits become strings, text that is not UTF-8 is replaced, other values become their repr."""
    if isinstance(obj, dict):
        return {str(tolerant(k)): tolerant(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [tolerant(v) for v in obj]
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return obj if INT64_MIN <= obj <= INT64_MAX else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return repr(obj)


def dumps(obj: Any) -> bytes:
    """Compact strict JSON of ``obj`` in UTF-8; what cannot be encoded strictly goes through
    :func:`tolerant` first, so this never fails on data."""
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        text = json.dumps(tolerant(obj), separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
