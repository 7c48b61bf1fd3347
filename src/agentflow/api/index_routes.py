"""What a person finds by opening a master's address: ``GET /`` (a JSON index of links; a
browser asking for HTML gets the dashboard there instead), ``GET /api/v1`` (the resource
collections), and the API documentation at the conventional ``/docs`` and ``/openapi.json``
as well as under ``/api/``.

These answers are the same on every master of a version and reveal no state, so
:data:`PUBLIC_PATHS` need no token even with ``--api-token`` (as the health probes): a browser
cannot send a bearer token when it opens a page, and the document is what a client needs to
learn how to authenticate at all.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentflow._version import __version__

__all__ = ["COLLECTIONS", "DOC_PATHS", "LINKS", "PUBLIC_PATHS", "install_doc_aliases", "router"]

DOCS_URL = "/docs"
OPENAPI_URL = "/openapi.json"
# The conventional paths first; the older /api/ ones stay served.
DOC_PATHS = {DOCS_URL: "/api/docs", OPENAPI_URL: "/api/openapi.json", "/redoc": None}
LINKS = {
    "docs": DOCS_URL,
    "openapi": OPENAPI_URL,
    "health": "/health",
    "metrics": "/metrics",
    "api": "/api/v1",
}
COLLECTIONS = {
    "tasks": "/api/v1/tasks",
    "queue": "/api/v1/queue/stats",
    "workers": "/api/v1/workers",
    "workflows": "/api/v1/workflows",
    "locks": "/api/v1/locks",
    "messages": "/api/v1/messages",
    "agents": "/api/v1/agents",
    "cluster": "/api/v1/cluster",
    "tokens": "/api/v1/tokens",
    "schedules": "/api/v1/schedules",
    "health": "/api/v1/health",
}
PUBLIC_PATHS = frozenset(
    {"/", *DOC_PATHS, *(alias for alias in DOC_PATHS.values() if alias is not None)}
)

router = APIRouter()


@router.get("/")
async def index() -> JSONResponse:
    return JSONResponse({"name": "AgentFlow", "version": __version__, "links": LINKS})


@router.get("/api/v1")
async def api_index() -> JSONResponse:
    return JSONResponse({"version": __version__, "links": COLLECTIONS})


def install_doc_aliases(app: FastAPI) -> None:
    """Serve FastAPI's own document and Swagger page under their ``/api/`` paths too."""
    for path, alias in DOC_PATHS.items():
        if alias is None:
            continue
        served = [r for r in app.router.routes if isinstance(r, Route) and r.path == path]
        assert len(served) == 1, f"FastAPI serves no {path}"
        app.add_route(alias, served[0].endpoint, include_in_schema=False)
