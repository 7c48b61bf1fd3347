"""Hosts as network namespaces on one bridge, the processes on them, and network faults.

A `Lab` makes a "switch" namespace holding a bridge and, per host, a namespace joined to it by
a veth pair, with an address in a private /24 picked per lab. Nothing is added to the root
namespace: the veth ends are created directly inside their namespaces. Every namespace name
carries the lab's prefix and its owner's pid (``afchaos-<tag>.<pid>.<host>``), so a new lab
removes what a crashed one left behind (its owner pid dead) before it makes its own.

Faults are nft rules in the hosts' own namespaces, each fault in a table of its own
(``afc_f<N>``) so that healing removes exactly what it added; a delay is a tc qdisc on both
ends of the host's link: ``netem`` where the kernel has it, else a ``tbf`` rate limit slow
enough that a full-size packet waits the asked delay (the fault's description says which).

Root and ``ip``/``nft``/``tc`` are needed; `unavailable()` says why a lab cannot be made here.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from agentflow.testing.chaos.disk import stale_mounts, unmount

__all__ = ["NS_PREFIX", "Host", "HostProc", "Lab", "NetFault", "remove_stale", "unavailable"]

NS_PREFIX = "afchaos-"  # every namespace a lab makes starts with this
RUN_NETNS = Path("/run/netns")
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 15.0  # one ip/nft/tc invocation
STOP_TIMEOUT_S = 10.0  # waiting for a killed process to be reaped
HOSTS_MAX = 200  # addresses .1 .. .200 of the lab's /24
TBF_PACKET_BYTES = 1500  # the full-size packet a tbf "delay" makes wait the asked time
TBF_BURST_BYTES = 1600  # tbf needs a bucket of at least one packet
TBF_QUEUE_LATENCY_MS = 5000  # beyond this a rate-limited packet is dropped
TABLE_PREFIX = "afc_f"


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (make sysdeps)"
    probe = f"{NS_PREFIX}probe.{os.getpid()}"
    try:
        done = _run(["ip", "netns", "add", probe], check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns add failed: {exc}"
    if done.returncode != 0:
        return f"ip netns add refused: {done.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns_pids(netns: str) -> None:
    """SIGKILL every process still inside ``netns`` (a namespace outlives ``ip netns del``
    while a process holds it)."""
    done = _run(["ip", "netns", "pids", netns], check=False)
    for word in done.stdout.split():
        if word == str(os.getpid()):
            continue  # the runner itself, which entered its clients' host
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


def remove_stale() -> list[str]:
    """Delete the namespaces of labs whose owner process is dead, and unmount their small
    disks; the namespaces' names and the mount points."""
    removed = []
    for mountpoint in stale_mounts(_pid_alive):
        unmount(mountpoint)
        removed.append(mountpoint)
    return removed + _remove_stale_namespaces()


def _remove_stale_namespaces() -> list[str]:
    done = _run(["ip", "netns", "list"], check=False)
    removed = []
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split(".")
        if not name.startswith(NS_PREFIX) or len(parts) != 3 or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        _kill_ns_pids(name)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


@dataclass
class HostProc:
    """A process started on a host, in a session (process group) of its own."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process only (its children, like a crashed machine's, are separate)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=STOP_TIMEOUT_S)

    def _group(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def pause(self) -> None:
        """SIGSTOP the process group: the host freezes, timers and all."""
        self._group(signal.SIGSTOP)

    def resume(self) -> None:
        self._group(signal.SIGCONT)

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (after a SIGCONT, so a paused process can act on it); its exit code."""
        if self.alive():
            self.resume()
            self.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.popen.wait(timeout=timeout_s)
        self.stop()
        return self.popen.returncode

    def stop(self) -> None:
        """SIGKILL the whole group and reap the process."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.popen.returncode is None:
            self.popen.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Host:
    """One machine of the lab: a network namespace with one address on the bridge."""

    name: str
    netns: str
    ip: str
    dev: str  # its end of the veth pair, inside `netns`
    peer_dev: str  # the switch's end, inside the switch namespace
    procs: list[HostProc] = field(default_factory=list)

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> HostProc:
        """Run ``argv`` on this host (``ip netns exec``), output appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        proc = HostProc(popen, log)
        self.procs.append(proc)
        return proc

    def signal_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every process on this host (its namespace), in whatever session:
        a worker's task bodies run in sessions of their own, and a frozen host freezes them
        too."""
        done = _run(["ip", "netns", "pids", self.netns], check=False)
        for word in done.stdout.split():
            if word != str(os.getpid()):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(word), sig)

    def exec(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a short command (nft, tc, ip) on this host and wait for it."""
        return _run(["ip", "netns", "exec", self.netns, *argv], check=check)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetFault:
    """A network fault in force: what to undo to heal it exactly."""

    fault_id: int
    description: str
    tables: tuple[tuple[str, str], ...] = ()  # (netns, nft table) pairs
    qdiscs: tuple[tuple[str, str], ...] = ()  # (netns, device) pairs with a root qdisc


