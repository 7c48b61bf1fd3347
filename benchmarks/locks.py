"""Distributed locks (issue 7): throughput, acquire latency and hand-off, on one master.

No workers; every acquire and release is one command, committed (fsynced) and applied before
it is answered.

- uncontended: 16 concurrent clients (asyncio, one kept-alive connection each, in this
  process), client i taking and releasing its own lock ``bench-{i}`` as session ``bench-{i}``
  (``wait_s=0``), for a fixed time: acquire+release pairs per second. Target >= 2,000/s. Also
  the p50/p99 of one acquire in that run, and the CPU the master and this load generator spent
  (``*_cpu_pct``, 100 = one core; the machine has 2 cores for both). The targeted series uses a
  minimal HTTP/1.1 client (as ``write_throughput.py`` does): 16 ``httpx.AsyncClient``s cost
  about 1.5 ms of CPU a request and would measure themselves; they run too (``_httpx``).
- acquire latency: one client (``httpx.Client``), sequential: acquire, then release, 500 times
  after a warm-up; only the acquire is timed. Target p50 <= 1.5 ms.
- hand-off: client A holds lock ``handoff``, client B waits for it in a blocking acquire
  (``wait_s=30``; B counts as waiting once ``GET /api/v1/locks/handoff`` lists it), A
  releases: the time from A sending the release to B having its grant. The roles alternate, 200
  times (``httpx.AsyncClient``s, one process). Target p50 <= 2 ms. The release's ``granted``
  list must name B's session and the token B got, and tokens must grow.

The two latency series are repeated with the minimal client (``_raw``, no target), to show how
much of each millisecond is the client's. One master always (``--masters`` is ignored).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from _cluster import (
    LocalCluster,
    bench_args,
    deadline_guard,
    disk_figures,
    figure,
    report_latency,
    run_main,
)
from _rawhttp import RawConnection, cpu_s

BENCH = "locks"
TARGET_PAIRS_PER_S = 2000.0
TARGET_ACQUIRE_P50_MS = 1.5
TARGET_HANDOFF_P50_MS = 2.0
CLIENTS = 16
TTL_S = 30.0
WAIT_S = 30.0  # the hand-off waiter's blocking acquire
WARMUP = 30
TIME_LIMIT_S = 240.0
BUDGET_S = 60.0  # per sequential series: stop early (and say so) rather than run unbounded


def _acquire_body(session: str, wait_s: float = 0.0) -> dict[str, Any]:
    return {"session": session, "ttl_s": TTL_S, "wait_s": wait_s}


def _ok(status: int, body: bytes, what: str) -> dict[str, Any]:
    """The JSON of a 200 answer; anything else ends the benchmark."""
    if status != 200:
        raise RuntimeError(f"{what} answered {status}: {body[:300]!r}")
    out: dict[str, Any] = json.loads(body)
    return out


class _Connection(Protocol):
    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class _HttpxConnection:
    """An ``httpx.AsyncClient`` limited to one kept-alive connection."""

    def __init__(self, url: str, timeout_s: float) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits)

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        answer = await self.http.request(method, path, json=body)
        return answer.status_code, answer.content

    async def close(self) -> None:
        await self.http.aclose()


class _SocketConnection:
    """The lock socket (``WS /api/v1/locks``): each ``POST /api/v1/locks/{name}/{op}`` becomes
    one frame, answered over the same socket, as the async SDK's leases do it."""

    def __init__(self, url: str) -> None:
        self.url = "ws" + url.removeprefix("http") + "/api/v1/locks"
        self.ws: Any = None
        self.ref = 0

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        from websockets.asyncio.client import connect

        if self.ws is None:
            self.ws = await connect(self.url)
        name, _, op = path.removeprefix("/api/v1/locks/").rpartition("/")
        self.ref += 1
        await self.ws.send(json.dumps({"ref": self.ref, "op": op, "name": name, **(body or {})}))
        answer = json.loads(await self.ws.recv())
        if answer.get("ref") != self.ref:
            raise RuntimeError(f"answer for ref {answer.get('ref')}, wanted {self.ref}")
        if "error" in answer:
            return int(answer["error"]["status"]), json.dumps(answer["error"]).encode()
        return 200, json.dumps(answer.get("grant", answer)).encode()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def _connect(url: str, raw: bool | str, timeout_s: float = 30.0) -> _Connection:
    if raw == "socket":
        return _SocketConnection(url)
    if raw:
        return RawConnection(url)
    return _HttpxConnection(url, timeout_s)


# -- 1. uncontended pairs, 16 concurrent clients --------------------------------------------


@dataclass
class _Run:
    pairs: int = 0
    acquire_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    master_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


