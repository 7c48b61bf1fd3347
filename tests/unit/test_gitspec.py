"""gitspec: every boundary rule of design 19 §1, as accept/refuse tables, plus a property against
git's own ``check-ref-format``."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow import gitspec
from agentflow.gitspec import (
    MAX_FILES,
    MAX_PATHS_CHARS,
    MAX_SPARSE,
    FileChange,
    GitSpecError,
    WorkspaceResult,
    WorkspaceSpec,
)

SHA = "a" * 40
SHA2 = "b" * 64

REPO_OK = [
    "https://github.com/o/r.git",
    "http://127.0.0.1:8080/r",
    "ssh://git@host/r",
    "ssh://host:22/r.git",
    "ssh://[::1]/r",
    "git://127.0.0.1:9418/r.git",
    "file:///srv/repos/r.git",
    "file://localhost/srv/r",
    "git@github.com:o/r.git",
    "host:r",
    "/srv/repos/r.git",
]
REPO_BAD = [
    ("", "empty"),
    ("https://h/" + "x" * 2048, "over 2048"),
    ("https://h/r x", "spaces"),
    ("https://h/r\n", "control"),
    ("/srv/r\tx", "control"),
    ("-uhelp", "start with '-'"),
    ("--upload-pack=touch%20/tmp/x", "start with '-'"),
    ("ext::sh -c touch% /tmp/x", "spaces"),
    ("ext::sh", "transport"),
    ("fd::3", "transport"),
    ("remote-x::anything", "transport"),
    ("relative/path", "absolute path"),
    ("./repo.git", "absolute path"),
    ("../repo.git", "absolute path"),
    ("repo.git", "absolute path"),
    ("ftp://h/r", "scheme 'ftp'"),
    ("HTTPS://h/r", "scheme 'HTTPS'"),
    ("https://TOKEN@h/o/r", "credentials"),
    ("https://u:p@h/o/r", "credentials"),
    ("http://x-access-token:abc@h/r", "credentials"),
    ("ssh://git:secret@h/r", "password"),
    ("user:pass@host:path", "password"),
    ("ssh://-oProxyCommand=x/r", "start with '-'"),
    ("git@-oProxyCommand=x:r", "start with '-'"),
    ("https:///r", "host"),
    ("file://otherhost/r", "file:///"),
    ("file://relative", "file:///"),
    ("git@host:", "path"),
]


@pytest.mark.parametrize("url", REPO_OK)
def test_repo_accepted(url: str) -> None:
    assert gitspec.check_repo(url) == url


@pytest.mark.parametrize(("url", "why"), REPO_BAD)
def test_repo_refused_with_one_reason(url: str, why: str) -> None:
    with pytest.raises(GitSpecError, match="repo") as err:
        gitspec.check_repo(url)
    assert why in str(err.value)


REF_OK = [
    "main",
    "feature/x",
    "v1.2.3",
    "release-2026",
    SHA,
    SHA2,
    "a/b/c",
    "x@y",
    "${parents.fix.commit}",
    "${parents.a-1.branch}",
]
REF_BAD = [
    ("", "empty"),
    ("-main", "'-'"),
    ("--orphan", "'-'"),
    (".hidden", "'.'"),
    ("a/.b", "'.'"),
    ("a.lock", ".lock"),
    ("a.lock/b", ".lock"),
    ("a..b", "'..'"),
    ("a@{1}", "'@{'"),
    ("@", "'@'"),
    ("a//b", "'//'"),
    ("a/", "'/'"),
    ("/a", "'/'"),
    ("a.", "'.'"),
    ("a b", "' '"),
    ("a\x00b", "'\\x00'"),
    ("a\x7fb", "'\\x7f'"),
    ("a~1", "'~'"),
    ("a^", "'^'"),
    ("a:b", "':'"),
    ("a?", "'?'"),
    ("a*", "'*'"),
    ("a[b", "'['"),
    ("a\\b", "'\\\\'"),
    ("x" * 256, "over 255"),
    ("${parents.fix.tree}", "placeholder"),
    ("${env.HOME}", "placeholder"),
]


@pytest.mark.parametrize("ref", REF_OK)
def test_ref_accepted(ref: str) -> None:
    assert gitspec.check_ref(ref) == ref


@pytest.mark.parametrize(("ref", "why"), REF_BAD)
def test_ref_refused_with_one_reason(ref: str, why: str) -> None:
    with pytest.raises(GitSpecError, match=r"^ref") as err:
        gitspec.check_ref(ref)
    assert why in str(err.value)


@pytest.mark.parametrize("name", ["agentflow/t-1", "main", "fix-bug", "a.b/c"])
def test_branch_accepted(name: str) -> None:
    assert gitspec.check_branch(name) == name


@pytest.mark.parametrize(
    "name", ["HEAD", "refs/heads/main", "${parents.a.branch}", "-x", "a..b", "a.lock", ""]
)
def test_branch_refused(name: str) -> None:
    with pytest.raises(GitSpecError, match=r"^branch"):
        gitspec.check_branch(name)


def test_parent_ref() -> None:
    assert gitspec.parent_ref("${parents.fix.commit}") == ("fix", "commit")
    assert gitspec.parent_ref("${parents.a.b.branch}") == ("a.b", "branch")
    assert gitspec.parent_ref("main") is None
    assert gitspec.parent_ref("${parents.fix.tree}") is None
    assert gitspec.parent_ref("${parents..commit}") is None


@pytest.mark.parametrize(
    ("path", "normal"),
    [("src", "src"), ("src/api", "src/api"), ("docs/", "docs"), (".", "."), ("a.b/c-d", "a.b/c-d")],
)
def test_sparse_accepted(path: str, normal: str) -> None:
    assert gitspec.check_sparse(path) == normal


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("/abs", "relative"),
        ("-x", "relative"),
        ("!neg", "relative"),
        ("#c", "relative"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a//b", "empty components"),
        ("./a", "'.'"),
        ("a*", "'*'"),
        ("a?", "'?'"),
        ("a[b]", "'['"),
        ("a\\b", "'\\\\'"),
        ("a\nb", "'\\n'"),
        ("x" * 1025, "over 1024"),
    ],
)
def test_sparse_refused_with_one_reason(path: str, why: str) -> None:
    with pytest.raises(GitSpecError, match=r"^sparse path") as err:
        gitspec.check_sparse(path)
    assert why in str(err.value)


@pytest.mark.parametrize(
    "text", ["Ada <ada@example.org>", "A B-C <x>", "x" * 100 + " <" + "y" * 200 + ">"]
)
def test_author_accepted(text: str) -> None:
    assert gitspec.check_author(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Ada",
        "<ada@x>",
        "Ada <>",
        "Ada <a b>",
        "A<b <c>",
        "Ada <a@x> ",
        "Ada\n <a@x>",
        "Ada\r <a@x>",
        "x" * 101 + " <a>",
        "a <" + "y" * 201 + ">",
    ],
)
def test_author_refused(text: str) -> None:
    with pytest.raises(GitSpecError, match=r"^author"):
        gitspec.check_author(text)


def test_message_accepted() -> None:
    text = "Fix the parser\n\nIt said AgentFlow-Task in the middle, which is fine.\n"
    assert gitspec.check_message(text) == text
    assert gitspec.check_message("x" * 4096)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("x" * 4097, "over 4096"),
        ("fix\n\nAgentFlow-Fencing-Token: 99", "AgentFlow-"),
        ("fix\n\nagentflow-task: t-1", "AgentFlow-"),
        ("AGENTFLOW-Attempt: 3", "AgentFlow-"),
        ("fix\n   AgentFlow-Task: t", "AgentFlow-"),
        ("fix\r\nAgentFlow-Task: t", "AgentFlow-"),
        ("a\x00b", "NUL"),
    ],
)
def test_message_refused_with_one_reason(text: str, why: str) -> None:
    with pytest.raises(GitSpecError, match=r"^message") as err:
        gitspec.check_message(text)
    assert why in str(err.value)


def test_repo_key_names_one_mirror_per_repository() -> None:
    key = gitspec.repo_key("https://github.com/o/r.git")
    assert len(key) == 24 and all(c in "0123456789abcdef" for c in key)
    assert gitspec.repo_key("HTTPS://GitHub.com/o/r.git/") == key
    assert gitspec.repo_key("https://github.com/O/r.git") != key  # paths are case-sensitive
    assert gitspec.repo_key("/srv/r") != gitspec.repo_key("/srv/r.git")
    assert gitspec.repo_key("/srv/r/") == gitspec.repo_key("/srv/r")


def test_default_branch() -> None:
    assert gitspec.default_branch("t-abc") == "agentflow/t-abc"
    assert gitspec.check_branch(gitspec.default_branch("t-abc"))


# --- WorkspaceSpec -------------------------------------------------------------------------------


def test_spec_wire_omits_defaults_and_round_trips() -> None:
    bare = WorkspaceSpec(repo="/srv/r.git")
    assert bare.to_wire() == {"repo": "/srv/r.git"}
    full = WorkspaceSpec(
        repo="git@h:o/r.git",
        ref="v1",
        branch="out",
        commit=True,
        push=False,
        sparse=("src", "docs"),
        message="m",
        author="A <a@b>",
    )
    wire = full.to_wire()
    assert wire == {
        "repo": "git@h:o/r.git",
        "ref": "v1",
        "branch": "out",
        "push": False,
        "sparse": ["src", "docs"],
        "message": "m",
        "author": "A <a@b>",
    }
    assert WorkspaceSpec.from_wire(wire) == full
    assert WorkspaceSpec.from_wire({"repo": "/r", "sparse": ["a/"]}).sparse == ("a",)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ({}, "needs a repo"),
        ([], "must be an object"),
        ({"repo": "/r", "extra": 1}, "unknown fields: extra"),
        ({"repo": "ext::sh"}, "repo"),
        ({"repo": 5}, "repo must be a string"),
        ({"repo": "/r", "ref": "-x"}, "ref"),
        ({"repo": "/r", "branch": "HEAD"}, "branch"),
        ({"repo": "/r", "commit": False}, "push needs commit"),
        ({"repo": "/r", "commit": "no", "push": False}, "commit must be true or false"),
        ({"repo": "/r", "push": 0}, "push must be true or false"),
        ({"repo": "/r", "sparse": "src"}, "sparse must be a list"),
        ({"repo": "/r", "sparse": ["../x"]}, "sparse path"),
        ({"repo": "/r", "sparse": [f"d{i}" for i in range(MAX_SPARSE + 1)]}, "over 256"),
        ({"repo": "/r", "message": "AgentFlow-Task: x"}, "message"),
        ({"repo": "/r", "author": "nobody"}, "author"),
    ],
)
def test_spec_from_wire_refuses_with_one_reason(wire: Any, why: str) -> None:
    with pytest.raises(GitSpecError, match=why):
        WorkspaceSpec.from_wire(wire)


def test_spec_constructor_checks_too() -> None:
    with pytest.raises(GitSpecError, match="push needs commit"):
        WorkspaceSpec(repo="/r", commit=False)
    assert WorkspaceSpec(repo="/r", commit=False, push=False).to_wire() == {
        "repo": "/r",
        "commit": False,
        "push": False,
    }


# --- WorkspaceResult -----------------------------------------------------------------------------


def test_result_wire_omits_empty_fields_and_round_trips() -> None:
    assert WorkspaceResult(base=SHA).to_wire() == {"base": SHA}
    result = WorkspaceResult(
        base=SHA,
        commit=SHA.replace("a", "c"),
        branch="agentflow/t-1",
        pushed=True,
        files=(
            FileChange(path="a.txt", insertions=3, deletions=1),
            FileChange(path="img.png", insertions=-1, deletions=-1),
        ),
        files_total=2,
        insertions=3,
        deletions=1,
        merged=("api", "ui"),
        prepare_ms=0,
    )
    wire = result.to_wire()
    assert wire["files"] == [["a.txt", 3, 1], ["img.png", -1, -1]]
    assert wire["merged"] == ["api", "ui"] and wire["prepare_ms"] == 0
    assert "conflicts" not in wire
    assert WorkspaceResult.from_wire(wire) == result


def test_result_conflict_has_no_commit() -> None:
    wire = {"base": SHA, "conflicts": ["a.txt", "x/y.py"]}
    assert WorkspaceResult.from_wire(wire).conflicts == ("a.txt", "x/y.py")


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ({}, "needs a base"),
        ({"base": SHA, "x": 1}, "unknown fields"),
        ({"base": "A" * 40}, "base must be 40 or 64"),
        ({"base": SHA[:39]}, "base must be 40 or 64"),
        ({"base": SHA, "commit": "HEAD"}, "commit must be 40 or 64"),
        ({"base": SHA, "branch": "refs/heads/x", "commit": SHA}, "branch"),
        ({"base": SHA, "pushed": True}, "pushed needs a commit"),
        ({"base": SHA, "pushed": 1}, "pushed must be true or false"),
        ({"base": SHA, "files": [["a", 1, 0]], "files_total": 1}, "no commit has no changed"),
        ({"base": SHA, "commit": SHA, "files": [["a", 1]]}, "files items"),
        ({"base": SHA, "commit": SHA, "files": [["a", True, 0]]}, "integers"),
        ({"base": SHA, "commit": SHA, "files": [["a", -1, 0]], "files_total": 1}, "insertions"),
        ({"base": SHA, "commit": SHA, "files": [["", 1, 0]], "files_total": 1}, "empty"),
        ({"base": SHA, "commit": SHA, "files": [["a\x00", 1, 0]], "files_total": 1}, "NUL"),
        ({"base": SHA, "commit": SHA, "files": [["a", 1, 0]]}, "files_total must count"),
        ({"base": SHA, "commit": SHA, "files": [["a", 1, 0]] * (MAX_FILES + 1)}, "over 1000"),
        ({"base": SHA, "conflicts": ["a"] * (MAX_FILES + 1)}, "over 1000"),
        ({"base": SHA, "conflicts": "a.txt"}, "conflicts must be a list"),
        ({"base": SHA, "insertions": -2}, "insertions"),
        ({"base": SHA, "merged": ["a b"]}, "merged"),
        ({"base": SHA, "merged": ["a"] * 101}, "over 100"),
        ({"base": SHA, "prepare_ms": -1}, "prepare_ms"),
        ({"base": SHA, "prepare_ms": 1.5}, "prepare_ms"),
    ],
)
def test_result_from_wire_refuses_with_one_reason(wire: Any, why: str) -> None:
    with pytest.raises(GitSpecError, match=why):
        WorkspaceResult.from_wire(wire)


def test_result_paths_bounded_together() -> None:
    long = "p" * 1000
    files = [[f"{i}{long}", 1, 0] for i in range(MAX_PATHS_CHARS // 900)]
    with pytest.raises(GitSpecError, match="over 65536 characters"):
        WorkspaceResult.from_wire(
            {"base": SHA, "commit": SHA, "files": files, "files_total": len(files)}
        )


# --- the pure refname check agrees with git ------------------------------------------------------

_GIT = shutil.which("git")
_REF_ALPHABET = st.sampled_from([*"ab/.-@{}~^:?*[\\ lock", "\x7f", "..", ".lock"])


def _git_accepts(ref: str) -> bool:
    assert _GIT is not None
    done = subprocess.run(
        [_GIT, "check-ref-format", "--allow-onelevel", ref], capture_output=True, check=False
    )
    return done.returncode == 0


@pytest.mark.skipif(_GIT is None, reason="git is not installed")
@settings(max_examples=200, deadline=None)
@given(st.lists(_REF_ALPHABET, min_size=1, max_size=8).map("".join))
def test_refname_check_agrees_with_git(ref: str) -> None:
    ours = True
    try:
        gitspec.check_ref(ref)
    except GitSpecError:
        ours = False
    # we refuse a leading '-' (an option to git) and '${' placeholders that are not parent refs
    if ref.startswith("-") or ref.startswith("${"):
        assert not ours or gitspec.parent_ref(ref) is not None
        return
    assert ours == _git_accepts(ref), ref
