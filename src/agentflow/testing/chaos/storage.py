"""The storage host: a fenced, append-only record of what lock holders and task attempts wrote.

Run on a host of its own (``python -m agentflow.testing.chaos.storage --host IP --port P
--records FILE``) so that the nemesis can cut it off like any other. Every write names a
`stream` (``lock:<name>`` or ``task:<id>``), its `writer`, the fencing `token` it carries and an
`event`. Per stream the host keeps the highest token it accepted and refuses a lower one (an
equal one is let through: the same holder writes several times with its token). Refused
writes are recorded too, so the checkers see what a stale holder tried.

Each decision is appended to FILE as one JSON line (a `StorageRecord`) and fsynced *before*
the answer goes out: an acknowledged write is on disk. Restarted on the same FILE, the host
reads its records back and goes on with the same fences.

HTTP, JSON bodies:

- ``POST /write`` {stream, writer, token, event} → {accepted, highest};
- ``GET /records`` → {records: [StorageRecord, ...]} in the order they were decided;
- ``GET /health`` → {ok: true}.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from agentflow.testing.chaos.history import StorageRecord, read_storage

__all__ = ["StorageClient", "StorageHost", "StorageServer", "main"]

MAX_BODY_BYTES = 64 * 1024  # one write's JSON body
MAX_FIELD_CHARS = 1024  # stream, writer and event each
CLIENT_TIMEOUT_S = 2.0  # one request of a StorageClient


class StorageHost:
    """The fence and the record file, without HTTP: `write` decides, appends and fsyncs."""

    def __init__(self, records: Path) -> None:
        self.path = records
        self._mutex = threading.Lock()
        self._records: list[StorageRecord] = read_storage(records) if records.exists() else []
        self._highest: dict[str, int] = {}
        for record in self._records:
            if record.accepted:
                self._highest[record.stream] = max(
                    self._highest.get(record.stream, 0), record.token
                )
        self._file = open(records, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, stream: str, writer: str, token: int, event: str) -> StorageRecord:
        """Decide one write under the stream's fence; it is on disk when this returns."""
        with self._mutex:
            highest = self._highest.get(stream, 0)
            accepted = token >= highest
            record = StorageRecord(
                stream=stream,
                writer=writer,
                token=token,
                event=event,
                at_ns=time.monotonic_ns(),
                accepted=accepted,
            )
            self._file.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._records.append(record)
            if accepted:
                self._highest[stream] = token
            return record

    def highest(self, stream: str) -> int:
        with self._mutex:
            return self._highest.get(stream, 0)

    def records(self) -> list[StorageRecord]:
        with self._mutex:
            return list(self._records)

    def close(self) -> None:
        with self._mutex:
            self._file.close()


def _write_args(body: Any) -> tuple[str, str, int, str]:
    """The fields of a write, or ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    texts = [body.get(k) for k in ("stream", "writer", "event")]
    for name, value in zip(("stream", "writer", "event"), texts, strict=True):
        if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS:
            raise ValueError(f"{name} must be a string of 1 to {MAX_FIELD_CHARS} characters")
    token = body.get("token")
    if not isinstance(token, int) or isinstance(token, bool) or token < 0:
        raise ValueError("token must be an integer, 0 or more")
    return str(texts[0]), str(texts[1]), token, str(texts[2])


class _Handler(BaseHTTPRequestHandler):
    server: StorageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per write would drown the run's own logs

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, {"ok": True})
        elif self.path == "/records":
            records = [r.to_json() for r in self.server.storage.records()]
            self._answer(200, {"records": records})
        else:
            self._answer(404, {"detail": f"no route {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/write":
            self._answer(404, {"detail": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, {"detail": f"a write's body is at most {MAX_BODY_BYTES} bytes"})
            return
        try:
            stream, writer, token, event = _write_args(json.loads(self.rfile.read(length)))
        except ValueError as exc:
            self._answer(422, {"detail": str(exc)})
            return
        record = self.server.storage.write(stream, writer, token, event)
        self._answer(
            200, {"accepted": record.accepted, "highest": self.server.storage.highest(stream)}
        )


class StorageServer(ThreadingHTTPServer):
    """The storage host behind HTTP; one thread per connection."""

    daemon_threads = True

    def __init__(self, host: str, port: int, records: Path) -> None:
        self.storage = StorageHost(records)
        super().__init__((host, port), _Handler)

    def server_close(self) -> None:
        super().server_close()
        self.storage.close()


class StorageClient:
    """Talks to a storage host. Errors are httpx's: a write that got no answer may have been
    decided all the same (the caller may send it again: the checkers know)."""

    def __init__(self, url: str, *, timeout_s: float = CLIENT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def __enter__(self) -> StorageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def write(self, stream: str, writer: str, token: int, event: str) -> dict[str, Any]:
        """{accepted, highest}; httpx.HTTPError when no answer came, or a bad request."""
        body = {"stream": stream, "writer": writer, "token": token, "event": event}
        response = self._http.post(self.url + "/write", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def records(self) -> list[StorageRecord]:
        response = self._http.get(self.url + "/records")
        response.raise_for_status()
        return [StorageRecord.from_json(r) for r in response.json()["records"]]

    def healthy(self) -> bool:
        try:
            return self._http.get(self.url + "/health").status_code == 200
        except httpx.HTTPError:
            return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentflow.testing.chaos.storage")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--records", type=Path, required=True, help="the JSON-lines file")
    args = parser.parse_args(argv)
    server = StorageServer(args.host, args.port, args.records)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