async def _pairs(
    conn: _Connection, name: str, stop_at: float, out: _Run | None, errors: list[str]
) -> None:
    """Acquire and release lock ``name`` as session ``name`` until ``stop_at``; with ``out``
    None, once (a warm-up)."""
    acquire, release = f"/api/v1/locks/{name}/acquire", f"/api/v1/locks/{name}/release"
    body = _acquire_body(name)
    while not errors:
        t0 = time.perf_counter()
        status, answer = await conn.request("POST", acquire, body)
        t1 = time.perf_counter()
        if status != 200:
            errors.append(f"acquire {name}: {status} {answer[:300]!r}")
            return
        token = json.loads(answer)["token"]
        status, answer = await conn.request("POST", release, {"session": name, "token": token})
        if status != 200:
            errors.append(f"release {name}: {status} {answer[:300]!r}")
            return
        if out is None:
            return
        out.acquire_ms.append((t1 - t0) * 1000)
        out.pairs += 1
        if time.perf_counter() >= stop_at:
            return


async def _uncontended(
    url: str, clients: int, seconds: float, raw: bool | str, master_cpu: Callable[[], float]
) -> _Run:
    conns = [_connect(url, raw) for _ in range(clients)]
    ids = range(clients)
    names = [f"bench-{i}" for i in ids]
    run = _Run()
    errors: list[str] = []
    try:
        # Open every connection and make every lock before the clock starts.
        for _ in range(3):
            await asyncio.gather(*(_pairs(conns[i], names[i], 0.0, None, errors) for i in ids))
        master_before, client_before = master_cpu(), cpu_s()
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(_pairs(conns[i], names[i], stop_at, run, errors) for i in ids))
        run.elapsed_s = time.perf_counter() - start
        run.master_cpu_s, run.client_cpu_s = master_cpu() - master_before, cpu_s() - client_before
    finally:
        for conn in conns:
            await conn.close()
    if errors:
        raise RuntimeError(errors[0])
    return run


def uncontended(cluster: LocalCluster, seconds: float, raw: bool | str) -> None:
    """``raw``: True for the minimal HTTP client, False for httpx, "socket" for the lock
    socket (``_socket`` figures; the target applies to it too)."""
    master = cluster.master
    assert master is not None
    suffix = "_socket" if raw == "socket" else ("" if raw else "_httpx")
    run = asyncio.run(
        _uncontended(cluster.url, CLIENTS, seconds, raw, lambda: master.stats().cpu_s)
    )
    if not run.pairs:
        raise RuntimeError("no acquire+release pair finished")
    figure(
        BENCH,
        f"pairs_per_s{suffix}",
        run.pairs / run.elapsed_s,
        target=TARGET_PAIRS_PER_S if raw else None,
    )
    figure(BENCH, f"pairs{suffix}", run.pairs, fmt="{:.0f}")
    report_latency(BENCH, f"acquire_c{CLIENTS}", run.acquire_ms, suffix)
    figure(
        BENCH, f"master_cpu_ms_per_pair{suffix}", run.master_cpu_s * 1000 / run.pairs, fmt="{:.3f}"
    )
    figure(BENCH, f"master_cpu_pct{suffix}", run.master_cpu_s / run.elapsed_s * 100)
    figure(BENCH, f"client_cpu_pct{suffix}", run.client_cpu_s / run.elapsed_s * 100)


# -- 2. one client, sequential acquire latency -----------------------------------------------


def _sequential_httpx(url: str, name: str, n_pairs: int, budget_s: float) -> list[float]:
    acquire_ms: list[float] = []
    body = _acquire_body(name)
    give_up = time.monotonic() + budget_s
    with httpx.Client(base_url=url, timeout=30.0) as http:
        for i in range(WARMUP + n_pairs):
            if time.monotonic() > give_up and len(acquire_ms) >= 30:
                break
            t0 = time.perf_counter()
            answer = http.post(f"/api/v1/locks/{name}/acquire", json=body)
            t1 = time.perf_counter()
            token = _ok(answer.status_code, answer.content, f"acquire {name}")["token"]
            answer = http.post(
                f"/api/v1/locks/{name}/release", json={"session": name, "token": token}
            )
            _ok(answer.status_code, answer.content, f"release {name}")
            if i >= WARMUP:
                acquire_ms.append((t1 - t0) * 1000)
    return acquire_ms


async def _sequential_raw(url: str, name: str, n_pairs: int, budget_s: float) -> list[float]:
    acquire_ms: list[float] = []
    body = _acquire_body(name)
    give_up = time.monotonic() + budget_s
    conn = _connect(url, raw=True)
    try:
        for i in range(WARMUP + n_pairs):
            if time.monotonic() > give_up and len(acquire_ms) >= 30:
                break
            t0 = time.perf_counter()
            status, answer = await conn.request("POST", f"/api/v1/locks/{name}/acquire", body)
            t1 = time.perf_counter()
            token = _ok(status, answer, f"acquire {name}")["token"]
            status, answer = await conn.request(
                "POST", f"/api/v1/locks/{name}/release", {"session": name, "token": token}
            )
            _ok(status, answer, f"release {name}")
            if i >= WARMUP:
                acquire_ms.append((t1 - t0) * 1000)
    finally:
        await conn.close()
    return acquire_ms


