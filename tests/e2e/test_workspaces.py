"""Git workspaces end to end (design 19 §6): a real master, two real workers, real git remotes.

One cluster serves the module: a master and workers w1 and w2 (labels ``node=w1``/``node=w2``
to place a task), each with its own ``--workspace-dir`` and a token for the SmartHttp remote.
The remotes are bare repositories made with ``make_remote`` and reached by path, through ``git
daemon`` and through smart HTTP. What the workers did is read back with real git on the remote:
branches, trees and the AgentFlow trailers. A ``git`` shim first on the workers' PATH logs the
argv of every git child, so the credential test can look there too. The stale-push test has
a cluster of its own, with a short loss timeout, since it freezes a worker and the master.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow import Client
from agentflow.testing.gitserve import GitDaemon, SmartHttp, make_remote, seed_git
from agentflow.worker.gitrun import MIN_GIT, Git
from tests.e2e.procs import Proc, Processes, wait_until

pytestmark = pytest.mark.skipif(
    asyncio.run(Git().version()) < MIN_GIT, reason="git workspaces need git >= 2.38"
)

CLI = str(Path(sys.executable).parent / "agentflow")
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
SEED = {"README.md": "# seed\n", "shared.txt": "seed line\n"}


@dataclass
class Site:
    """The module's cluster and its git servers."""

    url: str
    master: Proc
    workers: dict[str, Proc]
    root: Path  # holds the remotes the servers export
    daemon: GitDaemon
    http: SmartHttp
    token: str
    shim_log: Path
    data_dir: Path

    def remote(self, name: str, how: str) -> tuple[Path, str, str]:
        """A fresh bare remote: its path, the URL to reach it ``how``, the seed commit."""
        bare, sha = make_remote(self.root, SEED, name=name)
        url = {
            "path": str(bare),
            "daemon": self.daemon.url(bare.name),
            "http": self.http.url(bare.name),
        }[how]
        return bare, url, sha


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("workspaces")
    root = tmp / "remotes"
    root.mkdir()
    token = "tok-" + secrets.token_hex(16)
    token_file = tmp / "git-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    shim_dir, shim_log = git_shim(tmp), tmp / "git-argv.log"
    procs = Processes(tmp)
    with GitDaemon(root) as daemon, SmartHttp(root, token) as http:
        try:
            master, url = procs.master("m1", None, "--log-level", "debug")
            env = {
                "PATH": f"{shim_dir}{os.pathsep}{os.environ['PATH']}",
                "AF_SHIM_LOG": str(shim_log),
                "SSH_AUTH_SOCK": str(tmp / "agent.sock"),  # a workspace task must not see it
            }
            flags = [
                "--slots", "2",
                "--git-token-file", str(token_file),
                "--git-token-url", f"http://127.0.0.1:{http.port}/",
                "--log-level", "debug",
            ]  # fmt: skip
            workers = {
                name: procs.worker(
                    name,
                    url,
                    *flags,
                    *("--labels", f"node={name}", "--workspace-dir", str(tmp / f"{name}-ws")),
                    env=env,
                )
                for name in ("w1", "w2")
            }
            wait_until(lambda: _workspace_workers(url) == 2, what="2 workers with workspaces")
            yield Site(url, master, workers, root, daemon, http, token, shim_log, tmp / "m1-data")
        finally:
            procs.close()


def git_shim(tmp: Path) -> Path:
    """A folder whose ``git`` appends its argv to ``$AF_SHIM_LOG``, then runs the real git."""
    real_git = shutil.which("git")
    assert real_git is not None
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "git").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "$AF_SHIM_LOG"\nexec {shlex.quote(real_git)} "$@"\n'
    )
    (shim / "git").chmod(0o755)
    return shim


def _workspace_workers(url: str) -> int:
    workers = httpx.get(url + "/api/v1/workers", timeout=5).json()["workers"]
    return sum(1 for w in workers if w["state"] in ("active", "busy") and w["workspaces"])


# -- helpers ---------------------------------------------------------------------------------


def rgit(bare: Path, *args: str) -> str:
    """git on the remote itself, as its owner would run it."""
    return seed_git("--git-dir", str(bare), *args)


