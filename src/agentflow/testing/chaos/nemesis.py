"""The nemesis: a seeded schedule of faults (pure), and the shell that applies and heals them.

`schedule(seed, ...)` draws every fault of a run from ``random.Random(seed)`` alone: the same
seed gives the same list, printed one `Fault.describe()` line each so that a run can be
repeated. Faults overlap in time, within two rules that keep the cluster able to recover:
at most a minority of the masters is impaired at once (killed, paused, removed, or on a full
disk), never two membership changes at once nor one during a network split (the change needs
a quorum of the members left), and at most one network split at a time (the nft tables of two
splits would cut more than either says).

`Nemesis.run(stop)` applies each fault at its time and heals it ``heal_after_s`` later;
targets that depend on the moment (the current leader) are resolved when it applies. Each
action is logged with its time and kept in `applied`, with what really happened (a fault
that could not apply, say there was no leader to isolate, is kept with the reason). An
action that waits (a membership change until the leader commits it, a transfer until the new
leader is agreed) holds back the faults after it: `applied` has the real times.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agentflow.testing.chaos.cluster import ChaosCluster
from agentflow.testing.chaos.netns import Lab, NetFault

__all__ = [
    "KINDS",
    "LEADER",
    "MASTER_IMPAIRING",
    "SPLITS",
    "AppliedFault",
    "Fault",
    "Nemesis",
    "NotAppliedError",
    "schedule",
]

KINDS = (
    "kill-master",
    "kill-worker",
    "isolate-worker",
    "pause-master",
    "pause-worker",
    "partition-majority",
    "isolate-leader",
    "bridge",
    "one-way",
    "loss",
    "delay",
    "disk-full",
    "transfer-leader",
    "membership",
)
MASTER_IMPAIRING = frozenset({"kill-master", "pause-master", "membership", "disk-full"})
SPLITS = frozenset({"partition-majority", "isolate-leader", "bridge", "one-way"})
INSTANT = frozenset({"transfer-leader"})  # nothing to heal
FIRST_FAULT_S = (1.0, 3.0)  # the first fault comes after the workload got going
GAP_S = (1.0, 4.0)  # between one fault's start and the next
HEAL_AFTER_S = (2.0, 8.0)  # how long a fault lasts
LOSS_PERCENTS = (10, 20, 30, 50)
DELAY_MS = (50, 100, 200)
DRAWS_PER_FAULT = 8  # kinds tried at one moment before the moment is skipped
LEADER_WAIT_S = 10.0  # a fault on the leader waits this long for one (after an election)
LEADER = "<leader>"  # a target resolved when the fault applies
TURN_POLL_S = 0.1  # a fault waiting for the one before it to apply looks at stop this often


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One fault of a schedule: what, on whom, from when, for how long."""

    at_s: float
    kind: str
    targets: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    heal_after_s: float = 0.0

    def describe(self) -> str:
        targets = ",".join(self.targets) or "-"
        params = " ".join(f"{k}={_show(v)}" for k, v in sorted(self.params.items()))
        heal = "" if self.kind in INSTANT else f" for {self.heal_after_s:.1f}s"
        return f"{self.at_s:7.2f}s {self.kind} {targets}{' ' + params if params else ''}{heal}"


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + "|".join(_show(v) for v in value) + "]"
    return str(value)


def _names(given: int | Sequence[str], prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, given + 1)] if isinstance(given, int) else list(given)


def schedule(
    seed: int,
    *,
    duration_s: float,
    masters: int | Sequence[str],
    workers: int | Sequence[str],
    kinds: Sequence[str] | None = None,
    disk_master: str | None = "m3",
    bystanders: Sequence[str] = (),
) -> list[Fault]:
    """The faults of a run of ``duration_s`` seconds, drawn from ``seed`` alone.

    ``masters``/``workers``: their names, or their numbers (m1..mN, w1..wK). A fault heals
    before ``duration_s``; ``disk-full`` needs ``disk_master`` (the master on a small disk).
    ``bystanders``: other hosts a majority/minority partition puts on one side or the other
    (the storage host; never the host the clients and the nemesis run on).
    """
    rng = random.Random(seed)
    ms, ws, by = _names(masters, "m"), _names(workers, "w"), list(bystanders)
    chosen = [k for k in (kinds or KINDS) if _possible(k, ms, ws, disk_master)]
    unknown = set(kinds or ()) - set(KINDS)
    assert not unknown, f"unknown fault kinds: {sorted(unknown)}"
    faults: list[Fault] = []
    at_s = rng.uniform(*FIRST_FAULT_S)
    while chosen and at_s < duration_s - HEAL_AFTER_S[0]:
        active = [f for f in faults if f.at_s + f.heal_after_s > at_s]
        for _ in range(DRAWS_PER_FAULT):
            kind = rng.choice(chosen)
            heal_after_s = round(min(rng.uniform(*HEAL_AFTER_S), duration_s - at_s), 2)
            fault = _draw(
                rng,
                kind,
                ms=ms,
                ws=ws,
                by=by,
                disk_master=disk_master,
                at_s=round(at_s, 2),
                heal_after_s=heal_after_s,
            )
            if _allowed(fault, active, len(ms)):
                faults.append(fault)
                break
        at_s += rng.uniform(*GAP_S)
    return faults


