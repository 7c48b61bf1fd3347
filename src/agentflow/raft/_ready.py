"""The Ready batch: the whole I/O boundary between the pure core and its shell."""

from __future__ import annotations

from dataclasses import dataclass

from agentflow.raft._types import Entry, HardState, Message, ReadState, Snapshot, SoftState


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """Everything the shell must do for the core, and the order it must do it in.

    Take a Ready with :meth:`RaftNode.ready` only when :meth:`RaftNode.has_ready` says so, and
    hand it back with :meth:`RaftNode.advance` before taking the next one. Between the two calls
    the shell may keep calling ``step``/``tick``/``propose``; what they produce waits for the
    next Ready. For each Ready, in this order:

    0. **Send** ``early_messages`` at once: they depend on nothing of this Ready being on disk,
       so they may go out before or while step 1 runs (thesis §10.2.1: the leader replicates
       in parallel with its own write). They are the leader's appends, heartbeats, snapshots
       and transfer orders, in a term already durable, and none tells a follower that a
       membership change committed before the leader's durable commit index does. The
       leader counts its own copy of an entry toward the majority only once it is durable,
       which the shell reports by :meth:`RaftNode.advance`; so an entry only the leader
       holds in memory never commits, and a leader that crashes before its write loses
       nothing a client was told of.

    1. **Persist**, durably (fsync), before anything of steps 2-4:

       - ``snapshot`` if not None (install it in storage; it replaces the log up to its index,
         and the state machine restores from ``snapshot.data`` before applying anything of
         step 3);
       - ``entries``, appended; an entry at an index the log already holds replaces it and
         everything after it (a new leader overwrote an uncommitted suffix);
       - ``hard_state`` if not None (term, vote, commit).

    2. **Send** ``messages``. They may depend on step 1 (a granted vote must not be sent before
       the vote is durable; an append acknowledgement claims the entries are on disk; a
       message of a term that this Ready makes durable claims that term), which is why they
       come second.
       A message may be lost; the core retries. When a SNAPSHOT message is sent (the shell may
       stream it in chunks), call :meth:`RaftNode.report_snapshot` when it is delivered or
       fails; when a peer cannot be reached, :meth:`RaftNode.report_unreachable` helps the
       leader fall back to probing.

    3. **Apply** ``committed_entries`` to the state machine, in order. A CONF_CHANGE entry is
       applied by decoding its :class:`ConfChange` and calling
       :meth:`RaftNode.apply_conf_change`; membership changes take effect only then.

    4. **Serve** each of ``read_states`` once the state machine's applied index is at least
       ``read_state.index`` (for a leader, that is usually at once).

    5. Call :meth:`RaftNode.advance` with this Ready: the entries are durable now, and a
       leader counts its own copy of them from here on.

    ``committed_entries`` are always durable on this node by step 3: either they were in an
    earlier Ready (advanced, hence persisted) or they are in ``entries`` here (step 1). A
    committed entry is durable on a majority of voters, the leader's copy counted only once
    durable; so with three voters an entry the two followers hold durably is committed even
    while the leader's own write is still running, and the leader applies it (and answers its
    client) only after its own write too (steps 1 then 3).

    ``sync_commit``: the hard state records, for the first time, that a membership change
    committed. A shell that defers writing a hard state in which only the commit index moved
    (its commit index is learnt again after a crash) must write this one in step 1: the
    messages telling the followers wait for it (see ``early_messages``).

    ``soft_state`` (leader and role) is informational: it is set when either changed since the
    previous Ready, and needs no persistence.
    """

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    early_messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    soft_state: SoftState | None
    sync_commit: bool = False
