"""The one error tree of AgentFlow.

Every error a caller can see derives from :class:`AgentFlowError`, so callers may catch at any
level::

    AgentFlowError
    ├── ConfigError                 bad flags, environment or config file (CLI exit 2)
    ├── ClientError                 the request is wrong; retrying it unchanged cannot help
    │   ├── ValidationError         422: a field is missing, malformed or out of range
    │   ├── PayloadTooLargeError    413: body, output or message over its limit
    │   ├── NotFoundError           404: unknown task, worker, workflow, lock or agent
    │   │   └── NoResponderError    404: a request's addressee has no live session to answer it
    │   ├── MethodNotAllowedError   405: the route exists, the method does not
    │   ├── ConflictError           409: state forbids it (cancel a finished task, lock held, ...)
    │   ├── StaleTokenError         409: a fencing token of a superseded attempt or grant
    │   ├── AuthError               401: missing, wrong, expired or revoked token
    │   ├── ForbiddenError          403: the token's role or scope may not do this
    │   │   └── ForeignOriginError  403: a browser request from another site's page
    │   ├── TimeoutExpiredError     408: a bounded wait ran out (lock wait, request-reply)
    │   ├── EventsLostError         410: an event stream resumed from before what a master holds
    │   ├── UnsupportedMediaTypeError 415: a state-changing request whose body is not JSON
    │   └── UnknownHostError        421: a Host header this master does not serve
    ├── ServiceError                the service cannot take it now; a retry may succeed
    │   ├── OverloadedError         429: a queue or inbox is full
    │   ├── NotLeaderError          503: this master is not the leader (names the one it knows)
    │   │   └── StoreFenced         503: a SQL store's lease moved on: this master may not write
    │   └── UnavailableError        503: no quorum, shutting down, master unreachable
    │       └── StoreUnavailable    503: the SQL store did not answer (a commit's outcome unknown)
    ├── TaskFailedError             a waited-for task ended failed/cancelled/timed out (SDK only)
    └── LeaseLostError              a held lock's lease ended before its holder let go (SDK only)

Each API-visible class carries an HTTP ``status``, a stable ``code`` and a ``title``; the API
renders them as ``application/problem+json`` and the CLI as one line and an exit code.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AgentFlowError",
    "AuthError",
    "ClientError",
    "ConfigError",
    "ConflictError",
    "EventsLostError",
    "ForbiddenError",
    "ForeignOriginError",
    "LeaseLostError",
    "MethodNotAllowedError",
    "NoResponderError",
    "NotFoundError",
    "NotLeaderError",
    "OverloadedError",
    "PayloadTooLargeError",
    "ServiceError",
    "StaleTokenError",
    "StoreFenced",
    "StoreUnavailable",
    "TaskFailedError",
    "TimeoutExpiredError",
    "UnavailableError",
    "UnknownHostError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "error_from_problem",
]


class AgentFlowError(Exception):
    """Root of every AgentFlow error."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    exit_code: ClassVar[int] = 1

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        problem: dict[str, Any] = {
            "type": f"https://agentflow.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance is not None:
            problem["instance"] = instance
        # Extra members never replace the standard ones: clients read status and code.
        problem.update((k, v) for k, v in self.extra.items() if k not in problem)
        return problem


class ConfigError(AgentFlowError):
    code = "config"
    title = "Invalid configuration"
    exit_code = 2


class ClientError(AgentFlowError):
    status = 400
    code = "bad-request"
    title = "Bad request"
    exit_code = 2


class ValidationError(ClientError):
    status = 422
    code = "validation"
    title = "Invalid request"


class PayloadTooLargeError(ClientError):
    status = 413
    code = "too-large"
    title = "Payload too large"


class NotFoundError(ClientError):
    status = 404
    code = "not-found"
    title = "Not found"
    exit_code = 4


class NoResponderError(NotFoundError):
    code = "no-responder"
    title = "No responder"


class MethodNotAllowedError(ClientError):
    status = 405
    code = "method-not-allowed"
    title = "Method not allowed"


class ConflictError(ClientError):
    status = 409
    code = "conflict"
    title = "Conflict"
    exit_code = 5


class StaleTokenError(ConflictError):
    code = "stale-token"
    title = "Stale fencing token"


class AuthError(ClientError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"
    exit_code = 3


class ForbiddenError(ClientError):
    status = 403
    code = "forbidden"
    title = "Forbidden"
    exit_code = 3


class TimeoutExpiredError(ClientError):
    status = 408
    code = "timeout"
    title = "Timed out"
    exit_code = 6


class EventsLostError(ClientError):
    """An event stream asked to resume after an index whose events the master no longer holds
    (its ring moved on, or it restarted or installed a snapshot since): re-read the state."""

    status = 410
    code = "events-lost"
    title = "Events no longer held"


class UnsupportedMediaTypeError(ClientError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class ForeignOriginError(ForbiddenError):
    status = 403
    code = "foreign-origin"
    title = "Cross-origin request refused"


class UnknownHostError(ClientError):
    status = 421
    code = "unknown-host"
    title = "Host not served here"


class ServiceError(AgentFlowError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"
    exit_code = 7


class OverloadedError(ServiceError):
    status = 429
    code = "overloaded"
    title = "Too many requests"


class NotLeaderError(ServiceError):
    code = "not-leader"
    title = "Not the leader"


class UnavailableError(ServiceError):
    code = "unavailable"
    title = "Service unavailable"


class StoreFenced(NotLeaderError):  # noqa: N818 - the design's name, read with its parent
    """A SQL store refused a write: the lease row names another holder or epoch, or expired.

    Same code as NotLeaderError (clients fail over the same way); ``extra`` carries
    ``leader_id``/``leader_url`` of the holder the database names, when one is live."""


class StoreUnavailable(UnavailableError):  # noqa: N818 - likewise
    """A SQL store did not answer or the connection dropped; for a commit in flight the
    outcome is unknown. The connection is reopened on the next call.

    ``reason`` is the server's or the driver's own words, without the store's URL (the
    message names both)."""

    reason: str = ""


class TaskFailedError(AgentFlowError):
    code = "task-failed"
    title = "Task failed"
    exit_code = 1


class LeaseLostError(AgentFlowError):
    code = "lease-lost"
    title = "Lock lease lost"
    exit_code = 8


_BY_CODE: dict[str, type[AgentFlowError]] = {
    cls.code: cls
    for cls in (
        AgentFlowError,
        ClientError,
        ValidationError,
        PayloadTooLargeError,
        NotFoundError,
        NoResponderError,
        MethodNotAllowedError,
        ConflictError,
        StaleTokenError,
        AuthError,
        ForbiddenError,
        TimeoutExpiredError,
        EventsLostError,
        UnsupportedMediaTypeError,
        ForeignOriginError,
        UnknownHostError,
        OverloadedError,
        NotLeaderError,
        UnavailableError,
    )
}


def error_from_problem(status: int, problem: dict[str, Any]) -> AgentFlowError:
    """Rebuild the typed error from a problem+json body (used by the SDK)."""
    cls = _BY_CODE.get(str(problem.get("code", "")))
    if cls is None:
        cls = ClientError if 400 <= status < 500 else ServiceError
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    known = {"type", "title", "status", "detail", "code", "instance"}
    extra = {k: v for k, v in problem.items() if k not in known}
    return cls(detail, **extra)