def _possible(kind: str, ms: list[str], ws: list[str], disk_master: str | None) -> bool:
    """Whether this cluster has what ``kind`` needs (a minority to impair, a worker...)."""
    if kind in ("kill-worker", "pause-worker"):
        return bool(ws)
    if kind == "isolate-worker":
        return bool(ws) and bool(ms)
    if kind == "disk-full":
        return disk_master in ms and len(ms) >= 3
    if kind in MASTER_IMPAIRING or kind in SPLITS:
        return len(ms) >= 3
    if kind == "transfer-leader":
        return len(ms) >= 2
    return bool(ms)


def _draw(
    rng: random.Random,
    kind: str,
    *,
    ms: list[str],
    ws: list[str],
    by: list[str],
    disk_master: str | None,
    at_s: float,
    heal_after_s: float,
) -> Fault:
    """One fault of ``kind`` with its targets and parameters drawn."""
    targets: tuple[str, ...] = ()
    params: dict[str, Any] = {}
    if kind in ("kill-master", "pause-master", "membership", "delay"):
        targets = (rng.choice(ms),)
    elif kind in ("kill-worker", "pause-worker", "isolate-worker"):
        targets = (rng.choice(ws),)
    elif kind == "disk-full":
        assert disk_master is not None
        targets = (disk_master,)
    elif kind == "partition-majority":
        shuffled = rng.sample(ms, len(ms))
        minority = sorted(shuffled[: (len(ms) - 1) // 2])
        targets = tuple(minority)
        with_minority = sorted(h for h in [*ws, *by] if rng.random() < 0.5)
        params["with_minority"] = with_minority
        params["with_majority"] = sorted(h for h in [*ws, *by] if h not in with_minority)
    elif kind in ("isolate-leader", "transfer-leader"):
        targets = (LEADER,)
        if kind == "transfer-leader":
            params["to"] = rng.choice([*ms, "best"])
    elif kind == "bridge":
        shuffled = rng.sample(ms, len(ms))
        targets = (shuffled[0],)  # the middle, which sees both halves
        rest = shuffled[1:]
        params["halves"] = [sorted(rest[: len(rest) // 2]), sorted(rest[len(rest) // 2 :])]
    elif kind == "one-way":
        targets = (rng.choice([LEADER, *ms]),)  # its packets to the other masters are dropped
    elif kind == "loss":
        targets = (rng.choice([*ms, *ws, *by]),)
        params["percent"] = rng.choice(LOSS_PERCENTS)
    if kind == "delay":
        params["ms"] = rng.choice(DELAY_MS)
    heal = 0.0 if kind in INSTANT else heal_after_s
    return Fault(at_s=at_s, kind=kind, targets=targets, params=params, heal_after_s=heal)


def _allowed(fault: Fault, active: list[Fault], masters: int) -> bool:
    """Whether ``fault`` may start while ``active`` are in force."""
    if fault.kind in SPLITS and any(f.kind in SPLITS for f in active):
        return False
    if fault.kind == "membership" and any(
        f.kind in SPLITS or f.kind == "membership" for f in active
    ):
        return False  # a membership change needs a quorum of what is left: no split meanwhile
    if fault.kind in SPLITS and any(f.kind == "membership" for f in active):
        return False
    if fault.kind == "delay" and any(f.kind == "delay" for f in active):
        return False  # two delays would share one root qdisc
    busy = {t for f in active for t in f.targets}
    if set(fault.targets) & busy - {LEADER}:
        return False
    if fault.kind in MASTER_IMPAIRING:
        impaired = sum(1 for f in active if f.kind in MASTER_IMPAIRING)
        return impaired + 1 <= (masters - 1) // 2
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedFault:
    """What the nemesis really did for one fault (for the run's report)."""

    fault: Fault
    started_s: float  # since the nemesis started
    targets: tuple[str, ...]  # as resolved when it applied
    detail: str = ""
    error: str | None = None  # why it could not apply (nothing was done)
    healed_s: float | None = None
    heal_error: str | None = None

    def describe(self) -> str:
        what = f"{self.fault.kind} {','.join(self.targets) or '-'}"
        if self.error is not None:
            return f"{self.started_s:7.2f}s {what}: not applied ({self.error})"
        healed = "not healed (yet)" if self.healed_s is None else f"healed at {self.healed_s:.2f}s"
        if self.fault.kind in INSTANT:
            healed = "instant"
        extra = f" ({self.detail})" if self.detail else ""
        problem = f"; heal failed: {self.heal_error}" if self.heal_error else ""
        return f"{self.started_s:7.2f}s {what}{extra}, {healed}{problem}"


class NotAppliedError(Exception):
    """The fault makes no sense at this moment (its target is already down, no leader)."""


Heal = Callable[[], str]


class Nemesis:
    """Applies ``faults`` to ``cluster`` and ``lab`` at their times and heals them."""

    def __init__(
        self, cluster: ChaosCluster, lab: Lab, faults: Sequence[Fault], log: Callable[[str], None]
    ) -> None:
        self.cluster = cluster
        self.lab = lab
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.log = log
        self.applied: list[AppliedFault] = []
        self._heals: dict[int, Heal] = {}  # index in `applied` -> its heal, while in force
        self._lock = threading.Lock()  # `applied` and `_heals`, shared by the faults' threads
        self._t0 = time.monotonic()

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def run(self, stop: threading.Event) -> None:
        """Apply and heal on time until the schedule is done or ``stop`` is set (what is
        still in force then is for `heal_all`).

        Each fault has a thread of its own. Faults apply one after the other in schedule
        order (a fault that waits, a membership change, holds back the next ones); each heals
        on its own time, so a heal that waits (a rejoin needing a quorum) never holds back the
        heal of a partition or a loss that the quorum is waiting for.
        """
        self._t0 = time.monotonic()
        turns = [threading.Event() for _ in self.faults]
        threads = [
            threading.Thread(
                target=self._fault_life, args=(i, stop, turns), name=f"nemesis-{i}", daemon=True
            )
            for i in range(len(self.faults))
        ]
        if turns:
            turns[0].set()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _fault_life(self, i: int, stop: threading.Event, turns: list[threading.Event]) -> None:
        """Fault ``i``: wait for its turn and time, apply, wait ``heal_after_s``, heal."""
        fault = self.faults[i]
        index = -1
        try:
            while not turns[i].wait(TURN_POLL_S):
                if stop.is_set():
                    return
            if stop.wait(max(0.0, fault.at_s - self._now())):
                return
            index = self._apply(fault)
        finally:
            if i + 1 < len(turns):
                turns[i + 1].set()
        if index in self._heals and not stop.wait(fault.heal_after_s):
            self._heal(index)

    def _apply(self, fault: Fault) -> int:
        started_s = self._now()
        try:
            self._check_free(fault)
            targets, detail, heal = self._do(fault)
        except Exception as exc:  # recorded: a fault that could not apply is part of the run
            applied = AppliedFault(
                fault=fault, started_s=started_s, targets=fault.targets, error=_why(exc)
            )
            heal = None
        else:
            applied = AppliedFault(fault=fault, started_s=started_s, targets=targets, detail=detail)
        with self._lock:
            index = len(self.applied)
            self.applied.append(applied)
            if heal is not None and fault.kind not in INSTANT:
                self._heals[index] = heal
        self.log(f"apply {applied.describe()}")
        return index

    def _check_free(self, fault: Fault) -> None:
        """Refuse a fault on a host another fault still holds. The schedule never overlaps
        two on one host, but applying is sequential and a heal counts from its fault's apply:
        a fault that applied late (behind a membership change) can still be in force when the
        next one on its host comes (a kill -9 of m3 inside m3's disk-full, whose heal then
        found m3 killed)."""
        with self._lock:
            held = {
                t: self.applied[i].fault.kind
                for i in self._heals
                for t in self.applied[i].fault.targets
            }
        for target in fault.targets:
            if target != LEADER and target in held:
                raise NotAppliedError(f"{target} is still under {held[target]}")

    def _heal(self, index: int) -> None:
        with self._lock:
            heal = self._heals.pop(index, None)
        if heal is None:
            return
        note, error = "", None
        try:
            note = heal()
        except Exception as exc:  # recorded; heal_all sweeps what is left
            error = _why(exc)
        with self._lock:
            applied = self.applied[index]
            detail = f"{applied.detail}; {note}" if note else applied.detail
            applied = replace(applied, healed_s=self._now(), detail=detail, heal_error=error)
            self.applied[index] = applied
        self.log(f"heal  {applied.describe()}")

    def heal_all(self) -> None:
        """Heal everything still in force: each fault's own heal, then a sweep (every network
        rule, paused processes resumed, disks freed, killed ones restarted, removed masters
        rejoined)."""
        for index in sorted(self._heals):
            self._heal(index)
        self.lab.heal()
        cluster = self.cluster
        for member in [*cluster.masters.values(), *cluster.workers.values()]:
            if member.paused:
                cluster.resume(member.name)
        if cluster.disk is not None and cluster.disk.filled:
            cluster.disk.free()
        for name in cluster.down():
            cluster.restart(name)
        for name, master in cluster.masters.items():
            if master.removed:
                cluster.rejoin(name)
        self.log(f"{self._now():7.2f}s healed all")

    # -- one fault ---------------------------------------------------------------------------

    def _do(self, fault: Fault) -> tuple[tuple[str, ...], str, Heal]:
        """Apply ``fault``: the resolved targets, a note, and how to heal it."""
        kind, cluster = fault.kind, self.cluster
        if kind in ("kill-master", "kill-worker", "pause-master", "pause-worker", "membership"):
            return self._process_fault(fault)
        if kind == "disk-full":
            (target,) = fault.targets
            written = cluster.fill_disk(target)
            return fault.targets, f"{written} bytes of filler", lambda: self._free(target)
        if kind == "transfer-leader":
            old = self._leader()
            to = fault.params.get("to")
            # "best", the leader itself (drawn before the leader was known), or a master that
            # cannot take over now (down, paused, removed): the leader's own pick.
            member = cluster.masters.get(str(to))
            able = member is not None and member.alive() and not member.paused
            new = cluster.transfer_leadership(str(to) if able and to != old else None)
            return (old,), f"{old} -> {new}", lambda: ""
        if kind == "loss":
            (target,) = fault.targets
            return fault.targets, *self._net(self.lab.loss(target, int(fault.params["percent"])))
        if kind == "delay":
            (target,) = fault.targets
            return fault.targets, *self._net(self.lab.delay(target, int(fault.params["ms"])))
        if kind == "isolate-worker":  # cut from every master, not from the storage host
            masters = [n for n, m in cluster.masters.items() if not m.removed]
            return fault.targets, *self._net(self.lab.partition(fault.targets, masters))
        return self._split(fault)

    def _process_fault(self, fault: Fault) -> tuple[tuple[str, ...], str, Heal]:
        (target,) = fault.targets
        cluster = self.cluster
        member = cluster.masters.get(target) or cluster.workers[target]
        if member.removed or not member.alive() or member.paused:
            raise NotAppliedError(f"{target} is already down, paused or removed")
        if fault.kind.startswith("kill"):
            cluster.kill9(target)
            return fault.targets, "kill -9", lambda: self._restart(target)
        if fault.kind.startswith("pause"):
            cluster.pause(target)
            return fault.targets, "SIGSTOP", lambda: _then(cluster.resume, target, "SIGCONT")
        cluster.remove(target)
        return fault.targets, "removed from the membership", lambda: self._rejoin(target)

    def _split(self, fault: Fault) -> tuple[tuple[str, ...], str, Heal]:
        lab, kind = self.lab, fault.kind
        masters = [n for n, m in self.cluster.masters.items() if not m.removed]
        if kind == "partition-majority":
            minority = [*fault.targets, *fault.params["with_minority"]]
            majority = [*[n for n in masters if n not in minority], *fault.params["with_majority"]]
            return fault.targets, *self._net(lab.partition(minority, majority))
        if kind == "bridge":
            halves = fault.params["halves"]
            return fault.targets, *self._net(lab.partition(halves[0], halves[1]))
        source = self._leader() if fault.targets == (LEADER,) else fault.targets[0]
        others = [n for n in masters if n != source]
        if kind == "isolate-leader":
            return (source,), *self._net(lab.partition([source], others))
        assert kind == "one-way", kind
        return (source,), *self._net(*[lab.block(source, other) for other in others])

    def _net(self, *faults: NetFault) -> tuple[str, Heal]:
        def heal() -> str:
            for one in faults:
                self.lab.heal(one)
            return ""

        return "; ".join(f.description for f in faults), heal

    def _leader(self) -> str:
        try:
            return self.cluster.wait_leader(LEADER_WAIT_S)
        except TimeoutError:
            raise NotAppliedError(f"no leader within {LEADER_WAIT_S}s") from None

    def _restart(self, name: str) -> str:
        self.cluster.restart(name)
        return "restarted"

    def _free(self, name: str) -> str:
        self.cluster.free_disk(name)
        if name in self.cluster.down():  # a master exits when its log cannot be written
            self.cluster.restart(name)
            return "freed; it had exited and was restarted"
        return "freed"

    def _rejoin(self, name: str) -> str:
        self.cluster.rejoin(name)
        return "rejoined as a learner with an empty data directory"


def _then(action: Callable[[str], None], target: str, note: str) -> str:
    action(target)
    return note


def _why(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
