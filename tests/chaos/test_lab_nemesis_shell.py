"""The nemesis' shell against a stand-in cluster and lab (no namespaces, no processes): when
targets are resolved, what a fault that cannot apply leaves, what stop and heal_all do."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import cast

from agentflow.testing.chaos.cluster import ChaosCluster
from agentflow.testing.chaos.nemesis import LEADER, Fault, Nemesis
from agentflow.testing.chaos.netns import Lab, NetFault

WAIT_S = 10.0  # a stand-in restart that waits gives up after this


@dataclass
class _Member:
    name: str
    up: bool = True
    paused: bool = False
    removed: bool = False

    def alive(self) -> bool:
        return self.up


@dataclass
class _Cluster:
    calls: list[str] = field(default_factory=list)
    current_leader: str = "m2"
    disk: None = None
    failing_restarts: int = 0  # the next restarts that raise
    restart_waits_for: threading.Event | None = None  # a restart that needs something first

    def __post_init__(self) -> None:
        self.masters = {n: _Member(n) for n in ("m1", "m2", "m3")}
        self.workers = {n: _Member(n) for n in ("w1",)}

    def _member(self, name: str) -> _Member:
        return self.masters.get(name) or self.workers[name]

    def kill9(self, name: str) -> None:
        self.calls.append(f"kill9 {name}")
        self._member(name).up = False

    def restart(self, name: str) -> None:
        self.calls.append(f"restart {name}")
        if self.restart_waits_for is not None and not self.restart_waits_for.wait(WAIT_S):
            raise RuntimeError(f"{name} waited in vain")
        if self.failing_restarts:
            self.failing_restarts -= 1
            raise RuntimeError(f"{name} did not come up")
        self._member(name).up = True

    def pause(self, name: str) -> None:
        self.calls.append(f"pause {name}")
        self._member(name).paused = True

    def resume(self, name: str) -> None:
        self.calls.append(f"resume {name}")
        self._member(name).paused = False

    def down(self) -> list[str]:
        members = [*self.masters.values(), *self.workers.values()]
        return [m.name for m in members if not m.up and not m.removed]

    def wait_leader(self, timeout_s: float = 0.0) -> str:
        return self.current_leader


@dataclass
class _Lab:
    calls: list[str] = field(default_factory=list)
    faults: dict[int, NetFault] = field(default_factory=dict)

    def partition(self, *groups: list[str]) -> NetFault:
        fault = NetFault(fault_id=len(self.calls), description=f"partition {groups}")
        self.calls.append(fault.description)
        self.faults[fault.fault_id] = fault
        return fault

    def heal(self, fault: NetFault | None = None) -> None:
        self.calls.append("heal" if fault is None else f"heal {fault.description}")
        if fault is None:
            self.faults.clear()
        else:
            self.faults.pop(fault.fault_id, None)


def _nemesis(faults: list[Fault]) -> tuple[Nemesis, _Cluster, _Lab, list[str]]:
    cluster, lab, lines = _Cluster(), _Lab(), []
    nemesis = Nemesis(cast(ChaosCluster, cluster), cast(Lab, lab), faults, lines.append)
    return nemesis, cluster, lab, lines


def test_the_leader_is_resolved_when_the_fault_applies() -> None:
    fault = Fault(at_s=0.0, kind="isolate-leader", targets=(LEADER,), heal_after_s=0.0)
    nemesis, cluster, lab, lines = _nemesis([fault])
    cluster.current_leader = "m3"
    nemesis.run(threading.Event())
    assert lab.calls == [
        "partition (['m3'], ['m1', 'm2'])",
        "heal partition (['m3'], ['m1', 'm2'])",
    ]
    [applied] = nemesis.applied
    assert applied.targets == ("m3",) and applied.error is None and applied.healed_s is not None
    assert [line.split()[0] for line in lines] == ["apply", "heal"]


def _stopping(nemesis: Nemesis, lines: list[str], after: int) -> threading.Event:
    """A stop event set once ``after`` lines were logged."""
    stop = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if len(lines) == after:
            stop.set()

    nemesis.log = log
    return stop


def test_a_fault_on_a_target_already_down_is_kept_as_not_applied() -> None:
    faults = [
        Fault(at_s=0.0, kind="kill-master", targets=("m1",), heal_after_s=600.0),
        Fault(at_s=0.0, kind="pause-master", targets=("m1",), heal_after_s=600.0),
    ]
    nemesis, cluster, _, lines = _nemesis(faults)
    nemesis.run(_stopping(nemesis, lines, 2))
    kill, pause = nemesis.applied
    assert kill.error is None and pause.error == "NotAppliedError: m1 is still under kill-master"
    assert cluster.calls == ["kill9 m1"]  # the pause did nothing
    nemesis.heal_all()
    assert cluster.calls == ["kill9 m1", "restart m1"]


def test_a_fault_on_a_host_another_still_holds_is_not_applied() -> None:
    # Apart in the schedule, together in fact: the partition applied late and is still in
    # force when the kill of its host comes; m3 is up, so only the holding fault can tell.
    faults = [
        Fault(at_s=0.0, kind="partition-majority", targets=("m3",), heal_after_s=600.0,
              params={"with_minority": [], "with_majority": []}),
        Fault(at_s=0.0, kind="kill-master", targets=("m3",), heal_after_s=1.0),
        Fault(at_s=0.0, kind="kill-master", targets=("m1",), heal_after_s=600.0),
    ]  # fmt: skip
    nemesis, cluster, lab, lines = _nemesis(faults)
    nemesis.run(_stopping(nemesis, lines, 3))
    split, kill3, kill1 = nemesis.applied
    assert split.error is None and kill1.error is None
    assert kill3.error == "NotAppliedError: m3 is still under partition-majority"
    assert cluster.calls == ["kill9 m1"]
    nemesis.heal_all()
    assert not cluster.down() and not lab.faults


def test_stop_leaves_what_is_in_force_to_heal_all() -> None:
    faults = [
        Fault(at_s=0.0, kind="kill-worker", targets=("w1",), heal_after_s=600.0),
        Fault(at_s=0.0, kind="pause-master", targets=("m2",), heal_after_s=600.0),
        Fault(at_s=600.0, kind="kill-master", targets=("m3",), heal_after_s=1.0),
    ]
    nemesis, cluster, lab, lines = _nemesis(faults)
    nemesis.run(_stopping(nemesis, lines, 2))  # once the first two are in force
    assert [a.fault for a in nemesis.applied] == faults[:2]
    assert cluster.down() == ["w1"] and cluster.masters["m2"].paused
    nemesis.heal_all()
    assert not cluster.down() and not cluster.masters["m2"].paused and not lab.faults
    assert all(a.healed_s is not None and a.heal_error is None for a in nemesis.applied)
    assert "kill9 m3" not in cluster.calls


def test_heal_all_sweeps_what_a_failed_heal_left() -> None:
    fault = Fault(at_s=0.0, kind="kill-master", targets=("m1",), heal_after_s=0.0)
    nemesis, cluster, _, _ = _nemesis([fault])
    cluster.failing_restarts = 1
    nemesis.run(threading.Event())
    [applied] = nemesis.applied
    assert applied.heal_error is not None and "did not come up" in applied.heal_error
    assert cluster.down() == ["m1"]
    nemesis.heal_all()
    assert not cluster.down()


def test_a_heal_that_waits_does_not_hold_back_the_heal_it_waits_for() -> None:
    # The restart of m1 can only succeed once the partition is gone (as a rejoin needs the
    # quorum that a partition cuts): it must heal on its own time meanwhile.
    faults = [
        Fault(at_s=0.0, kind="kill-master", targets=("m1",), heal_after_s=0.0),
        Fault(at_s=0.0, kind="isolate-leader", targets=(LEADER,), heal_after_s=0.0),
    ]
    nemesis, cluster, lab, _ = _nemesis(faults)
    healed = threading.Event()
    cluster.restart_waits_for = healed
    heal = lab.heal

    def heal_and_tell(fault: NetFault | None = None) -> None:
        heal(fault)
        healed.set()

    lab.heal = heal_and_tell  # type: ignore[method-assign]
    nemesis.run(threading.Event())
    assert all(a.error is None and a.heal_error is None for a in nemesis.applied)
    assert not cluster.down() and not lab.faults
