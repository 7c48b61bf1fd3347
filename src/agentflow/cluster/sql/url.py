"""The ``--store`` value, parsed and checked before anything connects (pure: no I/O).

``sqlite`` is the embedded Raft store; ``postgresql://user[:pw]@host[:port]/db[?k=v]`` and
``mysql://...`` (``mariadb://`` is an alias, ``postgres://`` too) name an external database.
The password is never shown: not in ``repr``, ``str``, logs nor any error this module raises
(errors quote the URL with the password replaced by ``***``).

Characters that would make the URL ambiguous (``/ ? # @`` in the user or password) must be
percent-encoded; we refuse rather than guess where the user information ends, because a wrong
guess would put part of the password into the host or port and from there into a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote

from agentflow.errors import ConfigError

__all__ = [
    "DEFAULT_PORTS",
    "MAX_DATABASE_CHARS",
    "PARAMS",
    "StoreUrl",
    "parse_store",
]

Dialect = Literal["postgresql", "mysql"]

SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
DEFAULT_PORTS: dict[Dialect, int] = {"postgresql": 5432, "mysql": 3306}
MAX_DATABASE_CHARS = 63  # PostgreSQL's NAMEDATALEN - 1; MySQL allows 64
MAX_URL_CHARS = 4096
# The query parameters each dialect takes (passed to the driver as they are), with the values
# allowed where the set is closed (None: any non-empty value, e.g. a certificate's path).
PARAMS: dict[Dialect, dict[str, frozenset[str] | None]] = {
    "postgresql": {
        "sslmode": frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}),
        "sslrootcert": None,
        "sslcert": None,
        "sslkey": None,
    },
    "mysql": {
        "ssl_ca": None,
        "ssl_cert": None,
        "ssl_key": None,
        "ssl_verify_cert": frozenset({"true", "false"}),
        "ssl_verify_identity": frozenset({"true", "false"}),
    },
}

_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreUrl:
    """An external store's address; ``str()`` and ``repr()`` never show the password."""

    dialect: Dialect
    host: str
    port: int
    database: str
    user: str | None
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    def redacted(self) -> str:
        """The URL as it may be shown: ``postgresql://user:***@host:5432/db``."""
        user = ""
        if self.user is not None:
            user = _quote(self.user) + (":***" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.dialect}://{user}{host}:{self.port}/{_quote(self.database)}" + (
            f"?{query}" if query else ""
        )

    def __str__(self) -> str:
        return self.redacted()


def parse_store(text: str, password: str | None = None) -> StoreUrl | None:
    """``None`` for ``sqlite`` (the embedded Raft store); the checked URL otherwise.

    ``password`` is one given apart from the URL (``AGENTFLOW_STORE_PASSWORD`` or
    ``--store-password-file``); a URL that carries one too is refused, as is anything
    malformed, with a ConfigError whose message quotes the URL redacted."""
    if text == "sqlite":
        return None
    shown = redact_text(text)
    if len(text) > MAX_URL_CHARS:
        raise ConfigError(f"store URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise ConfigError(f"store URL {shown}: spaces and control characters are not allowed")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(
            f"--store {shown}: expected sqlite, postgresql://user@host/db or mysql://user@host/db"
        )
    dialect = SCHEMES[scheme.lower()]
    userinfo, at, hostpart = rest.rpartition("@")
    user, url_password = _userinfo(userinfo, shown) if at else (None, None)
    if url_password is not None and password is not None:
        raise ConfigError(
            f"store URL {shown}: a password is in the URL and given apart from it too; keep one"
        )
    host, port, database, params = _location(hostpart, dialect, shown)
    return StoreUrl(
        dialect=dialect,
        host=host,
        port=port,
        database=database,
        user=user,
        password=url_password if url_password is not None else password,
        params=params,
    )


