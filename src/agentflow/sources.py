"""Where each setting comes from: its flag, else its environment variable, else the config
file's ``[master]``/``[worker]`` table (keys are the flag names), else the default.

:func:`read_config_file` checks a file before anything starts (an unknown key or a wrong type
is one line naming it); :func:`layer` merges the sources and records each value's
:class:`Origin`, which ``agentflow config show`` prints.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from agentflow.config import MasterConfig, WorkerConfig, load_toml, parse_duration, parse_size
from agentflow.errors import ConfigError
from agentflow.settings import MASTER_SETTINGS, ROLES, WORKER_SETTINGS, Kind, Role, Setting

__all__ = [
    "Layered",
    "Origin",
    "check_table",
    "coerce",
    "default_of",
    "layer",
    "read_config_file",
    "redact_password",
    "settings_for",
    "show_value",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where a setting's value came from: ``default``, ``file``, ``env`` or ``flag``."""

    source: Literal["default", "file", "env", "flag"]
    name: str = ""  # the file's path, the environment variable or the flag

    def __str__(self) -> str:
        if self.source == "default":
            return "default"
        if self.source == "file":
            return f"file:{self.name}"
        return f"{self.source} {self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Layered:
    """The settings of one role as given (by key), and where each of them came from."""

    role: Role
    values: Mapping[str, Any]  # only the settings given somewhere; the others take the default
    origins: Mapping[str, Origin]  # every setting

    def config(self, **fallbacks: Any) -> Any:
        """The role's config; ``fallbacks`` (by field) fill fields that were not given."""
        cls = config_class(self.role)
        given = {
            s.field: self.values[s.key] for s in settings_for(self.role) if s.key in self.values
        }
        try:
            return cls(**{**fallbacks, **given})
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


def settings_for(role: Role) -> tuple[Setting, ...]:
    return MASTER_SETTINGS if role == "master" else WORKER_SETTINGS


def config_class(role: Role) -> type[MasterConfig] | type[WorkerConfig]:
    return MasterConfig if role == "master" else WorkerConfig


def default_of(setting: Setting, role: Role) -> Any:
    """The field's default, or None when it has none (``worker-id`` is made at start)."""
    for f in fields(config_class(role)):
        if f.name == setting.field:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    return None


def layer(
    role: Role,
    flags: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
    file_name: str = "",
) -> Layered:
    """Each setting from its flag (``flags`` by field; None or () is not given), else its
    environment variable (the documented name, then the older ones), else ``file`` (values by
    key, as :func:`read_config_file` checked them), else the default."""
    env = os.environ if env is None else env
    file = file or {}
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for s in settings_for(role):
        flag = flags.get(s.field)
        var = next((name for name in s.envvars if env.get(name)), None)
        if flag is not None and flag != ():  # a repeatable flag gives a tuple of its uses
            values[s.key] = coerce(s, flag, s.flag)
            origins[s.key] = Origin(source="flag", name=s.flag)
        elif var is not None:
            values[s.key] = coerce(s, env[var], f"environment variable {var}")
            origins[s.key] = Origin(source="env", name=var)
        elif s.key in file:
            values[s.key], origins[s.key] = file[s.key], Origin(source="file", name=file_name)
        else:
            origins[s.key] = Origin(source="default")
    return Layered(role=role, values=values, origins=origins)


def read_config_file(path: str | os.PathLike[str] | None, role: Role) -> dict[str, Any]:
    """The ``[role]`` table of a TOML file, checked and parsed, by key.

    A file holds a ``[master]`` and/or a ``[worker]`` table whose keys are the flag names;
    anything else in it is refused, naming the key, so a typo never goes unnoticed.
    """
    data = load_toml(path)
    where = f"config file {path}"
    for name, value in data.items():
        if name not in ROLES:
            roles = [r for r in ROLES if _setting(name, r) is not None]
            close = difflib.get_close_matches(name.lower(), list(ROLES), n=1, cutoff=0.6)
            if roles:
                hint = f"; it goes under [{roles[0]}]"
            elif close and isinstance(value, dict):
                hint = f" (did you mean [{close[0]}]?)"
            else:
                hint = "; settings go under [master] or [worker]"
            raise ConfigError(f"{where}: unknown top-level key {name!r}{hint}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a table ([{name}])")
    return check_table(data.get(role, {}), role, f"{where} [{role}]")