def heads(bare: Path) -> dict[str, str]:
    listed = rgit(bare, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
    return dict(line.split(" ") for line in listed.splitlines())


def trailers(bare: Path, sha: str) -> dict[str, str]:
    text = rgit(bare, "log", "-1", "--format=%(trailers:only,unfold)", sha)
    return dict(line.split(": ", 1) for line in text.splitlines() if line)


def files_at(bare: Path, ref: str) -> set[str]:
    return set(rgit(bare, "ls-tree", "-r", "--name-only", ref).splitlines())


def run_workflow(site: Site, body: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """Submit ``body``, wait for its end; (its status, each task's full view by key)."""
    with Client(site.url) as client:
        submitted = client.submit_workflow(body)
        view = client.wait_workflow(submitted["id"], timeout_s=WAIT_S)
        assert view["status"] != "running", view
        return view["status"], {t["key"]: dict(client.get(t["id"]).raw) for t in view["tasks"]}


def cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with a HOME and a cache of its own (``diff`` and local workers keep theirs there)."""
    return subprocess.run(
        [CLI, *args],
        cwd=cwd,
        env={
            **os.environ,
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def two_writers(repo: str, a: str, b: str) -> dict[str, Any]:
    """Tasks a (on w1) and b (on w2) run shell commands ``a`` and ``b``; m merges them on main."""
    return {
        "name": "two-writers",
        "defaults": {"workspace": {"repo": repo}},
        "tasks": [
            {"id": "a", "command": a, "labels": {"node": "w1"}},
            {"id": "b", "command": b, "labels": {"node": "w2"}},
            {"id": "m", "dependencies": ["a", "b"], "merge": ["a", "b"],
             "workspace": {"branch": "main"}},
        ],
    }  # fmt: skip


# -- 1. two workers, two branches, one merge -------------------------------------------------


@pytest.mark.parametrize("how", ["path", "daemon"])
def test_two_workers_commit_on_their_branches_and_a_merge_lands_both_on_main(
    site: Site, how: str, tmp_path: Path
) -> None:
    bare, repo, seed = site.remote(f"two-{how}", how)
    status, tasks = run_workflow(
        site,
        two_writers(repo, "printf 'from a\\n' > a.txt", "printf 'from b\\nagain\\n' > b.txt"),
    )
    assert status == "completed", {k: t["reason"] for k, t in tasks.items()}
    a, b, m = tasks["a"], tasks["b"], tasks["m"]
    assert (a["worker_id"], b["worker_id"]) == ("w1", "w2")
    for task, path, lines in ((a, "a.txt", 1), (b, "b.txt", 2)):
        result = task["workspace_result"]
        branch = f"agentflow/{task['id']}"
        assert result["base"] == seed
        assert result["branch"] == branch and result["pushed"] is True
        assert result["files"] == [[path, lines, 0]]
        assert heads(bare)[branch] == result["commit"]
        assert rgit(bare, "rev-parse", result["commit"] + "^") == seed
        assert files_at(bare, branch) == {*SEED, path}
        assert trailers(bare, result["commit"]) == {
            "AgentFlow-Task": task["id"],
            "AgentFlow-Attempt": "1",
            "AgentFlow-Fencing-Token": str(task["fencing_token"]),
            "AgentFlow-Workflow": task["workflow_id"],
        }
    merged = m["workspace_result"]
    assert merged["merged"] == ["a", "b"] and merged["base"] == seed
    assert heads(bare)["main"] == merged["commit"] and merged["branch"] == "main"
    assert files_at(bare, "main") == {*SEED, "a.txt", "b.txt"}
    assert rgit(bare, "show", "main:b.txt") == "from b\nagain"
    assert sorted(p for p, _, _ in merged["files"]) == ["a.txt", "b.txt"]
    assert trailers(bare, "main")["AgentFlow-Task"] == m["id"]
    assert trailers(bare, "main")["AgentFlow-Fencing-Token"] == str(m["fencing_token"])
    # Both parents' commits are in main's history, which still starts at the seed.
    for task in (a, b):
        rgit(bare, "merge-base", "--is-ancestor", task["workspace_result"]["commit"], "main")
    rgit(bare, "merge-base", "--is-ancestor", seed, "main")

    shown = cli("diff", a["id"], "--master-url", site.url, cwd=tmp_path, home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "+++ b/a.txt" in shown.stdout and "+from a" in shown.stdout


# -- 2. a conflict ---------------------------------------------------------------------------


def test_a_conflict_fails_the_merge_with_its_files_and_leaves_main_alone(site: Site) -> None:
    bare, repo, seed = site.remote("conflict", "daemon")
    status, tasks = run_workflow(
        site,
        two_writers(
            repo,
            "printf 'A\\n' > shared.txt; printf 'a\\n' > only-a.txt",
            "printf 'B\\n' > shared.txt",
        ),
    )
    assert status == "failed"
    assert tasks["a"]["status"] == tasks["b"]["status"] == "completed"
    m = tasks["m"]
    assert m["status"] == "failed"
    assert "merge conflict" in m["reason"] and "shared.txt" in m["reason"]
    assert m["workspace_result"]["conflicts"] == ["shared.txt"]
    assert "commit" not in m["workspace_result"]
    assert heads(bare)["main"] == seed
    assert f"agentflow/{m['id']}" not in heads(bare)


# -- 3. a retry starts clean at the same base ------------------------------------------------


def test_a_retry_starts_clean_at_the_same_base_though_main_moved(
    site: Site, tmp_path: Path
) -> None:
    bare, repo, seed = site.remote("retry", "path")
    marks = tmp_path / "marks"
    marks.mkdir()
    # Attempt 1 leaves junk, says where it stands, waits for the test to move main, fails.
    # Attempt 2 records what it found and writes its own file.
    script = f"""
        m={shlex.quote(str(marks))}
        n=$(ls "$m" | grep -c '^head-' || true); n=$((n + 1))
        git rev-parse HEAD > "$m/head-$n"
        ls -A > "$m/files-$n"
        if [ "$n" = 1 ]; then
            echo junk > junk.txt
            touch "$m/first-running"
            i=0; while [ ! -e "$m/main-moved" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
            exit 3
        fi
        echo second > second.txt
    """
    with Client(site.url) as client:
        task = client.submit(
            script,
            workspace={"repo": repo},
            max_retries=1,
            retry_backoff_s=0,
        )
        wait_until((marks / "first-running").exists, WAIT_S, "attempt 1 running")
        work = site.root / "retry-seed"
        (work / "moved.txt").write_text("main moved on\n")
        seed_git("add", "moved.txt", cwd=work)
        seed_git("commit", "-q", "-m", "move main", cwd=work)
        seed_git("push", "-q", str(bare), "main", cwd=work)
        moved = heads(bare)["main"]
        assert moved != seed
        (marks / "main-moved").touch()
        done = client.wait(task.id, timeout_s=WAIT_S).raw
    assert done["status"] == "completed", done["reason"]
    assert [a["status"] for a in done["attempt_history"]] == ["failed", "completed"]
    assert (marks / "head-1").read_text() == (marks / "head-2").read_text() == seed + "\n"
    assert "junk.txt" not in (marks / "files-2").read_text().split()
    assert "moved.txt" not in (marks / "files-2").read_text().split()
    result = done["workspace_result"]
    assert result["base"] == seed and result["files"] == [["second.txt", 1, 0]]
    assert files_at(bare, f"agentflow/{task.id}") == {*SEED, "second.txt"}
    assert trailers(bare, result["commit"])["AgentFlow-Attempt"] == "2"
    assert heads(bare)["main"] == moved


# -- 4. a stale attempt's push is refused ---------------------------------------------------


def test_a_superseded_attempt_cannot_push_over_the_newer_one(
    procs: Processes, tmp_path: Path
) -> None:
    """Worker W is frozen past its loss timeout while attempt 1 runs, so attempt 2 runs on the
    other worker and pushes. Then, with the master frozen so that no cancel can reach W, attempt
    1's program ends and W resumes: it commits, finds the branch holding a higher token of its
    own task, and does not push."""
    bare, seed = make_remote(tmp_path, SEED, name="stale")
    marks = tmp_path / "marks"
    marks.mkdir()
    shim = git_shim(tmp_path)
    master, url = procs.master("m1", None, "--worker-timeout", "1s", "--heartbeat-interval", "0.2s")
    workers = {
        name: procs.worker(
            name,
            url,
            "--workspace-dir",
            str(tmp_path / f"{name}-ws"),
            env={
                "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
                "AF_SHIM_LOG": str(tmp_path / f"{name}-git.log"),
            },
        )
        for name in ("w1", "w2")
    }
    wait_until(lambda: _workspace_workers(url) == 2, what="2 workers with workspaces")
    script = f"""
        m={shlex.quote(str(marks))}
        n=$(ls "$m" | grep -c '^started-' || true); n=$((n + 1))
        touch "$m/started-$n"
        echo "attempt $n" > attempt.txt
        if [ "$n" = 1 ]; then
            i=0; while [ ! -e "$m/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
        fi
        touch "$m/exited-$n"
    """
    stopped: list[int] = []
    try:
        with Client(url) as client:
            task = client.submit(script, workspace={"repo": str(bare)}, max_retries=2)
            wait_until((marks / "started-1").exists, WAIT_S, "attempt 1 running")
            first = client.get(task.id).raw
            frozen = workers[first["worker_id"]]
            os.kill(frozen.pid, signal.SIGSTOP)
            stopped.append(frozen.pid)
            done = client.wait(task.id, timeout_s=WAIT_S).raw
        assert done["status"] == "completed", done["reason"]
        assert done["worker_id"] != first["worker_id"]
        newer = done["workspace_result"]["commit"]
        branch = f"agentflow/{task.id}"
        assert heads(bare)[branch] == newer
        os.kill(master.pid, signal.SIGSTOP)
        stopped.append(master.pid)
        (marks / "release").touch()
        wait_until((marks / "exited-1").exists, WAIT_S, "attempt 1's program ended")
        os.kill(frozen.pid, signal.SIGCONT)
        stopped.remove(frozen.pid)
        name = first["worker_id"]
        stale = tmp_path / f"{name}-ws" / "worktrees" / name / f"{task.id}-{first['fencing_token']}"
        frozen_git = tmp_path / f"{name}-git.log"
        wait_until(
            lambda: not stale.exists() and _pruned_after_commit(_lines(frozen_git)),
            WAIT_S,
            "the stale attempt's worktree removed",
        )
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    calls = _lines(frozen_git)
    assert any(" commit-tree " in ln for ln in calls)  # attempt 1 committed
    assert any("ls-remote" in ln and f"refs/heads/{branch}" in ln for ln in calls)
    assert not [ln for ln in calls if " push " in f" {ln} "]  # refused before any push
    assert heads(bare)[branch] == newer
    assert trailers(bare, branch)["AgentFlow-Fencing-Token"] == str(done["fencing_token"])
    assert rgit(bare, "rev-list", "--count", f"{seed}..{branch}") == "1"


def _pruned_after_commit(calls: list[str]) -> bool:
    made = [i for i, ln in enumerate(calls) if " commit-tree " in ln]
    return bool(made) and any("worktree prune" in ln for ln in calls[made[-1] :])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- 5. no changes ---------------------------------------------------------------------------


def test_a_task_that_changes_nothing_leaves_no_commit_and_no_branch(
    site: Site, tmp_path: Path
) -> None:
    bare, repo, seed = site.remote("nochange", "daemon")
    with Client(site.url) as client:
        task = client.submit("cat README.md > /dev/null", workspace={"repo": repo})
        done = client.wait(task.id, timeout_s=WAIT_S).raw
    assert done["status"] == "completed", done["reason"]
    result = done["workspace_result"]
    assert result["base"] == seed
    assert {"commit", "branch", "files", "pushed"}.isdisjoint(result)
    assert heads(bare) == {"main": seed}
    shown = cli("diff", task.id, "--master-url", site.url, cwd=tmp_path, home=tmp_path)
    assert (shown.returncode, shown.stdout) == (0, "no changes\n")


# -- 6. credentials --------------------------------------------------------------------------


def test_the_http_token_appears_in_no_output_log_view_or_data(site: Site) -> None:
    bare, repo, _ = site.remote("secret", "http")
    refusing, refusing_url, _ = site.remote("refusing", "http")
    hook = refusing / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho 'refused by policy for {site.token}' >&2\nexit 1\n")
    hook.chmod(0o755)
    with Client(site.url) as client:
        ok = client.submit("env; echo done > done.txt", workspace={"repo": repo})
        refused = client.submit("echo x > x.txt", workspace={"repo": refusing_url})
        ok_view = client.wait(ok.id, timeout_s=WAIT_S).raw
        refused_view = client.wait(refused.id, timeout_s=WAIT_S).raw
        outputs = [client.output(ok.id), client.output(refused.id)]
    assert ok_view["status"] == "completed", ok_view["reason"]
    assert heads(bare)[f"agentflow/{ok.id}"] == ok_view["workspace_result"]["commit"]
    assert refused_view["status"] == "failed"
    assert "pre-receive hook declined" in refused_view["reason"]
    assert heads(refusing) == {"main": rgit(refusing, "rev-parse", "main")}
    assert any(site.http.authorized(h) for h in site.http.seen_auth)  # the token was used

    env_lines = outputs[0]["stdout"].splitlines()
    assert not [ln for ln in env_lines if ln.startswith(("SSH_AUTH_SOCK=", "GIT_CONFIG"))]
    assert any(ln.startswith("AGENTFLOW_WORKSPACE=") for ln in env_lines)

    secret = site.token.encode()
    forms = [secret, base64.b64encode(secret), base64.b64encode(b"x-access-token:" + secret)]
    api = f"{site.url}/api/v1/tasks"
    views = [httpx.get(f"{api}/{t}", timeout=5).content for t in (ok.id, refused.id)]
    views.append(httpx.get(api, params={"limit": 100}, timeout=5).content)
    assert all(ok.id.encode() in v for v in (views[0], views[2]))
    texts: dict[str, bytes] = {
        "views": b"".join(views),
        "outputs": json.dumps(outputs).encode(),
        "master log": site.master.log_path.read_bytes(),
        "git argv": site.shim_log.read_bytes(),
        **{f"{n} log": w.log_path.read_bytes() for n, w in site.workers.items()},
        **{f"data {p}": p.read_bytes() for p in sorted(site.data_dir.rglob("*")) if p.is_file()},
    }
    assert b"push" in texts["git argv"]  # the shim saw the workers' git
    leaks = [where for where, data in texts.items() for form in forms if form in data]
    assert leaks == []


# -- 7. the fan-out example ------------------------------------------------------------------


def test_the_fanout_example_runs_and_its_merge_has_a_diff(site: Site, tmp_path: Path) -> None:
    example = (ROOT / "examples" / "fanout.yaml").read_text()
    merged: dict[str, Path] = {}
    for where in ("local", "cluster"):
        folder = tmp_path / where
        folder.mkdir()
        (folder / "fanout.yaml").write_text(example)
        repo = folder / "fanout-repo.git"
        subprocess.run(["sh", str(ROOT / "examples" / "fanout_repo.sh"), str(repo)], check=True)
        merged[where] = repo
    local = cli("run", str(tmp_path / "local" / "fanout.yaml"), cwd=ROOT, home=tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr
    parts = {"README.md", "docs/api.md", "docs/ui.md", "docs/guide.md"}
    assert files_at(merged["local"], "agentflow/fanout-merged") == parts

    # On a cluster the tasks outlive the run, so `agentflow diff` can show the merge.
    ran = cli(
        "run", str(tmp_path / "cluster" / "fanout.yaml"), "--master-url", site.url,
        cwd=tmp_path, home=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert files_at(merged["cluster"], "agentflow/fanout-merged") == parts
    with Client(site.url) as client:
        merge = next(t for t in client.list(limit=100) if t.raw["merge"] == ["api", "ui", "docs"])
    shown = cli("diff", merge.id, "--master-url", site.url, cwd=tmp_path, home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for part in ("docs/api.md", "docs/ui.md", "docs/guide.md"):
        assert f"+++ b/{part}" in shown.stdout