def redact_text(text: str) -> str:
    """``text`` with anything between ``user:`` and the last ``@`` replaced by ``***``: safe
    to quote in a message even when the URL is malformed."""
    scheme, sep, rest = text.partition("://")
    if not sep:  # not a URL: only a word without ':' or '@' is surely no password
        return text if ":" not in text and "@" not in text else "(a value that is not a URL)"
    if "@" not in rest:
        return text
    userinfo, _, hostpart = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}"


def _userinfo(userinfo: str, shown: str) -> tuple[str, str | None]:
    if any(c in userinfo for c in "/?#@"):
        raise ConfigError(
            f"store URL {shown}: percent-encode '/', '?', '#' and '@' in the user and password"
        )
    raw_user, colon, raw_password = userinfo.partition(":")
    if not raw_user:
        raise ConfigError(f"store URL {shown}: no user before '@'")
    if colon and not raw_password:
        raise ConfigError(f"store URL {shown}: an empty password after ':'; leave out the ':'")
    if _PERCENT.search(userinfo):
        raise ConfigError(f"store URL {shown}: a '%' in the user or password is not %XX")
    user, password = unquote(raw_user), unquote(raw_password) if colon else None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in user + (password or "")):
        raise ConfigError(f"store URL {shown}: control characters in the user or password")
    return user, password


def _location(
    hostpart: str, dialect: Dialect, shown: str
) -> tuple[str, int, str, tuple[tuple[str, str], ...]]:
    if "#" in hostpart:
        raise ConfigError(f"store URL {shown}: a fragment ('#...') means nothing here")
    location, _, query = hostpart.partition("?")
    authority, slash, path = location.partition("/")
    if not slash or not path:
        raise ConfigError(f"store URL {shown}: no database; add /<database> after the host")
    host, port = _host_port(authority, dialect, shown)
    return host, port, _database(path, shown), _params(query, dialect, shown)


def _host_port(authority: str, dialect: Dialect, shown: str) -> tuple[str, int]:
    if authority.startswith("["):
        host, bracket, tail = authority.partition("]")
        host, port_text = host + bracket, tail.removeprefix(":")
        has_port = tail.startswith(":")
        if tail and not has_port:
            raise ConfigError(f"store URL {shown}: expected ':<port>' after ']'")
    else:
        host, colon, port_text = authority.partition(":")
        has_port = bool(colon)
    if not host or not _HOST.fullmatch(host):
        raise ConfigError(f"store URL {shown}: a host name or address is needed before the path")
    if not has_port:
        return host.strip("[]"), DEFAULT_PORTS[dialect]
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"store URL {shown}: the port must be a number from 1 to 65535")
    return host.strip("[]"), int(port_text)


def _database(path: str, shown: str) -> str:
    if "/" in path:
        raise ConfigError(f"store URL {shown}: the path names one database, with no '/' in it")
    if _PERCENT.search(path):
        raise ConfigError(f"store URL {shown}: a '%' in the database name is not %XX")
    database = unquote(path)
    if not database or len(database) > MAX_DATABASE_CHARS:
        raise ConfigError(
            f"store URL {shown}: a database name has 1 to {MAX_DATABASE_CHARS} characters"
        )
    if any(ord(c) < 0x20 or c in "/\\'\"`" for c in database):
        raise ConfigError(f"store URL {shown}: quotes, slashes and control characters in the name")
    return database


def _params(query: str, dialect: Dialect, shown: str) -> tuple[tuple[str, str], ...]:
    if not query:
        return ()
    known = PARAMS[dialect]
    seen: dict[str, str] = {}
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        value = unquote(value)
        if key not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(f"store URL {shown}: unknown parameter {key!r}; known: {names}")
        allowed = known[key]
        if not eq or not value or (allowed is not None and value not in allowed):
            choice = f"one of {', '.join(sorted(allowed))}" if allowed else "a value"
            raise ConfigError(f"store URL {shown}: {key} needs {choice}")
        if key in seen:
            raise ConfigError(f"store URL {shown}: {key} is given twice")
        seen[key] = value
    return tuple(seen.items())


def _quote(text: str) -> str:
    return quote(text, safe="$")
