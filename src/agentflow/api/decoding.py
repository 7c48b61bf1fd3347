"""The API's one decoding layer: HTTP bodies and JSON socket frames in, JSON answers out.

Every request body goes through :func:`read_model` (read within a byte limit, strict JSON by
:func:`agentflow.jsonbound.loads`, then the route's model); every frame of the agent and lock
sockets through :func:`receive_frame`. Nothing reaches a command before passing here. Answers go
out through :class:`JSONResponse` and :func:`send_frame`, which never fail on stored data.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentflow import jsonbound
from agentflow.api.problems import validation_error
from agentflow.errors import ClientError, PayloadTooLargeError, ValidationError

__all__ = [
    "CLOSE_BINARY",
    "CLOSE_INVALID",
    "FrameError",
    "JSONResponse",
    "read_body",
    "read_model",
    "read_optional_model",
    "receive_frame",
    "receive_frame_text",
    "refuse_frame",
    "send_frame",
]

M = TypeVar("M", bound=pydantic.BaseModel)

CLOSE_BINARY = 1003  # RFC 6455: a data type the endpoint cannot accept
CLOSE_INVALID = 1007  # RFC 6455: data inconsistent with the message type
_REF_CHARS_MAX = 200


class JSONResponse(_StarletteJSONResponse):
    """Strict JSON that never fails on data: a stored NaN is answered as null (see
    :func:`agentflow.jsonbound.tolerant`) instead of a 500 for every reader."""

    def render(self, content: Any) -> bytes:
        return jsonbound.dumps(content)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing it with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """The body as ``model``: 413 over ``limit``, 400 if it is not JSON, 422 if a value is out
    of bounds (NaN, Infinity, an integer beyond 64 bits, too deep) or the model refuses it."""
    body = await read_body(request, limit)
    if not body.strip():
        raise ClientError("request body is empty: send a JSON object")
    return _validated(body, model)


def _validated(body: bytes, model: type[M]) -> M:
    value = jsonbound.loads(body)  # the bounds first: NaN, 64-bit integers, depth, UTF-8
    if not isinstance(value, dict):
        raise ValidationError("the request body is a JSON object")
    try:  # then the model, strictly: 0 is not false, "5" is not 5, as the schema says
        return model.model_validate_json(body, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


async def read_optional_model(request: Request, model: type[M], limit: int) -> M | None:
    """As :func:`read_model`, for a route whose body may be left out: None when it is."""
    body = await read_body(request, limit)
    if not body.strip():
        return None
    return _validated(body, model)


class _NoFields(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


async def read_no_body(request: Request, limit: int) -> None:
    """For a route that takes no body: none, ``{}``, or refused like any other body (400 for
    text that is not JSON, 422 for NaN, a field, anything but an empty object)."""
    await read_optional_model(request, _NoFields, limit)


class FrameError(Exception):
    """A client frame that cannot be taken, for ``error``. ``close_code`` set: the socket
    cannot go on (a binary or undecodable frame); ``ref``: the frame's, if one could be read."""

    def __init__(
        self, error: ClientError, *, ref: Any = None, close_code: int | None = None
    ) -> None:
        super().__init__(error.detail)
        self.error = error
        self.ref = ref
        self.close_code = close_code


async def receive_frame(ws: WebSocket) -> dict[str, Any]:
    """The next client frame: a JSON object, decoded strictly. Raises WebSocketDisconnect when
    the client has left and :class:`FrameError` for a frame that cannot be taken."""
    frame, _ = await receive_frame_text(ws)
    return frame


async def receive_frame_text(ws: WebSocket, limit: int | None = None) -> tuple[dict[str, Any], str]:
    """As :func:`receive_frame`, with the frame's text too (for a model that validates JSON
    text, as the HTTP routes do); a frame over ``limit`` bytes is refused with 413."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    if text is None:
        error = ClientError("frames are JSON text, not binary")
        raise FrameError(error, close_code=CLOSE_BINARY)
    if (
        limit is not None
        and len(text) > limit // 4
        and len(text.encode("utf-8", "replace")) > limit
    ):
        too_large = PayloadTooLargeError(f"frame exceeds {limit} bytes")
        raise FrameError(too_large, ref=_lenient_ref(text))
    return _decoded_frame(text), text


def _decoded_frame(text: str) -> dict[str, Any]:
    try:
        frame = jsonbound.loads(text)
    except ValidationError as exc:  # well-formed but out of bounds: answer its ref
        raise FrameError(exc, ref=_lenient_ref(text)) from None
    except ClientError as exc:
        raise FrameError(exc, close_code=CLOSE_INVALID) from None
    if not isinstance(frame, dict):
        raise FrameError(ClientError("frames are JSON objects"), close_code=CLOSE_INVALID)
    return frame


def _lenient_ref(text: str) -> Any:
    """The ``ref`` of a frame refused for its values, read leniently, so the refusal still
    answers the request it refuses; None if there is no usable one."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    ref = value.get("ref") if isinstance(value, dict) else None
    if isinstance(ref, str) and len(ref) <= _REF_CHARS_MAX:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref if jsonbound.INT64_MIN <= ref <= jsonbound.INT64_MAX else None
    return None


async def send_frame(ws: WebSocket, frame: dict[str, Any]) -> None:
    """Send one server frame as strict JSON text (never failing on stored values)."""
    await ws.send_text(jsonbound.dumps(frame).decode("utf-8"))


async def refuse_frame(ws: WebSocket, error: FrameError) -> bool:
    """Answer a refused frame with an error frame; close the socket if the error says so.
    True when the socket was closed."""
    await send_frame(ws, {"ref": error.ref, "error": error.error.to_problem()})
    if error.close_code is None:
        return False
    reason = "binary frame" if error.close_code == CLOSE_BINARY else "invalid frame"
    await ws.close(code=error.close_code, reason=reason)
    return True
