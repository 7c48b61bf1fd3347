"""Agent messaging (issue 8): point-to-point latency, request-reply, throughput, on one master.

No workers. Every send is one command, committed (fsynced) and applied before it is answered;
receivers hold the WebSocket stream (``WS /api/v1/agents/{id}/stream``), which pushes each
message as it is applied. Both ends of every series run in this one asyncio process, so a
receiver's clock also holds whatever the sender's side was doing on the same event loop.

- point-to-point: a receiver holds its stream, a sender sends one message at a time (500 after a
  warm-up): from the sender issuing ``POST /api/v1/messages`` until the receiver has the frame.
  Targets p50 <= 1 ms, p99 <= 5 ms, measured with the SDK at both ends (``AsyncClient``,
  ``agent.send``, ``async for m in agent``, which acknowledges every message over the socket,
  one more command each), as an agent would see it. Repeated (``_raw``, no target) with a
  minimal HTTP/1.1 sender and a bare ``websockets`` receiver that acknowledges nothing.
- request-reply: a responder reads requests from its stream and replies with a
  ``POST /api/v1/messages`` carrying the correlation id; a requester sends
  ``POST /api/v1/messages/request`` and waits for the answer, 300 times in sequence: the round
  trip. Target p50 <= 50 ms (SDK: ``agent.request`` / ``agent.reply``); ``_raw`` again.
- throughput: 8 senders, sender i sending to receiver i one message at a time (one kept-alive
  connection each, the minimal client: ``httpx.AsyncClient``s in one process cost about 1.5 ms
  of CPU a request, see ``locks.py``), 8 receivers on their streams acknowledging every 100
  messages, for 3 s: messages received per second. Target >= 10,000/s. Also the send-to-receipt
  latency under that load, and the CPU of the master and of this process (``*_cpu_pct``, 100 =
  one core). Repeated with the SDK at both ends (``_sdk``, no target).

Every message carries its sender's sequence number, and every receiver checks that each sender
reaches it exactly once and in order; ``lost``, ``duplicates`` and ``out_of_order`` are printed
at the end and anything but 0 is an error (exit status 1). One master always (``--masters`` is
ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from _cluster import (
    LocalCluster,
    bench_args,
    deadline_guard,
    disk_figures,
    figure,
    percentile,
    report_latency,
    run_main,
)
from _rawhttp import RawConnection, cpu_s
from agentflow.client import AsyncClient
from agentflow.client._agents import AsyncAgent, Message

BENCH = "messages"
TARGET_P2P_P50_MS = 1.0
TARGET_P2P_P99_MS = 5.0
TARGET_RR_P50_MS = 50.0
TARGET_MESSAGES_PER_S = 10_000.0
PAIRS = 8
ACK_EVERY = 100  # throughput receivers acknowledge every this many messages
BATCH = 50  # messages per POST /api/v1/messages/batch in the batched series
WARMUP = 30
REQUEST_TIMEOUT_MS = 5000
ARRIVAL_TIMEOUT_S = 10.0  # a message not received this long after its send is an error
DRAIN_S = 15.0  # after a throughput run: until every sent message has been received
TIME_LIMIT_S = 240.0
BUDGET_S = 60.0  # per sequential series: stop early (and say so) rather than run unbounded


# -- exactly once, in order -------------------------------------------------------------------


@dataclass
class _Pair:
    """What one sender sent one receiver, and what the receiver saw of it."""

    sent: int = 0
    seen: set[int] = field(default_factory=set)
    last: int = -1
    duplicates: int = 0
    out_of_order: int = 0


class _Checker:
    """Every message counted at both ends, per (sender, receiver): sequence numbers from 0."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], _Pair] = {}

    def pair(self, sender: str, receiver: str) -> _Pair:
        return self.pairs.setdefault((sender, receiver), _Pair())

    def sent(self, sender: str, receiver: str) -> None:
        self.pair(sender, receiver).sent += 1

    def received(self, sender: str, receiver: str, seq: int) -> bool:
        """Note a receipt; True if it is a new one (not a duplicate)."""
        pair = self.pair(sender, receiver)
        if seq in pair.seen:
            pair.duplicates += 1
            return False
        if seq != pair.last + 1:
            pair.out_of_order += 1
        pair.seen.add(seq)
        pair.last = max(pair.last, seq)
        return True

    def complete(self, sender: str, receiver: str) -> bool:
        pair = self.pair(sender, receiver)
        return len(pair.seen) >= pair.sent

    def report(self) -> None:
        sent = sum(p.sent for p in self.pairs.values())
        lost = sum(max(0, p.sent - len(p.seen)) for p in self.pairs.values())
        unsent = sum(max(0, len(p.seen) - p.sent) for p in self.pairs.values())
        duplicates = sum(p.duplicates for p in self.pairs.values())
        out_of_order = sum(p.out_of_order for p in self.pairs.values())
        figure(BENCH, "checked_messages", sent, fmt="{:.0f}")
        figure(BENCH, "lost", lost, fmt="{:.0f}")
        figure(BENCH, "duplicates", duplicates, fmt="{:.0f}")
        figure(BENCH, "out_of_order", out_of_order, fmt="{:.0f}")
        ok = not (lost or unsent or duplicates or out_of_order)
        figure(BENCH, "order_ok", int(ok), fmt="{:.0f}")
        if not ok:
            raise RuntimeError(
                f"delivery broken: lost={lost} duplicates={duplicates}"
                f" out_of_order={out_of_order} received_but_not_sent={unsent}"
            )


