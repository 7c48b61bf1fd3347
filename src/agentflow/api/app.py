"""The FastAPI application of a master."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from agentflow._version import __version__
from agentflow.api import (
    agent_routes,
    agent_stream,
    backup_routes,
    cluster_routes,
    event_routes,
    index_routes,
    lock_routes,
    lock_stream,
    message_routes,
    schedule_routes,
    submit_stream,
    task_routes,
    token_routes,
    worker_routes,
    workflow_routes,
)
from agentflow.api.browser import BrowserGuard
from agentflow.api.dashboard import DashboardMiddleware
from agentflow.api.decoding import JSONResponse
from agentflow.api.forwarding import ForwardingMiddleware
from agentflow.api.index_routes import DOCS_URL, OPENAPI_URL, install_doc_aliases
from agentflow.api.metrics import make_registry
from agentflow.api.openapi import install_openapi
from agentflow.api.problems import AuthMiddleware, problem_response, validation_error
from agentflow.api.readiness import readiness
from agentflow.api.request_metrics import RequestTimer
from agentflow.api.service import MasterService
from agentflow.errors import (
    AgentFlowError,
    ClientError,
    MethodNotAllowedError,
    NotFoundError,
    ValidationError,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(service: MasterService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        runner = asyncio.create_task(service.run(), name="master-loops")
        try:
            yield
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await service.stop()

    app = FastAPI(
        title="AgentFlow",
        version=__version__,
        lifespan=lifespan,
        docs_url=DOCS_URL,
        openapi_url=OPENAPI_URL,
        swagger_ui_oauth2_redirect_url=None,  # no OAuth here: one page fewer to guard
    )
    install_doc_aliases(app)
    app.state.service = service
    app.add_middleware(ForwardingMiddleware, service=service)
    app.add_middleware(AuthMiddleware, verifier=service.verifier, catch_up=service.catch_up)
    # The dashboard's page and login; its session cookie stands for a bearer token (CSRF-checked).
    app.add_middleware(DashboardMiddleware, verifier=service.verifier, catch_up=service.catch_up)
    app.add_middleware(BrowserGuard, config=service.config)
    app.state.request_timings = service.request_timings  # socket frames read it (FrameLoop)
    # Outermost: every request is timed, refused ones too.
    app.add_middleware(RequestTimer, timings=service.request_timings, routes=app.router.routes)
    _install_error_handlers(app)
    install_openapi(app)
    # The routes go straight into the app's router: include_router() nests each router, and
    # matching then walks every router's routes several times per request (a quarter of a
    # lock acquire's CPU in a profile). The path prefixes are already in each route.
    for module in (
        task_routes,
        submit_stream,
        worker_routes,
        lock_routes,
        lock_stream,
        message_routes,
        agent_routes,
        agent_stream,
        event_routes,
        workflow_routes,
        backup_routes,
        cluster_routes,
        token_routes,
        schedule_routes,
        index_routes,
    ):
        app.router.routes.extend(module.router.routes)
    registry = make_registry(service)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(_health(service))

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse(await readiness(service))

    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/api/v1/health", health, methods=["GET"])
    app.add_api_route("/health/ready", ready, methods=["GET"])
    app.add_api_route("/api/v1/health/ready", ready, methods=["GET"])

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _health(service: MasterService) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": __version__,
        "node_id": service.config.node_id,
        "role": service.log.role.value.lower(),
        "leader_id": service.log.leader_id,
        "applied_index": service.machine.applied_index,
        "workers": sum(1 for w in service.machine.workers.values() if w.live),
    }


def _methods_of(app: FastAPI, request: Request) -> list[str]:
    """The methods of the resource the path names: of the most specific route templates that
    match it (fewest parameters, then most literal text), as the OpenAPI document groups them:
    ``/tasks/batch`` is not ``/tasks/{task_id}``."""
    ranked: dict[tuple[int, int], set[str]] = {}
    for route in app.router.routes:
        if isinstance(route, Route) and route.path_regex.match(request.url.path):
            params = len(route.param_convertors)
            literal = len(re.sub(r"\{[^}]*\}", "", route.path))
            ranked.setdefault((params, -literal), set()).update(route.methods or ())
    return sorted(ranked[min(ranked)]) if ranked else []


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentFlowError)
    async def _agentflow(request: Request, exc: AgentFlowError) -> Response:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": str(e["msg"])}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return problem_response(ValidationError(detail, errors=problems), request.url.path)

    @app.exception_handler(pydantic.ValidationError)
    async def _pydantic(request: Request, exc: pydantic.ValidationError) -> Response:
        return problem_response(validation_error(exc), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not the caller's fault: still a problem document (the traceback is logged).
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        error = AgentFlowError("the master failed to handle this request")
        return problem_response(error, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        error: AgentFlowError
        if exc.status_code == 404:
            error = NotFoundError(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
        else:
            error = ClientError(str(exc.detail))
        response = problem_response(error, request.url.path)
        if exc.status_code == 405:  # RFC 9110: name every method the path takes
            response.headers["Allow"] = ", ".join(_methods_of(app, request))
        return response