def sequential(url: str, n_pairs: int, raw: bool, budget_s: float = BUDGET_S) -> None:
    if raw:
        samples = asyncio.run(_sequential_raw(url, "bench-seq-raw", n_pairs, budget_s))
        report_latency(BENCH, "acquire", samples, "_raw")
    else:
        samples = _sequential_httpx(url, "bench-seq", n_pairs, budget_s)
        report_latency(BENCH, "acquire", samples, target_p50=TARGET_ACQUIRE_P50_MS)


# -- 3. contended hand-off ------------------------------------------------------------------


async def _handoff(url: str, rounds: int, raw: bool | str, budget_s: float) -> list[float]:
    """Hand-off latencies in ms."""
    name = "handoff-socket" if raw == "socket" else ("handoff-raw" if raw else "handoff")
    sessions = (f"{name}-a", f"{name}-b")
    acquire, release = f"/api/v1/locks/{name}/acquire", f"/api/v1/locks/{name}/release"
    conns = [_connect(url, raw, WAIT_S + 30) for _ in sessions]
    probe = _connect(url, True if raw == "socket" else raw)  # GETs go over HTTP
    handoff_ms: list[float] = []
    try:
        holder = 0
        status, answer = await conns[0].request("POST", acquire, _acquire_body(sessions[0]))
        token = _ok(status, answer, f"acquire {name}")["token"]
        give_up = time.monotonic() + budget_s
        for i in range(WARMUP + rounds):
            if time.monotonic() > give_up and len(handoff_ms) >= 20:
                break
            waiter = 1 - holder
            got_at: list[float] = []

            async def wait_for_it(who: int = waiter, got_at: list[float] = got_at) -> int:
                status, answer = await conns[who].request(
                    "POST", acquire, _acquire_body(sessions[who], WAIT_S)
                )
                got_at.append(time.perf_counter())
                grant = _ok(status, answer, f"blocking acquire {name} by {sessions[who]}")
                token: int = grant["token"]
                return token

            blocked = asyncio.create_task(wait_for_it())
            # Release only once the master has the waiter queued.
            poll_until = time.monotonic() + 10.0
            while True:
                status, answer = await probe.request("GET", f"/api/v1/locks/{name}")
                view = _ok(status, answer, f"GET lock {name}")
                if [w["session"] for w in view["waiters"]] == [sessions[waiter]]:
                    break
                if blocked.done() or time.monotonic() > poll_until:
                    blocked.cancel()
                    raise RuntimeError(f"{sessions[waiter]} never queued for {name}: {view}")
                await asyncio.sleep(0.0005)
            sent_at = time.perf_counter()
            status, answer = await conns[holder].request(
                "POST", release, {"session": sessions[holder], "token": token}
            )
            released = _ok(status, answer, f"release {name} by {sessions[holder]}")
            new_token = await asyncio.wait_for(blocked, timeout=WAIT_S + 30)
            granted = [(g["session"], g["token"]) for g in released["granted"]]
            if granted != [(sessions[waiter], new_token)]:
                raise RuntimeError(
                    f"release by {sessions[holder]} reported granted={released['granted']},"
                    f" but {sessions[waiter]} got token {new_token}"
                )
            if new_token <= token:
                raise RuntimeError(f"fencing token went from {token} to {new_token}")
            if i >= WARMUP:
                handoff_ms.append((got_at[0] - sent_at) * 1000)
            holder, token = waiter, new_token
        status, answer = await conns[holder].request(
            "POST", release, {"session": sessions[holder], "token": token}
        )
        _ok(status, answer, f"final release {name}")
    finally:
        for conn in [*conns, probe]:
            await conn.close()
    return handoff_ms


def handoff(url: str, rounds: int, raw: bool | str, budget_s: float = BUDGET_S) -> None:
    samples = asyncio.run(_handoff(url, rounds, raw, budget_s))
    if raw == "socket":
        report_latency(BENCH, "handoff", samples, "_socket", target_p50=TARGET_HANDOFF_P50_MS)
    elif raw:
        report_latency(BENCH, "handoff", samples, "_raw")
    else:
        report_latency(BENCH, "handoff", samples, target_p50=TARGET_HANDOFF_P50_MS)


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    seconds, n_pairs, rounds, budget_s = (
        (1.0, 60, 30, BUDGET_S / 5) if args.quick else (3.0, 500, 200, BUDGET_S)
    )

    def body() -> None:
        disk_figures(BENCH)
        with (
            LocalCluster(masters=1, profile_dir=args.profile, name="locks") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            uncontended(cluster, seconds, raw=True)
            uncontended(cluster, seconds, raw="socket")
            uncontended(cluster, seconds, raw=False)
            sequential(cluster.url, n_pairs, raw=False, budget_s=budget_s)
            sequential(cluster.url, n_pairs, raw=True, budget_s=budget_s)
            handoff(cluster.url, rounds, raw=False, budget_s=budget_s)
            handoff(cluster.url, rounds, raw=True, budget_s=budget_s)
            handoff(cluster.url, rounds, raw="socket", budget_s=budget_s)
            cluster.check_alive()
            if args.keep_logs:
                print(cluster.logs())

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
