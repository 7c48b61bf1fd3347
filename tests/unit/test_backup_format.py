"""The backup file is checked whole, and only an admin token may take one."""

from __future__ import annotations

import json

import pytest

from agentflow.api.identity import BACKUP_PATH, Identity, authorize
from agentflow.cluster.backup import BACKUP_MAGIC, backup_bytes, decode_backup
from agentflow.cluster.clusteruid import derived_uid, new_uid, uid_refusal
from agentflow.errors import ForbiddenError, ValidationError
from agentflow.state.tokens import Role

FIELDS = {
    "index": 42,
    "term": 3,
    "cluster_id": "agentflow",
    "cluster_uid": "n-abc",
    "state_digest": "d" * 64,
    "taken_by": "m1",
}


def a_backup(body: bytes = b"the image") -> bytes:
    _header, head = backup_bytes(FIELDS, body)
    return head + body


def test_a_whole_backup_decodes_to_its_header_and_body() -> None:
    header, body = decode_backup(a_backup())
    assert (header.index, header.term, header.body_bytes, body) == (42, 3, 9, b"the image")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (a_backup()[:-1], "truncated"),
        (a_backup() + b"x", "padded"),
        (a_backup()[:-1] + b"X", "corrupt"),
        (b"PK\x03\x04 a zip file", "not an AgentFlow backup"),
        (BACKUP_MAGIC + b"{}\n", "not a backup header"),
        (BACKUP_MAGIC + b"no newline", "header line is missing"),
    ],
)
def test_a_damaged_backup_is_refused_whole(data: bytes, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        decode_backup(data)


def test_a_header_field_of_the_wrong_type_or_format_is_refused() -> None:
    head, body = a_backup().split(b"\n", 2)[1:]
    for change in ({"index": -1}, {"index": "42"}, {"format": 2}, {"term": True}):
        doc = json.loads(head) | change
        data = BACKUP_MAGIC + json.dumps(doc).encode() + b"\n" + body
        with pytest.raises(ValidationError):
            decode_backup(data)


@pytest.mark.parametrize("role", [Role.READ_ONLY, Role.CLIENT, Role.WORKER])
def test_only_an_admin_token_may_take_a_backup(role: Role) -> None:
    with pytest.raises(ForbiddenError):
        authorize(Identity(role=role, name="someone"), "GET", BACKUP_PATH)
    authorize(Identity(role=Role.ADMIN, name="admin"), "GET", BACKUP_PATH)


def test_members_founded_together_agree_and_a_restored_cluster_refuses_them() -> None:
    founded, restored = derived_uid("agentflow"), new_uid()
    assert founded == derived_uid("agentflow") != derived_uid("other")
    assert uid_refusal(founded, founded) is None
    assert uid_refusal(founded, "") is None  # an empty joiner
    assert uid_refusal("", restored) is None  # this node is the empty joiner
    assert uid_refusal(restored, founded) is not None