def check_table(table: Mapping[str, Any], role: Role, where: str) -> dict[str, Any]:
    """``table``'s values parsed, by key; an unknown key or a wrong type is refused."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for name, raw in table.items():
        s = _setting(name, role)
        if s is None:
            raise ConfigError(_unknown_key(name, role, where))
        if s.key in out:
            raise ConfigError(
                f"{where}: {spelled[s.key]!r} and {name!r} are one setting; keep {s.key!r}"
            )
        out[s.key], spelled[s.key] = coerce(s, raw, f"{where} {name}"), name
    return out


def _setting(name: str, role: Role) -> Setting | None:
    return next((s for s in settings_for(role) if name == s.key or name in s.file_aliases), None)


def _unknown_key(name: str, role: Role, where: str) -> str:
    keys = [s.key for s in settings_for(role)]
    other = next(r for r in ROLES if r != role)
    if _setting(name, other) is not None:
        why = f" (a [{other}] setting)"
    else:
        close = difflib.get_close_matches(name.replace("_", "-").lower(), keys, n=1, cutoff=0.6)
        why = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown key {name!r}{why}; known keys: {', '.join(keys)}"


def coerce(setting: Setting, raw: Any, where: str) -> Any:
    """``raw`` (a flag's or variable's text, or a TOML value) as ``setting``'s kind."""
    try:
        return _PARSERS[setting.kind](raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.detail}") from None
    except (TypeError, ValueError):
        got = f"{raw!r} ({_TOML_TYPES.get(type(raw), type(raw).__name__)})"
        raise ConfigError(f"{where}: expected {_EXPECTED[setting.kind]}, got {got}") from None


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


def _int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(raw)
    return int(raw)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = _text(raw).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _duration(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise TypeError(raw)
    return parse_duration(raw)


def _size(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(raw)
    return parse_size(raw)


def _list(raw: Any) -> tuple[str, ...]:
    items = [_text(raw)] if isinstance(raw, str) else [_text(i) for i in _sequence(raw)]
    return tuple(p.strip() for i in items for p in i.split(",") if p.strip())


def _pairs(raw: Any) -> dict[str, str]:
    """``NAME=VALUE,...`` text (or several), or a TOML table of strings and numbers."""
    if isinstance(raw, dict):
        if not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in raw.values()
        ):
            raise TypeError(raw)
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for item in [_text(raw)] if isinstance(raw, str) else [_text(i) for i in _sequence(raw)]:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"expected NAME=VALUE, got {part!r}")
            out[name.strip()] = value.strip()
    return out


def _sequence(raw: Any) -> list[Any] | tuple[Any, ...]:
    if not isinstance(raw, list | tuple):
        raise TypeError(raw)
    return raw


_PARSERS: dict[Kind, Callable[[Any], Any]] = {
    "text": _text,
    "int": _int,
    "bool": _bool,
    "duration": _duration,
    "size": _size,
    "path": lambda raw: Path(_text(raw)),
    "file": _text,
    "list": _list,
    "pairs": _pairs,
}
_EXPECTED: dict[Kind, str] = {
    "text": "a string",
    "int": "an integer",
    "bool": "true or false",
    "duration": "a duration such as 250ms, 30s, 5m or 1h, or a number of seconds",
    "size": "a size such as 512K, 16M or 2G, or a number of bytes",
    "path": "a path (a string)",
    "file": "a file name (a string)",
    "list": "a comma-separated string or an array of strings",
    "pairs": "NAME=VALUE pairs: a table, an array of 'NAME=VALUE', or 'A=1,B=2'",
}
_TOML_TYPES = {str: "string", bool: "boolean", int: "integer", float: "float", list: "array"}
_TOML_TYPES[dict] = "table"


def show_value(setting: Setting, value: Any) -> str:
    """``value`` as a person writes it: ``10s``, ``16M``, ``a,b``, ``k=v``; ``-`` for none."""
    if value is None or value in ((), {}, ""):
        return "-"
    if setting.redact:
        return redact_password(str(value))
    if setting.kind == "duration":
        return _show_duration(float(value))
    if setting.kind == "size":
        return _show_size(int(value))
    if setting.kind == "bool":
        return "true" if value else "false"
    if setting.kind == "list":
        return ",".join(value)
    if setting.kind == "pairs":
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def redact_password(url: str) -> str:
    """``url`` with the password of its user part masked: ``postgresql://u:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}{slash}{path}"


def _show_duration(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == 0:
        return "0s"
    ms = seconds * 1000
    return f"{int(ms)}ms" if ms == int(ms) else f"{seconds:g}s"


def _show_size(size: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)