# -- clients ----------------------------------------------------------------------------------


def _expect(status: int, body: bytes, wanted: int, what: str) -> dict[str, Any]:
    if status != wanted:
        raise RuntimeError(f"{what} answered {status}: {body[:300]!r}")
    out: dict[str, Any] = json.loads(body)
    return out


def _ws_url(url: str, agent: str) -> str:
    return "ws" + url.removeprefix("http") + f"/api/v1/agents/{agent}/stream"


async def _wait_live(conn: RawConnection, agent: str, timeout_s: float = 10.0) -> None:
    """Until the master counts ``agent`` live (a stream connects its session just after the
    handshake, so a request sent at once could find no responder)."""
    give_up = time.monotonic() + timeout_s
    while True:
        status, body = await conn.request("GET", f"/api/v1/agents/{agent}")
        if status == 200 and json.loads(body).get("live"):
            return
        if time.monotonic() > give_up:
            raise RuntimeError(f"agent {agent} not live after {timeout_s:g}s: {status} {body!r}")
        await asyncio.sleep(0.005)


class _Arrivals:
    """Receipt times by sequence number, for a sender waiting on its receiver."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.changed = asyncio.Event()
        self.failure: BaseException | None = None

    def got(self, seq: int, when: float) -> None:
        self.at[seq] = when
        self.changed.set()

    def reader_done(self, task: asyncio.Task[None]) -> None:
        """The receiver's task ended (it reads for ever): a waiting sender gives up at once."""
        if not task.cancelled():
            self.failure = task.exception() or EOFError("the stream ended")
            self.changed.set()

    async def wait(self, seq: int, what: str) -> float:
        give_up = time.monotonic() + ARRIVAL_TIMEOUT_S
        while seq not in self.at:
            if self.failure is not None:
                raise RuntimeError(f"{what}: the receiver failed: {self.failure!r}")
            left = give_up - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{what}: message {seq} not received in {ARRIVAL_TIMEOUT_S:g}s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.at.pop(seq)


