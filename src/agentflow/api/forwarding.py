"""Any master accepts any request.

On a follower, a write is proxied to the leader and the leader's answer returned as is; a read
is linearizable by default (a ReadIndex round confirms this master has applied everything
committed before the request) and served locally, or served from local state at once with
``?consistency=stale``. With no leader known, the answer is a 503 naming the leader last known.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentflow.api.problems import problem_response
from agentflow.api.service import MasterService
from agentflow.config import tls_context
from agentflow.errors import AgentFlowError, ClientError, PayloadTooLargeError

__all__ = ["ForwardingMiddleware"]

log = logging.getLogger(__name__)

FORWARDED = "x-agentflow-forwarded-by"
LOCAL_READS = ("/api/v1/cluster", "/api/v1/health")  # about this master: never forwarded
PROXY_TIMEOUT_S = 330.0  # longer than the longest long-poll a request may ask for
# Host is the leader's own; Origin was checked here (BrowserGuard) and is not the leader's.
_HOP_HEADERS = {"host", "origin", "content-length", "connection", "transfer-encoding", "keep-alive"}


async def _read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The body to forward, refused (413) as soon as it is known to pass ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before a byte of the body is read;
    an undeclared (chunked) body is refused when what arrived passes it. Chunks are joined
    once, at the end (``body += chunk`` copied the whole body again for every chunk).
    """
    declared = headers.get(b"content-length", b"").strip()
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {int(declared)} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientError("the client went away before its request body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


class ForwardingMiddleware:
    def __init__(self, app: ASGIApp, service: MasterService) -> None:
        self.app = app
        self.service = service
        self._http: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/v1/"):
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and path.startswith(LOCAL_READS):
            await self.app(scope, receive, send)
            return
        log_ = self.service.log
        try:
            if scope["method"] in ("GET", "HEAD"):
                query = parse_qs(scope.get("query_string", b"").decode())
                if query.get("consistency", ["linearizable"])[0] != "stale":
                    await log_.read_barrier()
            elif not log_.is_leader:
                await self._forward(scope, receive, send)
                return
        except AgentFlowError as exc:
            await problem_response(exc, path)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        log_ = self.service.log
        headers = dict(scope.get("headers", ()))
        leader_url = log_.leader_url
        if leader_url is None or FORWARDED.encode() in headers or log_.leader_id is None:
            raise log_.not_leader()
        body = await _read_body(headers, receive, self.service.config.max_request_bytes)
        if self._http is None:
            # The leader's certificate is checked against --ca (or the system's roots).
            ca = self.service.config.tls_ca
            verify = tls_context(ca) if ca else True
            self._http = httpx.AsyncClient(timeout=PROXY_TIMEOUT_S, verify=verify)
        url = leader_url + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode()
        out_headers = {
            k.decode(): v.decode()
            for k, v in scope.get("headers", ())
            if k.decode() not in _HOP_HEADERS
        }
        out_headers[FORWARDED] = self.service.config.node_id
        try:
            response = await self._http.request(
                scope["method"], url, content=body, headers=out_headers
            )
        except httpx.HTTPError as exc:
            log.info("forwarding to leader %s failed: %s", leader_url, exc)
            raise log_.not_leader() from None
        start: Message = {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [
                (k.encode(), v.encode())
                for k, v in response.headers.items()
                if k.lower() not in _HOP_HEADERS and k.lower() != "content-encoding"
            ]
            + [(b"content-length", str(len(response.content)).encode())],
        }
        await send(start)
        await send({"type": "http.response.body", "body": response.content})
