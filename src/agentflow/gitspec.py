"""What a git workspace may say, checked the same way at every boundary.

A task's ``workspace`` names a repository, a ref to start from, and a branch for its result; the
worker hands all of it to git. Each field is checked here, in pure Python, before anything is
committed or run: at the API, when a worker decodes an assign frame, and in ``workerwire``. The
checks refuse what git would read as an option (a leading ``-``), a transport that runs a program
(``ext::``), credentials written into a URL, and refnames ``git check-ref-format`` refuses. No I/O:
no ``os``, no ``subprocess``; a test keeps it that way.

Each refusal is one :class:`GitSpecError` (a ``ValueError``, so pydantic answers 422) whose text
names the field and the rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_AUTHOR_CHARS",
    "MAX_FILES",
    "MAX_MERGE",
    "MAX_MESSAGE_CHARS",
    "MAX_PATHS_CHARS",
    "MAX_PATH_CHARS",
    "MAX_REF_CHARS",
    "MAX_REPO_CHARS",
    "MAX_SPARSE",
    "FileChange",
    "GitSpecError",
    "WorkspaceResult",
    "WorkspaceSpec",
    "check_author",
    "check_branch",
    "check_message",
    "check_ref",
    "check_repo",
    "check_sha",
    "check_sparse",
    "default_branch",
    "parent_ref",
    "repo_key",
]

MAX_FILES = 1000  # changed files listed in a result, and conflicting files
MAX_PATH_CHARS = 1024  # one path: a sparse directory, a changed or conflicting file
MAX_PATHS_CHARS = 64 * 1024  # all listed paths of one result together
MAX_SPARSE = 256  # cone directories of one sparse checkout
MAX_REPO_CHARS = 2048
MAX_REF_CHARS = 255  # one path component on most filesystems, where git stores loose refs
MAX_MESSAGE_CHARS = 4096
MAX_AUTHOR_CHARS = 303  # 100 for the name, 200 for the address, " <" and ">"
MAX_MERGE = 100  # parents one merge step may list

_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_TRANSPORT = re.compile(r"^[A-Za-z0-9+.\-]+::")  # git's <transport>::<address> (ext::, fd::)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)$", re.DOTALL)
_SCP = re.compile(r"^(?:([^@/:]+)@)?(\[[^\]/]+\]|[^@/:\[\]]+):(.*)$", re.DOTALL)
_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_PARENT_REF = re.compile(r"^\$\{parents\.([A-Za-z0-9_.:\-]{1,128})\.(commit|branch)\}$")
_SPARSE_BAD = re.compile(r"[*?\[\\\x00-\x1f\x7f]")
_AUTHOR = re.compile(r"[^<>\n]{1,100} <[^<>\s]{1,200}>")
_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class GitSpecError(ValueError):
    """A workspace field git must not be handed; the text names the field and the rule."""


def _str(field: str, value: object, max_chars: int) -> str:
    if not isinstance(value, str):
        raise GitSpecError(f"{field} must be a string")
    if not value:
        raise GitSpecError(f"{field} must not be empty")
    if len(value) > max_chars:
        raise GitSpecError(f"{field} is over {max_chars} characters")
    return value


def check_repo(url: str) -> str:
    """A repository git may fetch: an https/http/ssh/git/file URL, ``user@host:path`` or an
    absolute path; never an option, a program-running transport, or embedded credentials."""
    _str("repo", url, MAX_REPO_CHARS)
    if _CONTROL_OR_SPACE.search(url):
        raise GitSpecError("repo must not contain spaces or control characters")
    if url.startswith("-"):
        raise GitSpecError("repo must not start with '-'")
    if _TRANSPORT.match(url):
        raise GitSpecError("repo must not name a <transport>:: address (ext::, fd::)")
    if url.startswith("/"):
        return url
    if (m := _URL.match(url)) is not None:
        _check_url(m.group(1), m.group(2), m.group(3))
        return url
    if "://" not in url and (m := _SCP.match(url)) is not None:
        _check_scp(m.group(1), m.group(2), m.group(3))
        return url
    raise GitSpecError(
        "repo must be an https, http, ssh, git or file URL, user@host:path, or an absolute path"
    )


def _check_url(scheme: str, authority: str, path: str) -> None:
    if scheme not in _SCHEMES:
        raise GitSpecError(f"repo scheme {scheme!r} is not one of file, git, http, https, ssh")
    userinfo, at, host = authority.rpartition("@")
    if at and scheme in ("http", "https"):
        raise GitSpecError("repo must not embed credentials; the worker supplies them")
    if at and ":" in userinfo:
        raise GitSpecError("repo must not embed a password; the worker supplies credentials")
    if userinfo.startswith("-") or host.startswith("-"):
        raise GitSpecError("repo user and host must not start with '-'")
    if scheme == "file":
        if host not in ("", "localhost") or not path.startswith("/"):
            raise GitSpecError("repo file URL must be file:///absolute/path")
    elif not host:
        raise GitSpecError("repo URL must name a host")


def _check_scp(user: str | None, host: str, path: str) -> None:
    if user is not None and user.startswith("-"):
        raise GitSpecError("repo user and host must not start with '-'")
    if host.startswith("-"):
        raise GitSpecError("repo user and host must not start with '-'")
    if not path:
        raise GitSpecError("repo user@host:path must name a path")
    if "@" in path.split("/", 1)[0]:
        raise GitSpecError("repo must not embed a password; the worker supplies credentials")


def _check_refname(field: str, ref: str) -> str:
    """``git check-ref-format --allow-onelevel``, in pure Python, plus no leading ``-``."""
    _str(field, ref, MAX_REF_CHARS)
    if ref.startswith("-"):
        raise GitSpecError(f"{field} must not start with '-'")
    if (bad := _REF_BAD_CHARS.search(ref)) is not None:
        raise GitSpecError(f"{field} must not contain {bad.group()!r} (git check-ref-format)")
    if ref == "@" or "@{" in ref or ".." in ref:
        raise GitSpecError(
            f"{field} must not be '@' or contain '@{{' or '..' (git check-ref-format)"
        )
    if ref.endswith(".") or ref.startswith("/") or ref.endswith("/") or "//" in ref:
        raise GitSpecError(
            f"{field} must not end in '.', start or end with '/', or hold '//' "
            "(git check-ref-format)"
        )
    for part in ref.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            raise GitSpecError(
                f"{field} component {part!r} starts with '.' or ends with '.lock' "
                "(git check-ref-format)"
            )
    return ref


def check_ref(ref: str) -> str:
    """Where a workspace starts: a branch, tag, full sha, or ``${parents.K.commit|branch}``."""
    if isinstance(ref, str) and ref.startswith("${"):
        if parent_ref(ref) is None:
            raise GitSpecError("ref placeholder must be ${parents.<key>.commit|branch}")
        return ref
    return _check_refname("ref", ref)


def check_branch(name: str) -> str:
    """The branch a result is pushed to: a refname that is neither ``HEAD`` nor ``refs/...``."""
    _check_refname("branch", name)
    if name == "HEAD" or name.startswith("refs/") or name.startswith("${"):
        raise GitSpecError("branch must be a branch name, not HEAD, refs/... or a placeholder")
    return name


def check_sha(field: str, sha: str) -> str:
    """A full object name: 40 (sha1) or 64 (sha256) lowercase hex digits."""
    if not isinstance(sha, str) or _SHA.match(sha) is None:
        raise GitSpecError(f"{field} must be 40 or 64 lowercase hex digits")
    return sha


def check_sparse(path: str) -> str:
    """A cone directory (or a task's ``cwd`` in its worktree): a relative POSIX path with no
    ``..``, no leading ``/ - ! #`` and no glob or escape characters. A trailing ``/`` is dropped."""
    _str("sparse path", path, MAX_PATH_CHARS)
    if (bad := _SPARSE_BAD.search(path)) is not None:
        raise GitSpecError(f"sparse path must not contain {bad.group()!r}")
    if path[0] in "/-!#":
        raise GitSpecError("sparse path must be relative and not start with '/', '-', '!' or '#'")
    trimmed = path.rstrip("/")
    if trimmed == ".":
        return trimmed
    if any(part in ("", ".", "..") for part in trimmed.split("/")):
        raise GitSpecError("sparse path must not hold '..', '.' or empty components")
    return trimmed


def check_author(text: str) -> str:
    """``Name <address>``, as git writes an ident."""
    _str("author", text, MAX_AUTHOR_CHARS)
    if _CONTROL.search(text) or _AUTHOR.fullmatch(text) is None:
        raise GitSpecError("author must read 'Name <address>' (name 1..100, address 1..200)")
    return text


def check_message(text: str) -> str:
    """A commit message whose lines cannot forge the worker's ``AgentFlow-*`` trailers."""
    _str("message", text, MAX_MESSAGE_CHARS)
    if "\x00" in text:
        raise GitSpecError("message must not contain NUL")
    for line in text.splitlines():
        if line.lstrip().lower().startswith("agentflow-"):
            raise GitSpecError("message lines must not start with 'AgentFlow-' (trailers)")
    return text


def parent_ref(ref: str) -> tuple[str, str] | None:
    """``"${parents.fix.commit}"`` -> ``("fix", "commit")``; None for any other ref."""
    m = _PARENT_REF.match(ref)
    return None if m is None else (m.group(1), m.group(2))


def repo_key(url: str) -> str:
    """The mirror's name: sha256 of the URL with trailing ``/`` dropped and the scheme and host
    lowercased (``.git`` is kept: ``/x/r`` and ``/x/r.git`` may be different repositories)."""
    norm = url.rstrip("/") or url
    if (m := _URL.match(norm)) is not None:
        norm = f"{m.group(1).lower()}://{m.group(2).lower()}{m.group(3)}"
    return hashlib.sha256(norm.encode()).hexdigest()[:24]


def default_branch(task_id: str) -> str:
    """Where a task's result goes when its workspace names no branch."""
    return "agentflow/" + task_id


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise GitSpecError(f"{field} must be true or false")
    return value


def _count(field: str, value: object, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GitSpecError(f"{field} must be an integer >= {low}")
    return value


def _items(field: str, value: object, max_items: int) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise GitSpecError(f"{field} must be a list")
    if len(value) > max_items:
        raise GitSpecError(f"{field} lists over {max_items} items")
    return list(value)


def _known(kind: str, data: object, fields: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise GitSpecError(f"{kind} must be an object")
    if unknown := sorted(set(data) - set(fields)):
        raise GitSpecError(f"{kind} has unknown fields: {', '.join(map(str, unknown))}")
    return data


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceSpec:
    """A task's workspace, as submitted; every field is checked on construction."""

    repo: str
    ref: str | None = None  # None: the repository's default branch
    branch: str | None = None  # None: default_branch(task id)
    commit: bool = True
    push: bool = True
    sparse: tuple[str, ...] = ()
    message: str | None = None  # None: the task's title
    author: str | None = None  # None: the worker's --git-author

    def __post_init__(self) -> None:
        check_repo(self.repo)
        if self.ref is not None:
            check_ref(self.ref)
        if self.branch is not None:
            check_branch(self.branch)
        _flag("commit", self.commit)
        _flag("push", self.push)
        if self.push and not self.commit:
            raise GitSpecError("push needs commit: a workspace that does not commit has no push")
        sparse = _items("sparse", self.sparse, MAX_SPARSE)
        if tuple(check_sparse(p) for p in sparse) != tuple(sparse):
            raise GitSpecError("sparse paths must be given without a trailing '/'")
        if self.message is not None:
            check_message(self.message)
        if self.author is not None:
            check_author(self.author)

    def to_wire(self) -> dict[str, Any]:
        """The JSON form; fields at their defaults are left out."""
        wire: dict[str, Any] = {"repo": self.repo}
        for name in ("ref", "branch", "message", "author"):
            if (value := getattr(self, name)) is not None:
                wire[name] = value
        if not self.commit:
            wire["commit"] = False
        if not self.push:
            wire["push"] = False
        if self.sparse:
            wire["sparse"] = list(self.sparse)
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WorkspaceSpec:
        """Re-checks every field; GitSpecError on anything :meth:`to_wire` would not write."""
        fields = ("repo", "ref", "branch", "commit", "push", "sparse", "message", "author")
        data = _known("workspace", data, fields)
        if "repo" not in data:
            raise GitSpecError("workspace needs a repo")
        sparse = [check_sparse(p) for p in _items("sparse", data.get("sparse", ()), MAX_SPARSE)]
        return cls(
            repo=data["repo"],
            ref=data.get("ref"),
            branch=data.get("branch"),
            commit=data.get("commit", True),
            push=data.get("push", True),
            sparse=tuple(sparse),
            message=data.get("message"),
            author=data.get("author"),
        )


def _check_path(field: str, path: object) -> str:
    path = _str(field, path, MAX_PATH_CHARS)
    if "\x00" in path:
        raise GitSpecError(f"{field} must not contain NUL")
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class FileChange:
    """One changed file of a result; insertions and deletions are both -1 for a binary file."""

    path: str
    insertions: int
    deletions: int

    def __post_init__(self) -> None:
        _check_path("files path", self.path)
        if (self.insertions, self.deletions) != (-1, -1):
            _count("files insertions", self.insertions)
            _count("files deletions", self.deletions)

    def to_wire(self) -> list[Any]:
        return [self.path, self.insertions, self.deletions]

    @classmethod
    def from_wire(cls, item: object) -> FileChange:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise GitSpecError("files items must be [path, insertions, deletions]")
        for n in item[1:]:
            if isinstance(n, bool) or not isinstance(n, int):
                raise GitSpecError("files insertions and deletions must be integers")
        return cls(path=item[0], insertions=item[1], deletions=item[2])


_RESULT_FIELDS = (
    "base",
    "commit",
    "branch",
    "pushed",
    "files",
    "files_total",
    "insertions",
    "deletions",
    "conflicts",
    "merged",
    "prepare_ms",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceResult:
    """What an attempt's workspace came to: its base, its commit (None: no change, or a merge
    conflict), the branch it was pushed to, and the changed files (the first MAX_FILES)."""

    base: str
    commit: str | None = None
    branch: str | None = None
    pushed: bool = False
    files: tuple[FileChange, ...] = ()
    files_total: int = 0  # all changed files, listed or not
    insertions: int = 0
    deletions: int = 0
    conflicts: tuple[str, ...] = ()
    merged: tuple[str, ...] = ()  # a merge step's parents, by key, in order
    prepare_ms: int | None = None

    def __post_init__(self) -> None:
        check_sha("base", self.base)
        if self.commit is not None:
            check_sha("commit", self.commit)
        if self.branch is not None:
            check_branch(self.branch)
        if _flag("pushed", self.pushed) and (self.commit is None or self.branch is None):
            raise GitSpecError("pushed needs a commit and a branch")
        files = _items("files", self.files, MAX_FILES)
        if not all(isinstance(f, FileChange) for f in files):
            raise GitSpecError("files must hold FileChange items")
        conflicts = [
            _check_path("conflicts path", p) for p in _items("conflicts", self.conflicts, MAX_FILES)
        ]
        if sum(len(f.path) for f in files) + sum(map(len, conflicts)) > MAX_PATHS_CHARS:
            raise GitSpecError(f"files and conflicts paths are over {MAX_PATHS_CHARS} characters")
        if _count("files_total", self.files_total) < len(files):
            raise GitSpecError("files_total must count at least the files listed")
        _count("insertions", self.insertions)
        _count("deletions", self.deletions)
        if self.commit is None and (files or self.files_total or self.insertions or self.deletions):
            raise GitSpecError("a result with no commit has no changed files")
        for key in _items("merged", self.merged, MAX_MERGE):
            if not isinstance(key, str) or _KEY.match(key) is None:
                raise GitSpecError("merged must list task keys")
        if self.prepare_ms is not None:
            _count("prepare_ms", self.prepare_ms)

    def to_wire(self) -> dict[str, Any]:
        """The JSON form: files as ``[[path, insertions, deletions]]``; empty fields left out."""
        wire: dict[str, Any] = {"base": self.base}
        for name in _RESULT_FIELDS[1:]:
            value = getattr(self, name)
            if (
                value is None
                or value is False
                or value == ()
                or (value == 0 and name != "prepare_ms")
            ):
                continue
            if name == "files":
                value = [f.to_wire() for f in self.files]
            wire[name] = list(value) if isinstance(value, tuple) else value
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WorkspaceResult:
        """Checks every field and bound; GitSpecError on what :meth:`to_wire` would not write."""
        data = _known("workspace result", data, _RESULT_FIELDS)
        if "base" not in data:
            raise GitSpecError("workspace result needs a base")
        files = tuple(
            FileChange.from_wire(f) for f in _items("files", data.get("files", ()), MAX_FILES)
        )
        return cls(
            base=data["base"],
            commit=data.get("commit"),
            branch=data.get("branch"),
            pushed=data.get("pushed", False),
            files=files,
            files_total=data.get("files_total", 0),
            insertions=data.get("insertions", 0),
            deletions=data.get("deletions", 0),
            conflicts=tuple(_items("conflicts", data.get("conflicts", ()), MAX_FILES)),
            merged=tuple(_items("merged", data.get("merged", ()), MAX_MERGE)),
            prepare_ms=data.get("prepare_ms"),
        )