async def _stop(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result


# -- receivers --------------------------------------------------------------------------------


async def _raw_receiver(
    url: str,
    agent: str,
    checker: _Checker,
    on_message: Callable[[dict[str, Any], float], Awaitable[None] | None],
    ack_every: int,
    connected: asyncio.Event,
) -> None:
    """A bare ``websockets`` stream: note each message (and hand it on), acknowledge every
    ``ack_every`` (0: never)."""
    async with connect(_ws_url(url, agent)) as ws:
        connected.set()
        await _read_frames(ws, agent, checker, on_message, ack_every)


async def _read_frames(
    ws: ClientConnection,
    agent: str,
    checker: _Checker,
    on_message: Callable[[dict[str, Any], float], Awaitable[None] | None],
    ack_every: int,
) -> None:
    last_cursor = 0
    async for raw in ws:
        now = time.perf_counter()
        frame = json.loads(raw)
        if "message" not in frame:
            raise RuntimeError(f"stream of {agent}: {frame}")
        cursor, message = frame["cursor"], frame["message"]
        if cursor <= last_cursor:
            raise RuntimeError(f"stream of {agent}: cursor {cursor} after {last_cursor}")
        last_cursor = cursor
        if message["to"] == agent:
            checker.received(message["from"], agent, message["content"]["seq"])
        pending = on_message(message, now)
        if pending is not None:
            await pending
        if ack_every and cursor % ack_every == 0:
            await ws.send(json.dumps({"ack": cursor}))


async def _sdk_receiver(
    agent: AsyncAgent,
    checker: _Checker,
    on_message: Callable[[Message, float], Awaitable[None] | None],
) -> None:
    """``async for`` over the SDK's stream (which acknowledges each message as the loop asks
    for the next)."""
    async for message in agent:
        now = time.perf_counter()
        checker.received(message.sender, agent.id, message.content["seq"])
        pending = on_message(message, now)
        if pending is not None:
            await pending


# -- 1. point-to-point latency ---------------------------------------------------------------


def _note(arrivals: _Arrivals) -> Callable[[Any, float], None]:
    def note(message: Any, when: float) -> None:
        content = message["content"] if isinstance(message, dict) else message.content
        arrivals.got(content["seq"], when)

    return note


@dataclass
class _P2P:
    arrived_ms: list[float] = field(default_factory=list)  # until the receiver has the frame
    answered_ms: list[float] = field(default_factory=list)  # until the sender has its 201


async def _p2p_raw(url: str, n: int, budget_s: float, checker: _Checker) -> _P2P:
    sender, receiver = "p2p-raw-s", "p2p-raw-r"
    arrivals, connected = _Arrivals(), asyncio.Event()
    conn = RawConnection(url)
    reader = asyncio.create_task(
        _raw_receiver(url, receiver, checker, _note(arrivals), 0, connected)
    )
    reader.add_done_callback(arrivals.reader_done)
    out = _P2P()
    try:
        await asyncio.wait_for(connected.wait(), 10.0)
        await _wait_live(conn, receiver)
        give_up = time.monotonic() + budget_s
        for seq in range(WARMUP + n):
            if time.monotonic() > give_up and len(out.arrived_ms) >= 30:
                break
            body = {"from": sender, "to": receiver, "type": "Notification", "content": {"seq": seq}}
            t0 = time.perf_counter()
            status, answer = await conn.request("POST", "/api/v1/messages", body)
            t1 = time.perf_counter()
            _expect(status, answer, 201, "send")
            checker.sent(sender, receiver)
            arrived = await arrivals.wait(seq, "p2p_raw")
            if seq >= WARMUP:
                out.arrived_ms.append((arrived - t0) * 1000)
                out.answered_ms.append((t1 - t0) * 1000)
    finally:
        await conn.close()
        await _stop(reader)
    return out


async def _p2p_sdk(url: str, n: int, budget_s: float, checker: _Checker) -> _P2P:
    arrivals = _Arrivals()
    out = _P2P()
    async with (
        AsyncClient(url) as sending,
        AsyncClient(url) as receiving,
        sending.agent("p2p-s") as sender,
        receiving.agent("p2p-r") as receiver,
    ):
        reader = asyncio.create_task(_sdk_receiver(receiver, checker, _note(arrivals)))
        reader.add_done_callback(arrivals.reader_done)
        try:
            give_up = time.monotonic() + budget_s
            for seq in range(WARMUP + n):
                if time.monotonic() > give_up and len(out.arrived_ms) >= 30:
                    break
                t0 = time.perf_counter()
                await sender.send(receiver.id, "Notification", {"seq": seq})
                t1 = time.perf_counter()
                checker.sent(sender.id, receiver.id)
                arrived = await arrivals.wait(seq, "p2p")
                if seq >= WARMUP:
                    out.arrived_ms.append((arrived - t0) * 1000)
                    out.answered_ms.append((t1 - t0) * 1000)
        finally:
            await _stop(reader)
    return out


def _report_p2p(
    run: _P2P, suffix: str, target_p50: float | None = None, target_p99: float | None = None
) -> None:
    report_latency(
        BENCH, "p2p", run.arrived_ms, suffix, target_p50=target_p50, target_p99=target_p99
    )
    run.answered_ms.sort()
    for q in (50, 99):
        value = percentile(run.answered_ms, q)
        figure(BENCH, f"p2p_send_answered_p{q}_ms{suffix}", value, fmt="{:.2f}")


def point_to_point(url: str, n: int, budget_s: float, checker: _Checker) -> None:
    sdk = asyncio.run(_p2p_sdk(url, n, budget_s, checker))
    _report_p2p(sdk, "", target_p50=TARGET_P2P_P50_MS, target_p99=TARGET_P2P_P99_MS)
    _report_p2p(asyncio.run(_p2p_raw(url, n, budget_s, checker)), "_raw")


# -- 2. request-reply ------------------------------------------------------------------------


async def _rr_raw(url: str, n: int, budget_s: float, checker: _Checker) -> list[float]:
    requester, responder = "rr-raw-a", "rr-raw-svc"
    ask, answer_conn, connected = RawConnection(url), RawConnection(url), asyncio.Event()

    async def respond(message: dict[str, Any], when: float) -> None:
        if not message["requires_response"]:
            return
        body = {
            "from": responder,
            "to": message["from"],
            "type": "TaskResponse",
            "correlation_id": message["correlation_id"] or message["id"],
            "content": {"seq": message["content"]["seq"]},
        }
        status, answer = await answer_conn.request("POST", "/api/v1/messages", body)
        _expect(status, answer, 201, "reply")

    reader = asyncio.create_task(
        _raw_receiver(url, responder, checker, respond, ACK_EVERY, connected)
    )
    samples: list[float] = []
    try:
        await asyncio.wait_for(connected.wait(), 10.0)
        await _wait_live(ask, responder)
        give_up = time.monotonic() + budget_s
        for seq in range(WARMUP + n):
            if time.monotonic() > give_up and len(samples) >= 30:
                break
            if reader.done():
                await reader
                raise RuntimeError("the responder's stream ended")
            body = {
                "from": requester,
                "to": responder,
                "type": "TaskRequest",
                "content": {"seq": seq},
                "timeout_ms": REQUEST_TIMEOUT_MS,
            }
            t0 = time.perf_counter()
            status, answer = await ask.request("POST", "/api/v1/messages/request", body)
            t1 = time.perf_counter()
            result = _expect(status, answer, 200, "request")
            checker.sent(requester, responder)
            _check_reply(result["request"], result["reply"], seq, responder)
            if seq >= WARMUP:
                samples.append((t1 - t0) * 1000)
    finally:
        await ask.close()
        await answer_conn.close()
        await _stop(reader)
    return samples


def _check_reply(request: dict[str, Any], reply: dict[str, Any], seq: int, responder: str) -> None:
    if (
        reply["correlation_id"] != request["correlation_id"]
        or reply["from"] != responder
        or reply["content"] != {"seq": seq}
    ):
        raise RuntimeError(f"request {seq}: wrong reply {reply} to {request}")


async def _rr_sdk(url: str, n: int, budget_s: float, checker: _Checker) -> list[float]:
    samples: list[float] = []
    async with (
        AsyncClient(url) as asking,
        AsyncClient(url) as answering,
        asking.agent("rr-a") as requester,
        answering.agent("rr-svc") as responder,
    ):

        async def respond(message: Message, when: float) -> None:
            if message.requires_response:
                await responder.reply(message, "TaskResponse", {"seq": message.content["seq"]})

        reader = asyncio.create_task(_sdk_receiver(responder, checker, respond))
        try:
            give_up = time.monotonic() + budget_s
            for seq in range(WARMUP + n):
                if time.monotonic() > give_up and len(samples) >= 30:
                    break
                if reader.done():
                    await reader
                    raise RuntimeError("the responder's stream ended")
                t0 = time.perf_counter()
                reply = await requester.request(
                    responder.id, "TaskRequest", {"seq": seq}, timeout_s=REQUEST_TIMEOUT_MS / 1000
                )
                t1 = time.perf_counter()
                checker.sent(requester.id, responder.id)
                if reply.sender != responder.id or reply.content != {"seq": seq}:
                    raise RuntimeError(f"request {seq}: wrong reply {reply}")
                if seq >= WARMUP:
                    samples.append((t1 - t0) * 1000)
        finally:
            await _stop(reader)
    return samples


def request_reply(url: str, n: int, budget_s: float, checker: _Checker) -> None:
    samples = asyncio.run(_rr_sdk(url, n, budget_s, checker))
    report_latency(BENCH, "request_reply", samples, target_p50=TARGET_RR_P50_MS)
    samples = asyncio.run(_rr_raw(url, n, budget_s, checker))
    report_latency(BENCH, "request_reply", samples, "_raw")


# -- 3. throughput ----------------------------------------------------------------------------


@dataclass
class _Window:
    start: float = float("inf")
    stop: float = float("inf")
    received: int = 0
    sent: int = 0
    latency_ms: list[float] = field(default_factory=list)
    sent_at: dict[str, list[float]] = field(default_factory=dict)

    def arrived(self, sender: str, seq: int, when: float) -> None:
        if self.start <= when < self.stop:
            self.received += 1
            self.latency_ms.append((when - self.sent_at[sender][seq]) * 1000)


async def _throughput(
    url: str,
    seconds: float,
    sdk: bool,
    checker: _Checker,
    master_cpu: Callable[[], float],
    batch: int = 1,
) -> tuple[_Window, float, float, float]:
    """The window, how long the CPU was counted, and the master's and this process's CPU
    seconds in that time. ``batch`` > 1: each raw sender posts that many at a time to
    ``/api/v1/messages/batch``."""
    tag = "tps" if sdk else ("tp" if batch == 1 else f"tpb{batch}")
    senders = [f"{tag}-s{i}" for i in range(PAIRS)]
    receivers = [f"{tag}-r{i}" for i in range(PAIRS)]
    window = _Window(sent_at={s: [] for s in senders})
    stop_sending = asyncio.Event()
    errors: list[str] = []

    def note(message: Any, when: float) -> None:
        if isinstance(message, dict):
            sender, seq = message["from"], message["content"]["seq"]
        else:
            sender, seq = message.sender, message.content["seq"]
        window.arrived(sender, seq, when)

    async def send_batches(i: int) -> None:
        conn = RawConnection(url)
        sender, receiver = senders[i], receivers[i]
        try:
            seq = 0
            while not stop_sending.is_set() and not errors:
                body = {
                    "messages": [
                        {
                            "from": sender,
                            "to": receiver,
                            "type": "Notification",
                            "content": {"seq": seq + k},
                        }
                        for k in range(batch)
                    ]
                }
                window.sent_at[sender].extend([time.perf_counter()] * batch)
                status, answer = await conn.request("POST", "/api/v1/messages/batch", body)
                if status != 201 or json.loads(answer)["refused"]:
                    errors.append(f"batch {sender} -> {receiver}: {status} {answer[:300]!r}")
                    return
                for _ in range(batch):
                    checker.sent(sender, receiver)
                seq += batch
        finally:
            await conn.close()

    async def send_raw(i: int) -> None:
        if batch > 1:
            await send_batches(i)
            return
        conn = RawConnection(url)
        sender, receiver = senders[i], receivers[i]
        try:
            seq = 0
            while not stop_sending.is_set() and not errors:
                body = {
                    "from": sender,
                    "to": receiver,
                    "type": "Notification",
                    "content": {"seq": seq},
                }
                window.sent_at[sender].append(time.perf_counter())
                status, answer = await conn.request("POST", "/api/v1/messages", body)
                if status != 201:
                    errors.append(f"send {sender} -> {receiver}: {status} {answer[:300]!r}")
                    return
                checker.sent(sender, receiver)
                seq += 1
        finally:
            await conn.close()

    async def send_sdk(i: int, agent: AsyncAgent) -> None:
        sender, receiver = senders[i], receivers[i]
        seq = 0
        while not stop_sending.is_set() and not errors:
            window.sent_at[sender].append(time.perf_counter())
            await agent.send(receiver, "Notification", {"seq": seq})
            checker.sent(sender, receiver)
            seq += 1

    async with contextlib.AsyncExitStack() as stack:
        readers: list[asyncio.Task[None]] = []
        sdk_senders: list[AsyncAgent] = []
        probe = RawConnection(url)
        stack.push_async_callback(probe.close)
        if sdk:
            for i in range(PAIRS):
                out = await stack.enter_async_context(AsyncClient(url))
                sdk_senders.append(await stack.enter_async_context(out.agent(senders[i])))
                into = await stack.enter_async_context(AsyncClient(url))
                agent = await stack.enter_async_context(into.agent(receivers[i]))
                readers.append(asyncio.create_task(_sdk_receiver(agent, checker, note)))
        else:
            for i in range(PAIRS):
                connected = asyncio.Event()
                readers.append(
                    asyncio.create_task(
                        _raw_receiver(url, receivers[i], checker, note, ACK_EVERY, connected)
                    )
                )
                await asyncio.wait_for(connected.wait(), 10.0)
        try:
            for receiver in receivers:
                await _wait_live(probe, receiver)
            master_before, client_before = master_cpu(), cpu_s()
            window.start = time.perf_counter()
            window.stop = window.start + seconds
            if sdk:
                sending = [asyncio.create_task(send_sdk(i, sdk_senders[i])) for i in range(PAIRS)]
            else:
                sending = [asyncio.create_task(send_raw(i)) for i in range(PAIRS)]
            await asyncio.sleep(seconds)
            master_cpu_s, client_cpu_s = master_cpu() - master_before, cpu_s() - client_before
            elapsed = time.perf_counter() - window.start
            stop_sending.set()
            await asyncio.gather(*sending)
            if errors:
                raise RuntimeError(errors[0])
            # Every message sent must come, even those after the window.
            give_up = time.monotonic() + DRAIN_S
            while not all(checker.complete(s, r) for s, r in zip(senders, receivers, strict=True)):
                for reader in readers:
                    if reader.done():
                        await reader
                        raise RuntimeError("a receiver's stream ended")
                if time.monotonic() > give_up:
                    break  # the checker reports what is missing
                await asyncio.sleep(0.01)
        finally:
            await _stop(*readers)
    window.sent = sum(len(v) for v in window.sent_at.values())
    return window, elapsed, master_cpu_s, client_cpu_s


def throughput(
    cluster: LocalCluster, seconds: float, sdk: bool, checker: _Checker, batch: int = 1
) -> None:
    master = cluster.master
    assert master is not None
    window, elapsed, master_cpu_s, client_cpu_s = asyncio.run(
        _throughput(cluster.url, seconds, sdk, checker, lambda: master.stats().cpu_s, batch)
    )
    suffix = "_sdk" if sdk else ("" if batch == 1 else f"_batch{batch}")
    if not window.received:
        raise RuntimeError("no message received in the window")
    figure(
        BENCH,
        f"messages_per_s{suffix}",
        window.received / (window.stop - window.start),
        target=None if sdk else TARGET_MESSAGES_PER_S,
    )
    figure(BENCH, f"messages_received{suffix}", window.received, fmt="{:.0f}")
    figure(BENCH, f"messages_sent{suffix}", window.sent, fmt="{:.0f}")
    report_latency(BENCH, f"loaded_p2p_c{PAIRS}", window.latency_ms, suffix)
    figure(
        BENCH,
        f"master_cpu_ms_per_message{suffix}",
        master_cpu_s * 1000 / window.received,
        fmt="{:.3f}",
    )
    figure(BENCH, f"master_cpu_pct{suffix}", master_cpu_s / elapsed * 100)
    figure(BENCH, f"client_cpu_pct{suffix}", client_cpu_s / elapsed * 100)


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    seconds, n_p2p, n_rr, budget_s = (
        (1.0, 60, 30, BUDGET_S / 5) if args.quick else (3.0, 500, 300, BUDGET_S)
    )

    def body() -> None:
        disk_figures(BENCH)
        checker = _Checker()
        with (
            LocalCluster(masters=1, profile_dir=args.profile, name="messages") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            point_to_point(cluster.url, n_p2p, budget_s, checker)
            request_reply(cluster.url, n_rr, budget_s, checker)
            throughput(cluster, seconds, sdk=False, checker=checker)
            throughput(cluster, seconds, sdk=False, checker=checker, batch=BATCH)
            throughput(cluster, seconds, sdk=True, checker=checker)
            cluster.check_alive()
            if args.keep_logs:
                print(cluster.logs())
        checker.report()

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