def _subnet(run_id: str) -> str:
    digest = hashlib.sha256(run_id.encode()).digest()
    return f"10.{64 + digest[0] % 128}.{digest[1]}"


class Lab:
    """Namespaces on a bridge: `add_host`, `enter`, network faults, and `close` for all.

    Use it as a context manager: whatever happens inside, ``close()`` kills what was spawned
    and deletes every namespace (and so every link) it made.
    """

    def __init__(self, workdir: Path, *, run_id: str | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        tag = os.urandom(2).hex()
        self.run_id = run_id or f"{os.getpid()}-{tag}-{time.time_ns()}"
        self.prefix = f"{NS_PREFIX}{tag}.{os.getpid()}."
        self.short = f"af{tag}"  # interface names: 6 characters, then the host's index
        self.subnet = _subnet(self.run_id)
        self.hosts: dict[str, Host] = {}
        self.faults: dict[int, NetFault] = {}
        self.stale_removed = remove_stale()
        self._namespaces: list[str] = []
        self._closers: list[Callable[[], None]] = []
        self._fault_ids = 0
        self._netem: bool | None = None
        self.switch = self.prefix + "switch"
        self.bridge = f"{self.short}br"
        try:
            self._add_netns(self.switch)
            _run(["ip", "-n", self.switch, "link", "add", self.bridge, "type", "bridge"])
            _run(["ip", "-n", self.switch, "link", "set", self.bridge, "up"])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _add_netns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def add_host(self, name: str) -> Host:
        """A new host ``name`` on the bridge, with the next address of the lab's /24."""
        assert name.isidentifier() and name not in self.hosts, name
        index = len(self.hosts) + 1
        assert index <= HOSTS_MAX, "the lab's /24 is full"
        host = Host(
            name=name,
            netns=self.prefix + name,
            ip=f"{self.subnet}.{index}",
            dev=f"{self.short}{index}h",
            peer_dev=f"{self.short}{index}s",
        )
        self._add_netns(host.netns)
        link = ["ip", "link", "add", host.dev, "netns", host.netns, "type", "veth"]
        _run([*link, "peer", "name", host.peer_dev, "netns", self.switch])
        _run(["ip", "-n", self.switch, "link", "set", host.peer_dev, "master", self.bridge, "up"])
        _run(["ip", "-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", host.dev])
        _run(["ip", "-n", host.netns, "link", "set", host.dev, "up"])
        self.hosts[name] = host
        return host

    def enter(self, name: str) -> None:
        """Move the calling thread into host ``name``'s network namespace (libc setns).

        Called from the main thread before any other starts, it moves the whole process:
        threads and children started later inherit the namespace.
        """
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(RUN_NETNS / self.hosts[name].netns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns into {name}: {os.strerror(code)}")
        finally:
            os.close(fd)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` (an unmount, say) when the lab closes, before namespaces go."""
        self._closers.append(closer)

    def close(self) -> None:
        """Kill every process spawned, run the closers, delete every namespace made."""
        for host in self.hosts.values():
            for proc in host.procs:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    proc.stop()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()
        for netns in reversed(self._namespaces):
            _kill_ns_pids(netns)
            _run(["ip", "netns", "del", netns], check=False)
        self._namespaces.clear()
        self.faults.clear()

    # -- network faults ----------------------------------------------------------------------

    def _new_fault(self, description: str, **undo: tuple[tuple[str, str], ...]) -> NetFault:
        fault = NetFault(fault_id=self._fault_ids, description=description, **undo)
        self.faults[fault.fault_id] = fault
        return fault

    def _table(self, host: Host, table: str, drop_in: list[str], drop_out: list[str]) -> None:
        """Add nft ``table`` on ``host`` dropping packets that match any of the rules."""
        rules = [
            f"table inet {table} {{",
            "  chain in { type filter hook input priority -10; policy accept;",
            *[f"    {rule} drop" for rule in drop_in],
            "  }",
            "  chain out { type filter hook output priority -10; policy accept;",
            *[f"    {rule} drop" for rule in drop_out],
            "  }",
            "}",
        ]
        path = self.workdir / f"nft-{host.name}-{table}.conf"
        path.write_text("\n".join(rules) + "\n")
        host.exec(["nft", "-f", str(path)])

    def _drop(self, description: str, plan: dict[str, tuple[list[str], list[str]]]) -> NetFault:
        self._fault_ids += 1
        table = f"{TABLE_PREFIX}{self._fault_ids}"
        tables = []
        for name, (drop_in, drop_out) in plan.items():
            host = self.hosts[name]
            self._table(host, table, drop_in, drop_out)
            tables.append((host.netns, table))
        return self._new_fault(description, tables=tuple(tables))

    def partition(self, *groups: Iterable[str]) -> NetFault:
        """Hosts in different groups exchange no packets; hosts in no group are untouched."""
        sets = [list(g) for g in groups]
        plan: dict[str, tuple[list[str], list[str]]] = {}
        for i, group in enumerate(sets):
            others = [self.hosts[n].ip for j, g in enumerate(sets) if j != i for n in g]
            if not others:
                continue
            addresses = "{ " + ", ".join(others) + " }"
            for name in group:
                plan[name] = ([f"ip saddr {addresses}"], [f"ip daddr {addresses}"])
        shown = " | ".join(",".join(g) for g in sets)
        return self._drop(f"partition {shown}", plan)

    def block(self, src: str, dst: str) -> NetFault:
        """One way: ``src``'s packets to ``dst`` are dropped; ``dst``'s reach ``src``."""
        plan: dict[str, tuple[list[str], list[str]]] = {
            src: ([], [f"ip daddr {self.hosts[dst].ip}"])
        }
        return self._drop(f"block {src} -> {dst}", plan)

    def loss(self, host: str, percent: int) -> NetFault:
        """Drop ``percent``% of ``host``'s packets, each way (nft numgen random)."""
        assert 0 <= percent <= 100, percent
        rule = f"numgen random mod 100 < {percent}"
        plan: dict[str, tuple[list[str], list[str]]]
        plan = {host: ([f'iifname != "lo" {rule}'], [f'oifname != "lo" {rule}'])}
        return self._drop(f"loss {percent}% at {host}", plan)

    def delay(self, host: str, ms: int) -> NetFault:
        """Slow both ends of ``host``'s link: netem delay where the kernel has it, else a tbf
        rate limit under which a full-size packet waits ``ms`` (said in the description).

        Two delays on one host share its root qdisc: the later replaces the earlier, and
        healing either removes both.
        """
        target = self.hosts[host]
        ends = ((target.netns, target.dev), (self.switch, target.peer_dev))
        how = ""
        for netns, dev in ends:
            how = self._slow(netns, dev, ms)
        self._fault_ids += 1
        return self._new_fault(f"delay {ms}ms at {host} ({how})", qdiscs=ends)

    def _slow(self, netns: str, dev: str, ms: int) -> str:
        base = ["ip", "netns", "exec", netns, "tc", "qdisc", "replace", "dev", dev, "root"]
        if self._netem is not False:
            done = _run([*base, "netem", "delay", f"{ms}ms"], check=False)
            self._netem = done.returncode == 0
            if self._netem:
                return f"netem delay {ms}ms"
        rate_bit = max(8, TBF_PACKET_BYTES * 8 * 1000 // max(ms, 1))
        tbf = ["tbf", "rate", f"{rate_bit}bit", "burst", str(TBF_BURST_BYTES)]
        _run([*base, *tbf, "latency", f"{TBF_QUEUE_LATENCY_MS}ms"])
        return (
            f"no netem here: tbf rate {rate_bit}bit, a {TBF_PACKET_BYTES}-byte packet waits {ms}ms"
        )

    def heal(self, fault: NetFault | None = None) -> None:
        """Undo ``fault``, or every network fault in force when None."""
        faults = list(self.faults.values()) if fault is None else [fault]
        for one in faults:
            for netns, table in one.tables:
                _run(
                    ["ip", "netns", "exec", netns, "nft", "delete", "table", "inet", table],
                    check=False,
                )
            for netns, dev in one.qdiscs:
                _run(
                    ["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", dev, "root"],
                    check=False,
                )
            self.faults.pop(one.fault_id, None)
