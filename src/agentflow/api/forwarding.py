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
from agentflow.errors import AgentFlowError

__all__ = ["ForwardingMiddleware"]

log = logging.getLogger(__name__)

FORWARDED = "x-agentflow-forwarded-by"
LOCAL_READS = ("/api/v1/cluster", "/api/v1/health")  # about this master: never forwarded
PROXY_TIMEOUT_S = 330.0  # longer than the longest long-poll a request may ask for
# Host is the leader's own; Origin was checked here (BrowserGuard) and is not the leader's.
_HOP_HEADERS = {"host", "origin", "content-length", "connection", "transfer-encoding", "keep-alive"}


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
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=PROXY_TIMEOUT_S)
        url = leader_url + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode()
        out_headers = {
            k.decode(): v.decode()
            for k, v in scope.get("headers", ())
            if k.decode() not in _HOP_HEADERS
        }
        out_headers[FORWARDED] = log_.config.node_id
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
