"""ReadIndex bookkeeping on the leader (thesis §6.4): reads wait for a heartbeat quorum."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentflow.raft._types import NodeId


@dataclass(slots=True, kw_only=True)
class ReadRequest:
    """A read at ``index`` asked by ``requester``; served once a quorum acked a heartbeat."""

    index: int
    context: bytes
    requester: NodeId
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    """Pending read requests in arrival order, keyed by their context."""

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadRequest] = {}  # dicts keep insertion order

    def add_request(self, index: int, context: bytes, requester: NodeId) -> bool:
        """Queue a request; False for a context already pending (a duplicate)."""
        if context in self._pending:
            return False
        self._pending[context] = ReadRequest(index=index, context=context, requester=requester)
        return True

    def recv_ack(self, node_id: NodeId, context: bytes) -> set[NodeId] | None:
        request = self._pending.get(context)
        if request is None:
            return None
        request.acks.add(node_id)
        return request.acks

    def advance(self, context: bytes) -> list[ReadRequest]:
        """Pop the request for ``context`` and every request queued before it.

        The heartbeat round that confirmed leadership for ``context`` was sent after the
        earlier requests arrived, so it confirms them too.
        """
        if context not in self._pending:
            return []
        served: list[ReadRequest] = []
        for ctx in list(self._pending):
            served.append(self._pending.pop(ctx))
            if ctx == context:
                break
        return served

    def last_pending_context(self) -> bytes:
        if not self._pending:
            return b""
        return next(reversed(self._pending))

    def __len__(self) -> int:
        return len(self._pending)
