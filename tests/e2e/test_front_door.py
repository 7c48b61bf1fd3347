"""What a new user meets first (issue 13): a master's address answers with links, the API docs
are at the conventional paths, and the ``agentflow`` command explains itself however it is
started. Real master processes and the real command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentflow._version import __version__
from tests.e2e.procs import Processes
from tests.e2e.test_cli import CLI, run

TOKEN = "front-door-admin-token"
DOCS = ("/docs", "/api/docs", "/redoc")
DOCUMENTS = ("/openapi.json", "/api/openapi.json")


@pytest.fixture(scope="module")
def masters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An open master and one started with ``--api-token``."""
    procs = Processes(Path(tmp_path_factory.mktemp("front")))
    try:
        _, open_url = procs.master("open")
        _, guarded_url = procs.master("guarded", None, "--api-token", TOKEN)
        yield open_url, guarded_url
    finally:
        procs.close()


def _get(url: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(url, headers=headers, timeout=10)


def test_the_root_is_an_index_whose_links_all_answer(masters: tuple[str, str]) -> None:
    url, _ = masters
    index = _get(url + "/")
    assert index.status_code == 200 and index.headers["content-type"] == "application/json"
    body = index.json()
    assert body["name"] == "AgentFlow" and body["version"] == __version__
    assert set(body["links"]) == {"docs", "openapi", "health", "metrics", "api"}
    for name, path in body["links"].items():
        assert _get(url + path).status_code == 200, name
    collections = _get(url + body["links"]["api"]).json()["links"]
    assert collections["tasks"] == "/api/v1/tasks"
    for name, path in collections.items():
        if name != "tokens":  # a master without --api-token makes no tokens
            assert _get(url + path).status_code == 200, name


def test_the_docs_are_at_the_conventional_paths_and_the_old_ones(
    masters: tuple[str, str],
) -> None:
    url, _ = masters
    for path in DOCS:
        page = _get(url + path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in page.text, path  # the page loads the document from here
    documents = [_get(url + path).json() for path in DOCUMENTS]
    assert documents[0] == documents[1]
    assert documents[0]["info"]["version"] == __version__
    assert "/" in documents[0]["paths"] and "/api/v1/tasks" in documents[0]["paths"]


def test_with_an_api_token_the_index_and_docs_stay_open_and_the_api_does_not(
    masters: tuple[str, str],
) -> None:
    """A browser opening a page sends no bearer token, and the document is the same for every
    master of a version, so these need none; everything about the cluster still does."""
    _, url = masters
    for path in ("/", *DOCS, *DOCUMENTS, "/health"):
        assert _get(url + path).status_code == 200, path
        assert _get(url + path, token="wrong").status_code == 200, path
    for path in ("/api/v1", "/api/v1/tasks", "/metrics"):
        refused = _get(url + path)
        assert refused.status_code == 401, path
        assert refused.headers["content-type"] == "application/problem+json"
        assert _get(url + path, token=TOKEN).status_code == 200, path
    assert _get(url + "/openapi.json").json() == _get(url + "/openapi.json", TOKEN).json()


def test_the_browser_guard_still_covers_the_open_pages(masters: tuple[str, str]) -> None:
    _, url = masters
    rebound = _get(url + "/docs", Host="evil.example")
    assert rebound.status_code == 421
    foreign = _get(url + "/openapi.json", Origin="http://evil.example")
    assert foreign.status_code == 403
    posted = httpx.post(url + "/", json={}, timeout=10)  # open path, but not a way in
    assert posted.status_code == 405


# -- the command ---------------------------------------------------------------------------------


def test_bare_agentflow_prints_help_and_succeeds() -> None:
    done = run()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: agentflow")
    assert "submit" in done.stdout and "Shell completion" in done.stdout
    assert done.stderr == ""


def test_python_dash_m_agentflow_is_the_same_command() -> None:
    def module(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "agentflow", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    done = module("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python -m agentflow")
    assert "workflow" in done.stdout
    version = module("--version")
    assert version.returncode == 0 and __version__ in version.stdout
    wrong = module("tasks", "--master-url", "ftp://nope")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: master URL must start")


def test_bash_completion_completes_the_commands() -> None:
    env = os.environ | {"_AGENTFLOW_COMPLETE": "bash_source"}
    source = subprocess.run([CLI], env=env, capture_output=True, text=True, timeout=60, check=True)
    script = source.stdout
    assert "_agentflow_completion()" in script
    assert "complete -o nosort -F _agentflow_completion agentflow" in script
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to load the completion into")
    # What the README says to put in ~/.bashrc, then what bash does on `agentflow wor<TAB>`.
    session = (
        'eval "$(_AGENTFLOW_COMPLETE=bash_source agentflow)"; '
        "COMP_WORDS=(agentflow wor); COMP_CWORD=1; _agentflow_completion agentflow; "
        'echo "${COMPREPLY[@]}"'
    )
    path = f"{Path(CLI).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [bash, "-c", session],
        env=os.environ | {"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["worker", "workers", "workflow"]
