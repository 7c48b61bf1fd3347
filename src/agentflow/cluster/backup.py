"""The backup file: a state image at one applied index, behind a header that says what it is.

::

    AGENTFLOW-BACKUP\\n                       the magic line
    {"format": 1, "index": ..., ...}\\n        one JSON line: BackupHeader
    <body_bytes bytes>                        the Image (agentflow.cluster.image), packed

The header names the index and term the image was taken at, the cluster it came from (name and
uid), the digest of the state machine at that index (``StateMachine.digest``, what
``GET /api/v1/cluster?digest=true`` shows) and the body's length and SHA-256. A file whose body
is shorter, longer or different is refused as a whole: a backup is never half restored. The
leader writes it (:func:`backup_bytes`); ``agentflow cluster backup`` checks it before it
declares success and ``agentflow cluster restore`` before it seeds a data dir.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import ValidationError

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_MAGIC",
    "BackupHeader",
    "backup_bytes",
    "decode_backup",
    "read_backup",
]

BACKUP_MAGIC = b"AGENTFLOW-BACKUP\n"
BACKUP_FORMAT = 1
HEADER_BYTES_MAX = 64 << 10  # the JSON line; far above what one holds
BODY_BYTES_MAX = 8 << 30  # a state image larger than this is not one a master could hold


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupHeader:
    format: int
    index: int  # the applied index the image was taken at
    term: int  # the term of the entry at that index
    cluster_id: str  # the cluster's name (--cluster-id)
    cluster_uid: str  # the cluster's identity in its data dirs ("" when it had none)
    state_digest: str  # StateMachine.digest() at ``index``
    body_bytes: int
    body_sha256: str
    taken_by: str  # the leader that took it

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"


def backup_bytes(header_fields: dict[str, Any], body: bytes) -> tuple[BackupHeader, bytes]:
    """The header (length and checksum filled in) and the head of the file: magic and header."""
    header = BackupHeader(
        format=BACKUP_FORMAT,
        body_bytes=len(body),
        body_sha256=hashlib.sha256(body).hexdigest(),
        **header_fields,
    )
    return header, BACKUP_MAGIC + header.encode()


def read_backup(path: Path) -> tuple[BackupHeader, bytes]:
    """The header and body of the backup at ``path``, checked; ValidationError if not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read backup {path}: {exc.strerror or exc}") from None
    return decode_backup(data, str(path))


def decode_backup(data: bytes, where: str = "backup") -> tuple[BackupHeader, bytes]:
    """Split and check a whole backup file's bytes."""
    if not data.startswith(BACKUP_MAGIC):
        raise ValidationError(f"{where} is not an AgentFlow backup (no AGENTFLOW-BACKUP line)")
    end = data.find(b"\n", len(BACKUP_MAGIC), len(BACKUP_MAGIC) + HEADER_BYTES_MAX)
    if end < 0:
        raise ValidationError(f"{where}: its header line is missing or over {HEADER_BYTES_MAX}")
    header = _header(data[len(BACKUP_MAGIC) : end], where)
    body = data[end + 1 :]
    if len(body) != header.body_bytes:
        raise ValidationError(
            f"{where} is truncated or padded: {len(body)} body bytes, header says"
            f" {header.body_bytes}"
        )
    if hashlib.sha256(body).hexdigest() != header.body_sha256:
        raise ValidationError(f"{where} is corrupt: its body fails the header's SHA-256")
    return header, body


_TYPES: dict[str, type] = {
    "format": int,
    "index": int,
    "term": int,
    "cluster_id": str,
    "cluster_uid": str,
    "state_digest": str,
    "body_bytes": int,
    "body_sha256": str,
    "taken_by": str,
}


def _header(line: bytes, where: str) -> BackupHeader:
    try:
        doc = json.loads(line)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or set(doc) != set(_TYPES):
        raise ValidationError(f"{where}: its header is not a backup header")
    for key, kind in _TYPES.items():
        value: Any = doc[key]
        in_range = not isinstance(value, int) or 0 <= value < 1 << 63
        if type(value) is not kind or not in_range:
            raise ValidationError(f"{where}: header field {key} is not a valid {kind.__name__}")
    if doc["format"] != BACKUP_FORMAT:
        raise ValidationError(
            f"{where} is backup format {doc['format']}; this version reads {BACKUP_FORMAT}"
        )
    if int(doc["body_bytes"]) > BODY_BYTES_MAX:
        raise ValidationError(f"{where}: a body of {doc['body_bytes']} bytes is over the limit")
    header: BackupHeader = BackupHeader(**doc)
    return header
