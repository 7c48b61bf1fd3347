"""Request latency for ``/metrics``: HTTP requests and socket frames, by route template.

Labels are the route's template (``/api/v1/tasks/{task_id}``), never the raw path, so the
label set is bounded by the routes the app has; a path no route matches (a 404, or a request a
follower forwards before routing) is matched against the templates here, else counted as
``unmatched``. Methods outside :data:`METHODS` count as ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from agentflow.histograms import FAST_BUCKETS_S, Histogram, HistogramVec

__all__ = ["METHODS", "RequestTimer", "RequestTimings", "frame_histogram"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_ROUTE_SERIES = 512  # (method, route, code) sets: far above what the app's routes make
UNMATCHED = "unmatched"


class RequestTimings:
    """Histograms (seconds) of the HTTP requests and socket frames this master answered."""

    def __init__(self) -> None:
        self.http = HistogramVec(
            ("method", "route", "code"), FAST_BUCKETS_S, max_series=MAX_ROUTE_SERIES
        )
        # One frame of a by-ref socket (submit, locks): from read to answer ready.
        self.socket = HistogramVec(("route",), FAST_BUCKETS_S, max_series=MAX_ROUTE_SERIES)


def _template(scope: Scope, routes: Iterable[BaseRoute]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in routes:
        if isinstance(candidate, Route | WebSocketRoute) and candidate.path_regex.match(
            scope.get("path", "")
        ):
            return candidate.path
    return UNMATCHED


class RequestTimer:
    """ASGI middleware observing each HTTP request's time until its last byte was sent."""

    def __init__(self, app: ASGIApp, *, timings: RequestTimings, routes: list[BaseRoute]) -> None:
        self.app = app
        self.timings = timings
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = "500"  # what the server answers when the app fails before starting a response

        async def send_timed(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.timings.http.observe(
                time.perf_counter() - started, method, _template(scope, self.routes), code
            )


def frame_histogram(ws: WebSocket) -> Histogram | None:
    """The socket-frame histogram of ``ws``'s route, or None outside an app with timings (a
    test's stand-in socket)."""
    state = getattr(getattr(ws, "app", None), "state", None)
    timings: Any = getattr(state, "request_timings", None)
    if not isinstance(timings, RequestTimings):
        return None
    route = ws.scope.get("route")
    return timings.socket.of(getattr(route, "path", UNMATCHED))
