"""Agents in the SDK: send, broadcast, publish, request-reply, subscriptions, an inbox.

``client.agent("planner")`` opens a named session (renewed in the background while the agent
is open); inside a task, ``client.agent()`` is the task itself (its id is the agent id, live
while the task runs, and while the session lasts). Delivery is at-least-once:
:meth:`Agent.messages` acknowledges a message only when the loop asks for the next one, so a
crash in between means it comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from agentflow.client._core import LONG_POLL_S, renamed
from agentflow.client._sockets import FrameSocket, SocketDownError, SyncFrameSocket
from agentflow.errors import ClientError

if TYPE_CHECKING:
    from agentflow.client._async import AsyncClient
    from agentflow.client._sync import Client

__all__ = ["Agent", "AsyncAgent", "Message", "default_agent_id"]


def default_agent_id(name: str | None) -> str:
    """``name``, else ``$AGENTFLOW_AGENT_ID``, else the task this runs in."""
    agent_id = name or os.environ.get("AGENTFLOW_AGENT_ID") or os.environ.get("AGENTFLOW_TASK_ID")
    if not agent_id:
        raise ClientError("name the agent (outside a task there is no default agent id)")
    return agent_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    id: str
    sender: str
    to: str
    type: str
    content: Any
    correlation_id: str | None
    requires_response: bool
    timestamp: str | None
    cursor: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            id=data["id"],
            sender=data["from"],
            to=data["to"],
            type=data["type"],
            content=data.get("content"),
            correlation_id=data.get("correlation_id"),
            requires_response=bool(data.get("requires_response")),
            timestamp=data.get("timestamp"),
            cursor=data.get("cursor"),
        )


def _envelope(sender: str, to: str, type_: str, content: Any, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"from": sender, "type": type_, "content": content}
    if to.startswith("topic:"):
        body["topic"] = to[len("topic:") :]
    else:
        body["to"] = to
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _chunks(
    sender: str, messages: Iterable[tuple[str, str, Any]], size: int = 1000
) -> Iterator[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for to, type_, content in messages:
        batch.append(_envelope(sender, to, type_, content))
        if len(batch) == size:
            yield {"messages": batch}
            batch = []
    if batch:
        yield {"messages": batch}


class _AgentBase:
    def __init__(self, agent_id: str, ttl_s: float) -> None:
        self.id = agent_id
        self.ttl_s = ttl_s
        self._path = f"/api/v1/agents/{quote(agent_id, safe='')}"
        self._cursor: int | None = None  # the last cursor handed out by messages()

    @property
    def ttl(self) -> float:
        """Deprecated: :attr:`ttl_s`."""
        warnings.warn("Agent.ttl is deprecated, use Agent.ttl_s", DeprecationWarning, 2)
        return self.ttl_s

    def _send_body(
        self, to: str, type_: str, content: Any, **extra: Any
    ) -> tuple[str, dict[str, Any]]:
        return "/api/v1/messages", _envelope(self.id, to, type_, content, **extra)

    def _request_body(
        self, to: str, type_: str, content: Any, timeout_s: float
    ) -> tuple[str, dict[str, Any]]:
        path, body = self._send_body(to, type_, content)
        body["timeout_ms"] = max(1, round(timeout_s * 1000))
        body["id"] = "rq-" + os.urandom(8).hex()  # a retried request is the same request
        return path, body

    def _inbox_params(self, wait_s: float, after: int | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"wait_s": wait_s, "limit": limit}
        if after is not None:
            params["after"] = after
        return params

    def _reply_body(self, message: Message, type_: str, content: Any) -> dict[str, Any]:
        cid = message.correlation_id or message.id
        return _envelope(self.id, message.sender, type_, content, correlation_id=cid)


class Agent(_AgentBase):
    """A named session or the current task, talking through any master."""

    @renamed(ttl="ttl_s")
    def __init__(self, client: Client, agent_id: str, *, ttl_s: float = 30.0) -> None:
        super().__init__(agent_id, ttl_s)
        self._client = client
        self._stop = threading.Event()
        self._sender = SyncFrameSocket(client, self._path + "/stream?push=false")
        # A task opens a session too: that enters it in the registry (broadcasts reach it).
        self._client.request("POST", self._path + "/connect", json={"ttl_s": ttl_s})
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"agent-{agent_id}")
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            with contextlib.suppress(Exception):  # retried next round; the master may be moving
                self._client.request("POST", self._path + "/connect", json={"ttl_s": self.ttl_s})

    def close(self) -> None:
        """Acknowledge what was handled and end the session."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._cursor is not None:
            with contextlib.suppress(Exception):
                self.ack(self._cursor)
        self._thread.join()
        self._sender.close()
        with contextlib.suppress(Exception):
            self._client.request("POST", self._path + "/disconnect")

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------

    def send(self, to: str, type: str, content: Any = None, **extra: Any) -> dict[str, Any]:
        """To an agent id, ``*`` (every live agent) or ``topic:<name>``. ``extra``: ``ttl_ms``,
        ``correlation_id``, ``id`` (a retried send with the same id is delivered once)."""
        path, body = self._send_body(to, type, content, **extra)
        body.setdefault("id", "m-" + os.urandom(10).hex())
        try:
            return self._sender.call({"send": body})
        except SocketDownError:
            result: dict[str, Any] = self._client.request("POST", path, json=body)
            return result

    def send_many(self, messages: Iterable[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        """``(to, type, content)`` triples, in batches of up to 1,000 per durable command, in
        order. Each answer has ``recipients``, or ``error`` (a problem) if that one was refused."""
        out: list[dict[str, Any]] = []
        for chunk in _chunks(self.id, messages):
            answer = self._client.request("POST", "/api/v1/messages/batch", json=chunk)
            out.extend(answer["messages"])
        return out

    def broadcast(self, type: str, content: Any = None, **extra: Any) -> dict[str, Any]:
        return self.send("*", type, content, **extra)

    def publish(self, topic: str, type: str, content: Any = None, **extra: Any) -> dict[str, Any]:
        return self.send(f"topic:{topic}", type, content, **extra)

    @renamed(timeout="timeout_s")
    def request(
        self, to: str, type: str, content: Any = None, *, timeout_s: float = 30.0
    ) -> Message:
        """Send and wait for the reply. NoResponderError at once if ``to`` has no live session;
        TimeoutExpiredError if no reply came within ``timeout_s`` seconds."""
        path, body = self._request_body(to, type, content, timeout_s)
        answer = self._client.request(
            "POST", path + "/request", json=body, timeout_s=timeout_s + 30
        )
        return Message.from_json(answer["reply"])

    def reply(self, message: Message, type: str, content: Any = None) -> dict[str, Any]:
        """Answer ``message`` (a request): to its sender, with its correlation id."""
        result: dict[str, Any] = self._client.request(
            "POST", "/api/v1/messages", json=self._reply_body(message, type, content)
        )
        return result

    # -- receiving --------------------------------------------------------------------------

    def subscribe(self, pattern: str) -> None:
        self._client.request("PUT", f"{self._path}/subscriptions/{quote(pattern, safe='')}")

    def unsubscribe(self, pattern: str) -> None:
        self._client.request("DELETE", f"{self._path}/subscriptions/{quote(pattern, safe='')}")

    @renamed(wait="wait_s")
    def receive(
        self, *, wait_s: float = 0.0, after: int | None = None, limit: int = 100
    ) -> list[Message]:
        """What is in the inbox after ``after`` (default: after the last acknowledged), waiting
        up to ``wait_s`` seconds for something. Acknowledges nothing."""
        params = self._inbox_params(wait_s, after, limit)
        answer = self._client.request(
            "GET", self._path + "/inbox", params=params, timeout_s=wait_s + 30
        )
        return [Message.from_json(m) for m in answer["messages"]]

    def ack(self, upto: Message | int) -> None:
        cursor = upto if isinstance(upto, int) else upto.cursor
        self._client.request("POST", self._path + "/ack", json={"cursor": cursor})

    @renamed(idle_timeout="idle_timeout_s")
    def messages(self, *, idle_timeout_s: float | None = None) -> Iterator[Message]:
        """Messages as they arrive, for ever (or until none came for ``idle_timeout_s``). Each
        is acknowledged when the loop asks for the next one."""
        quiet_since = time.monotonic()
        idle_s = idle_timeout_s
        while not self._stop.is_set():
            wait_s = LONG_POLL_S if idle_s is None else max(0.0, idle_s)
            batch = self.receive(wait_s=min(wait_s, LONG_POLL_S), after=self._cursor)
            if not batch:
                if self._cursor is not None:
                    self.ack(self._cursor)
                if idle_s is not None and time.monotonic() - quiet_since >= idle_s:
                    return
                continue
            for message in batch:
                yield message
                self._cursor = message.cursor
            assert self._cursor is not None
            self.ack(self._cursor)
            quiet_since = time.monotonic()


class AsyncAgent(_AgentBase):
    """The asyncio agent: ``async for message in agent`` reads the WebSocket stream."""

    @renamed(ttl="ttl_s")
    def __init__(self, client: AsyncClient, agent_id: str, *, ttl_s: float = 30.0) -> None:
        super().__init__(agent_id, ttl_s)
        self._client = client
        self._renewer: asyncio.Task[None] | None = None
        self._sender = FrameSocket(client, self._path + "/stream?push=false")

    async def open(self) -> AsyncAgent:
        await self._client.request("POST", self._path + "/connect", json={"ttl_s": self.ttl_s})
        self._renewer = asyncio.create_task(self._renew())
        return self

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            with contextlib.suppress(Exception):
                await self._client.request(
                    "POST", self._path + "/connect", json={"ttl_s": self.ttl_s}
                )

    async def close(self) -> None:
        await self._sender.close()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
            with contextlib.suppress(Exception):
                await self._client.request("POST", self._path + "/disconnect")

    async def __aenter__(self) -> AsyncAgent:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, to: str, type: str, content: Any = None, **extra: Any) -> dict[str, Any]:
        """Over the agent's send socket (pipelined: concurrent sends share log entries), or by
        HTTP when the socket is down; the message id makes a resend deliver once."""
        path, body = self._send_body(to, type, content, **extra)
        body.setdefault("id", "m-" + os.urandom(10).hex())
        try:
            return await self._sender.call({"send": body})
        except SocketDownError:
            result: dict[str, Any] = await self._client.request("POST", path, json=body)
            return result

    async def send_many(self, messages: Iterable[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        """As :meth:`Agent.send_many`."""
        out: list[dict[str, Any]] = []
        for chunk in _chunks(self.id, messages):
            answer = await self._client.request("POST", "/api/v1/messages/batch", json=chunk)
            out.extend(answer["messages"])
        return out

    async def broadcast(self, type: str, content: Any = None, **extra: Any) -> dict[str, Any]:
        return await self.send("*", type, content, **extra)

    async def publish(
        self, topic: str, type: str, content: Any = None, **extra: Any
    ) -> dict[str, Any]:
        return await self.send(f"topic:{topic}", type, content, **extra)

    @renamed(timeout="timeout_s")
    async def request(
        self,
        to: str,
        type: str,
        content: Any = None,
        *,
        timeout_s: float = 30.0,
    ) -> Message:
        """As :meth:`Agent.request`."""
        path, body = self._request_body(to, type, content, timeout_s)
        answer = await self._client.request(
            "POST", path + "/request", json=body, timeout_s=timeout_s + 30
        )
        return Message.from_json(answer["reply"])

    async def reply(self, message: Message, type: str, content: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._client.request(
            "POST", "/api/v1/messages", json=self._reply_body(message, type, content)
        )
        return result

    async def subscribe(self, pattern: str) -> None:
        await self._client.request("PUT", f"{self._path}/subscriptions/{quote(pattern, safe='')}")

    async def unsubscribe(self, pattern: str) -> None:
        await self._client.request(
            "DELETE", f"{self._path}/subscriptions/{quote(pattern, safe='')}"
        )

    @renamed(wait="wait_s")
    async def receive(
        self, *, wait_s: float = 0.0, after: int | None = None, limit: int = 100
    ) -> list[Message]:
        """As :meth:`Agent.receive` (``async for`` reads the pushed stream instead)."""
        params = self._inbox_params(wait_s, after, limit)
        answer = await self._client.request(
            "GET", self._path + "/inbox", params=params, timeout_s=wait_s + 30
        )
        return [Message.from_json(m) for m in answer["messages"]]

    async def ack(self, upto: Message | int) -> None:
        cursor = upto if isinstance(upto, int) else upto.cursor
        await self._client.request("POST", self._path + "/ack", json={"cursor": cursor})

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Messages pushed over ``WS .../stream`` as they arrive; each acknowledged (over the
        socket) when the loop asks for the next one. Reconnects from the last cursor."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        while True:
            url = self._client.ws_url(self._path + "/stream")
            if self._cursor is not None:
                url += f"?after={self._cursor}"
            try:
                async with connect(url, **self._client.ws_options(url)) as ws:
                    async for raw in ws:
                        frame = json.loads(raw)
                        if "leader_url" in frame:  # not the leader: go to it (or on)
                            self._client.follow_leader(frame["leader_url"])
                            await asyncio.sleep(0.1)  # a failover takes a second or two
                            break
                        if "error" in frame:
                            raise ClientError(str(frame["error"]))
                        message = Message.from_json(frame["message"] | {"cursor": frame["cursor"]})
                        yield message
                        self._cursor = message.cursor
                        await ws.send(json.dumps({"ack": self._cursor}))
            except (OSError, WebSocketException):
                await asyncio.sleep(0.2)  # a master went away: reconnect, from our cursor
