"""Real masters and workers, each on a host of a `Lab`, and the levers a nemesis pulls.

Masters m1..mN and workers w1..wK each get a host (a network namespace) of their own, so every
master binds the same ports (API 6767, Raft 6768) on its own address, and a partition between
hosts is real packet loss. One master (``small_disk_master``) keeps its data on a small tmpfs
that `fill_disk` fills to ENOSPC.

Every HTTP call here is made from the caller's network namespace: the caller must be on the
bridge (the runner enters its "ctl" host first), never the root namespace, which has no route
to the lab.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agentflow.testing.chaos.disk import DEFAULT_SIZE_MIB, SmallDisk
from agentflow.testing.chaos.netns import Host, HostProc, Lab

__all__ = ["ChaosCluster", "ConvergenceError", "Member", "wait_for"]

BIN = Path(sys.executable).parent
API_PORT = 6767
RAFT_PORT = 6768
HEARTBEAT = "0.5s"  # workers' heartbeat, as tests/e2e's clusters use
WORKER_TIMEOUT = "3s"  # a silent worker is lost within seconds: faults matter in a short run
WORKER_SLOTS = 4
HTTP_TIMEOUT_S = 2.0
STARTUP_TIMEOUT_S = 30.0
LEADER_TIMEOUT_S = 30.0
MEMBERSHIP_TIMEOUT_S = 30.0
MEMBERSHIP_CALL_S = 10.0  # a membership change commits before it is answered
POLL_S = 0.05
CLUSTER_PATH = "/api/v1/cluster"


class ConvergenceError(AssertionError):
    """The masters did not reach one applied index and digest in time (or diverged)."""


@dataclass
class Member:
    """A master or worker of the cluster: its host and, while it runs, its process."""

    name: str
    host: Host
    data_root: Path  # masters: where their data directories live
    generation: int = 0  # a rejoin starts over in data-<generation + 1>
    proc: HostProc | None = None
    paused: bool = False
    removed: bool = False  # a master taken out of the membership (until it rejoins)

    @property
    def data_dir(self) -> Path:
        return self.data_root / f"data-{self.generation}"

    @property
    def url(self) -> str:
        return f"http://{self.host.ip}:{API_PORT}"

    @property
    def raft_address(self) -> str:
        return f"{self.host.ip}:{RAFT_PORT}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(POLL_S)


class ChaosCluster:
    """``masters`` masters and ``workers`` workers on hosts of ``lab``."""

    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        *,
        masters: int = 3,
        workers: int = 2,
        token: str = "chaos-cluster-token",
        api_token: str | None = None,
        small_disk_master: str | None = "m3",
        disk_mib: int = DEFAULT_SIZE_MIB,
    ) -> None:
        self.lab = lab
        self.workdir = workdir
        self.token = token
        self.api_token = api_token
        self.disk: SmallDisk | None = None
        self.disk_master = small_disk_master
        self.masters: dict[str, Member] = {}
        self.workers: dict[str, Member] = {}
        for i in range(1, masters + 1):
            name = f"m{i}"
            root = workdir / name
            if name == small_disk_master:
                self.disk = SmallDisk(root / "disk", disk_mib)
                lab.on_close(self.disk.close)
                root = root / "disk"
            self.masters[name] = Member(name, lab.add_host(name), root)
        for i in range(1, workers + 1):
            name = f"w{i}"
            self.workers[name] = Member(name, lab.add_host(name), workdir / name)

    # -- processes ---------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """Every master's API URL (removed ones too: clients may still try them)."""
        return [m.url for m in self.masters.values()]

    def _member(self, name: str) -> Member:
        return self.masters[name] if name in self.masters else self.workers[name]

    def _auth(self) -> list[str]:
        return ["--api-token", self.api_token] if self.api_token else ["--insecure"]

    def _master_argv(self, master: Member, *, join: bool) -> list[str]:
        peers = ",".join(
            f"{m.name}={m.raft_address}"
            for m in self.masters.values()
            if m.name != master.name and not m.removed
        )
        argv = [str(BIN / "agentflow-master"), "--node-id", master.name, "--host", master.host.ip]
        argv += ["--port", str(API_PORT), "--raft-host", master.host.ip]
        argv += ["--raft-port", str(RAFT_PORT), "--peers", peers, "--cluster-token", self.token]
        argv += ["--data-dir", str(master.data_dir), "--heartbeat-interval", HEARTBEAT]
        argv += ["--worker-timeout", WORKER_TIMEOUT, "--log-level", "info", *self._auth()]
        return [*argv, "--join"] if join else argv

    def _worker_argv(self, worker: Member) -> list[str]:
        argv = [str(BIN / "agentflow-worker"), "--worker-id", worker.name]
        argv += ["--master-url", ",".join(self.urls), "--slots", str(WORKER_SLOTS)]
        argv += ["--group", "default", "--heartbeat-interval", HEARTBEAT, "--log-level", "info"]
        return argv + (["--api-token", self.api_token] if self.api_token else [])

    def _spawn(self, member: Member, argv: list[str]) -> None:
        assert not member.alive(), f"{member.name} is already running"
        member.data_root.mkdir(parents=True, exist_ok=True)
        env = {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        member.proc = member.host.spawn(argv, self.workdir / f"{member.name}.log", env)
        member.paused = False

    def _start_master(self, master: Member, *, join: bool = False) -> None:
        self._spawn(master, self._master_argv(master, join=join))

    def start(self) -> None:
        """Start every master, wait until each answers and one leads, then the workers and
        wait until the leader counts them live."""
        for master in self.masters.values():
            self._start_master(master)
        masters = list(self.masters.values())
        wait_for(lambda: all(self._healthy(m) for m in masters), STARTUP_TIMEOUT_S, "masters up")
        self.wait_leader()
        for worker in self.workers.values():
            self._spawn(worker, self._worker_argv(worker))
        wait_for(self._workers_live, STARTUP_TIMEOUT_S, "every worker live")

    def kill9(self, name: str) -> None:
        member = self._member(name)
        if member.proc is not None:
            # SIGKILL ends a stopped process too, but what was frozen with it on its host
            # (a worker's task bodies) would stay so: a crash leaves them running.
            member.host.signal_all(signal.SIGCONT)
            member.proc.kill9()
        member.paused = False

    def restart(self, name: str) -> None:
        """Start ``name`` again with the same data directory (after `kill9`)."""
        member = self._member(name)
        if member.alive():
            return
        if name in self.masters:
            assert not member.removed, f"{name} was removed: rejoin it instead"
            self._start_master(member)
            wait_for(lambda: self._healthy(member), STARTUP_TIMEOUT_S, f"{name} up")
        else:
            self._spawn(member, self._worker_argv(member))

    def pause(self, name: str) -> None:
        """Freeze ``name``'s host: every process on it, a worker's task bodies included (they
        run in sessions of their own), as a machine stalls."""
        member = self._member(name)
        if member.proc is not None and member.alive():
            member.host.signal_all(signal.SIGSTOP)
            member.paused = True

    def resume(self, name: str) -> None:
        member = self._member(name)
        member.host.signal_all(signal.SIGCONT)
        member.paused = False

    def down(self) -> list[str]:
        """Members not running (killed, crashed), removed masters excepted."""
        members = [*self.masters.values(), *self.workers.values()]
        return [m.name for m in members if not m.removed and not m.alive()]

    def close(self) -> None:
        for member in [*self.workers.values(), *self.masters.values()]:
            if member.proc is not None:
                with contextlib.suppress(OSError):
                    member.proc.stop()
        if self.disk is not None:
            self.disk.close()

    # -- the masters' own views --------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"} if self.api_token else {}

    def _request(
        self, method: str, url: str, *, timeout_s: float = HTTP_TIMEOUT_S, **kwargs: Any
    ) -> httpx.Response:
        return httpx.request(method, url, headers=self._headers(), timeout=timeout_s, **kwargs)

    def _healthy(self, member: Member) -> bool:
        assert member.proc is not None
        if not member.proc.alive():
            log = member.proc.log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{member.name} exited with {member.proc.popen.returncode}:\n{log}")
        try:
            return self._request("GET", member.url + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def status(self, name: str, *, digest: bool = False) -> dict[str, Any] | None:
        """``GET /api/v1/cluster`` on ``name``; None when it does not answer."""
        params = {"digest": "true"} if digest else {}
        try:
            response = self._request("GET", self.masters[name].url + CLUSTER_PATH, params=params)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        """Every member master's view with its digest (None: silent)."""
        return {
            name: self.status(name, digest=True) if m.alive() and not m.paused else None
            for name, m in self.masters.items()
            if not m.removed
        }

    def leader(self) -> str | None:
        """The master that says it leads and that a majority of the members name as leader."""
        views = {
            name: self.status(name) if m.alive() and not m.paused else None
            for name, m in self.masters.items()
            if not m.removed
        }
        named = [v["leader_id"] for v in views.values() if v is not None]
        for candidate in set(named) - {None}:
            own = views.get(candidate)
            if own is None or own["role"] != "leader":
                continue
            if named.count(candidate) * 2 > len(views):
                return str(candidate)
        return None

    def wait_leader(self, timeout_s: float = LEADER_TIMEOUT_S) -> str:
        found: list[str] = []

        def one() -> bool:
            leader = self.leader()
            found[:] = [leader] if leader else []
            return leader is not None

        wait_for(one, timeout_s, "a leader a majority agrees on")
        return found[0]

    def _workers_live(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        try:
            response = self._request("GET", self.masters[leader].url + "/api/v1/workers")
        except httpx.HTTPError:
            return False
        live = {w["id"] for w in response.json()["workers"] if w["state"] in ("active", "busy")}
        return set(self.workers) <= live

    def wait_converged(self, timeout_s: float = LEADER_TIMEOUT_S) -> str:
        """Wait until every member master answers with one applied index and one digest;
        that digest. Equal indexes with different digests is a divergence: raised at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            views = self.statuses()
            answered = [v for v in views.values() if v is not None]
            indexes = {v["state_applied_index"] for v in answered}
            digests = {v["state_digest"] for v in answered}
            if len(answered) == len(views) and len(indexes) == 1:
                if len(digests) != 1:
                    raise ConvergenceError(f"state diverged at {indexes}: {_brief(views)}")
                return str(digests.pop())
            if time.monotonic() > deadline:
                raise ConvergenceError(f"not converged in {timeout_s}s: {_brief(views)}")
            time.sleep(POLL_S)

    # -- leadership and membership -----------------------------------------------------------

    def transfer_leadership(self, to: str | None = None) -> str:
        """Ask the leader to hand over to ``to`` (None: its best successor); the new leader."""
        leader = self.wait_leader()
        url = self.masters[leader].url + CLUSTER_PATH + "/transfer-leadership"
        response = self._request("POST", url, json={"to": to})
        response.raise_for_status()
        return self.wait_leader()

    def _change(
        self, method: str, path: str, body: object, done: Callable[[httpx.Response], bool]
    ) -> None:
        """Ask the leader for a membership change until it answers ``done`` (an election or
        a change still being applied makes it refuse for a moment), within the deadline."""
        deadline = time.monotonic() + MEMBERSHIP_TIMEOUT_S
        why = ""
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                url = self.masters[leader].url + CLUSTER_PATH + path
                try:
                    response = self._request(method, url, json=body, timeout_s=MEMBERSHIP_CALL_S)
                except httpx.HTTPError as exc:
                    why = f"{type(exc).__name__}: {exc}"
                else:
                    if done(response):
                        return
                    why = f"{response.status_code} {response.text[:200]}"
            time.sleep(POLL_S)
        raise TimeoutError(f"{method} {path} not done in {MEMBERSHIP_TIMEOUT_S}s: {why}")

    def remove(self, name: str) -> None:
        """Take master ``name`` out of the membership, wait (a while) until the others applied
        it, then stop it and delete its data (docs/guide/cluster.md#membership)."""
        master = self.masters[name]
        assert not master.removed, f"{name} is already removed"
        gone = {200, 404}  # 404: not a member (any more)
        self._change("DELETE", f"/members/{name}", None, lambda r: r.status_code in gone)
        master.removed = True
        others = [m for m in self.masters.values() if not m.removed and m.alive()]
        with contextlib.suppress(TimeoutError):  # one cut off applies it once healed
            wait_for(
                lambda: all(_without(self.status(m.name), name) for m in others),
                MEMBERSHIP_TIMEOUT_S,
                f"every member applied the removal of {name}",
            )
        if master.proc is not None:
            master.proc.stop()
        shutil.rmtree(master.data_dir, ignore_errors=True)

    def rejoin(self, name: str) -> None:
        """Start removed master ``name`` afresh (``--join``, an empty data directory) and add
        it as a learner; the leader makes it a voter once it has caught up."""
        master = self.masters[name]
        assert master.removed, f"{name} is a member: remove it first"
        master.generation += 1
        master.removed = False
        try:
            self._start_master(master, join=True)
            wait_for(lambda: self._healthy(master), STARTUP_TIMEOUT_S, f"{name} up")
            body = {"id": name, "raft_address": master.raft_address, "api_url": master.url}
            # 409 "already a voter": the leader promoted it after an earlier try went through.
            self._change("POST", "/members", body, lambda r: r.status_code in (200, 409))
        except BaseException:
            # Not added (no quorum, say): still removed, so that a later rejoin starts over.
            if master.proc is not None:
                master.proc.stop()
            master.removed = True
            raise

    def voters(self) -> set[str]:
        """The voters as the leader sees them (itself included)."""
        view = self.status(self.wait_leader())
        members = view["members"] if view is not None else []
        return {m["id"] for m in members if m["role"] in ("leader", "voter")}

    # -- the small disk ----------------------------------------------------------------------

    def _disk_of(self, name: str) -> SmallDisk:
        assert self.disk is not None and name == self.disk_master, f"{name} has no small disk"
        return self.disk

    def fill_disk(self, name: str) -> int:
        return self._disk_of(name).fill()

    def free_disk(self, name: str) -> None:
        self._disk_of(name).free()


def _without(view: Mapping[str, Any] | None, name: str) -> bool:
    return view is not None and name not in {m["id"] for m in view["members"]}


def _brief(views: Mapping[str, Mapping[str, Any] | None]) -> str:
    return ", ".join(
        f"{n}: silent"
        if v is None
        else f"{n}: applied {v['state_applied_index']} digest {str(v['state_digest'])[:12]}"
        for n, v in views.items()
    )
