"""The dashboard's files, read once from the package data into memory.

Only files that ship in ``static/`` are served, by exact name: no path from a request ever
reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["Asset", "load_assets"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
ASSETS_MAX = 200  # files; the dashboard ships a few dozen


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file under ``static/`` by its relative path (``pages/tasks.js``)."""
    root = resources.files("agentflow.api.dashboard").joinpath("static")
    found: dict[str, Asset] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                pending.append((entry, name + "/"))
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            if suffix not in _TYPES:
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[name] = Asset(body=body, media_type=_TYPES[suffix], etag=etag)
    assert 0 < len(found) <= ASSETS_MAX, f"dashboard assets: {len(found)}"
    return found
