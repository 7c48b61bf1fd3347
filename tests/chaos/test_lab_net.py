"""The lab's hosts and network faults: real packets between namespaces on one bridge."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.testing.chaos.disk import MOUNT_SOURCE_PREFIX
from agentflow.testing.chaos.netns import NS_PREFIX, Lab, unavailable
from tests.chaos.labtools import make_lab, send_through

PACKETS = 50
LOSS_PACKETS = 1000


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(tmp_path)


@pytest.fixture
def abc(lab: Lab) -> Lab:
    for name in ("a", "b", "c"):
        lab.add_host(name)
    return lab


def test_hosts_reach_each_other_over_the_bridge(abc: Lab) -> None:
    assert send_through(abc, "a", "b", PACKETS, heal=lambda: None) == PACKETS
    assert len({h.ip for h in abc.hosts.values()}) == 3


def test_partition_drops_packets_both_ways_and_heal_restores_them(abc: Lab) -> None:
    fault = abc.partition(["a"], ["b", "c"])
    # a -> b and b -> a are both cut while the partition stands; the marker goes after heal.
    assert send_through(abc, "a", "b", PACKETS, heal=lambda: abc.heal(fault)) == 0
    fault = abc.partition(["a"], ["b", "c"])
    assert send_through(abc, "b", "a", PACKETS, heal=lambda: abc.heal(fault)) == 0
    # b and c are on the same side: untouched.
    fault = abc.partition(["a"], ["b", "c"])
    assert send_through(abc, "b", "c", PACKETS, heal=lambda: None) == PACKETS
    abc.heal()
    assert not abc.faults
    assert send_through(abc, "a", "b", PACKETS, heal=lambda: None) == PACKETS
    assert send_through(abc, "b", "a", PACKETS, heal=lambda: None) == PACKETS


def test_hosts_in_no_group_are_untouched(abc: Lab) -> None:
    abc.partition(["a"], ["b"])
    assert send_through(abc, "c", "a", PACKETS, heal=lambda: None) == PACKETS
    assert send_through(abc, "b", "c", PACKETS, heal=lambda: None) == PACKETS


def test_block_is_one_way(abc: Lab) -> None:
    fault = abc.block("a", "b")
    assert send_through(abc, "b", "a", PACKETS, heal=lambda: None) == PACKETS
    assert send_through(abc, "a", "c", PACKETS, heal=lambda: None) == PACKETS
    assert send_through(abc, "a", "b", PACKETS, heal=lambda: abc.heal(fault)) == 0


def test_loss_drops_a_share_of_packets(abc: Lab) -> None:
    fault = abc.loss("a", 50)
    got = send_through(abc, "a", "b", LOSS_PACKETS, heal=lambda: abc.heal(fault))
    # Binomial(1000, 0.5): outside 350..650 once in ~10^21 runs.
    assert 350 < got < 650, got


def test_delay_is_applied_and_healed(abc: Lab) -> None:
    fault = abc.delay("a", 100)
    assert "netem" in fault.description or "tbf" in fault.description
    shown = abc.hosts["a"].exec(["tc", "qdisc", "show", "dev", abc.hosts["a"].dev]).stdout
    assert "netem" in shown or "tbf" in shown, shown
    abc.heal(fault)
    shown = abc.hosts["a"].exec(["tc", "qdisc", "show", "dev", abc.hosts["a"].dev]).stdout
    assert "netem" not in shown and "tbf" not in shown, shown
    assert send_through(abc, "a", "b", PACKETS, heal=lambda: None) == PACKETS


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip() for line in out.splitlines())


def _lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(NS_PREFIX)]


def test_close_leaves_nothing_even_after_an_exception(tmp_path: Path) -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    links = _root_links()
    with pytest.raises(RuntimeError, match="boom"), Lab(tmp_path / "lab") as lab:
        lab.add_host("a")
        lab.add_host("b")
        lab.partition(["a"], ["b"])
        lab.hosts["a"].spawn(["sleep", "600"], tmp_path / "sleep.log")
        assert _root_links() == links  # nothing added to the root namespace, ever
        assert len([n for n in _lab_namespaces() if n.startswith(lab.prefix)]) == 3
        raise RuntimeError("boom")
    assert not [n for n in _lab_namespaces() if n.startswith(lab.prefix)]
    assert _root_links() == links
    assert not lab.hosts["a"].procs[0].alive()


def test_a_new_lab_removes_what_a_dead_one_left(tmp_path: Path) -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = f"{NS_PREFIX}dead.{dead.pid}.m1"
    subprocess.run(["ip", "netns", "add", left], check=True)
    disk = tmp_path / "disk"
    disk.mkdir()
    source = f"{MOUNT_SOURCE_PREFIX}{dead.pid}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", source, str(disk)], check=True)
    with Lab(tmp_path / "lab") as lab:
        assert left in lab.stale_removed and str(disk) in lab.stale_removed
        assert left not in _lab_namespaces()
        assert str(disk) not in Path("/proc/mounts").read_text()
