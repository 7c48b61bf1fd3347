"""Shared pieces of the lab tests: a lab fixture that skips where namespaces cannot be made,
and UDP probes opened inside a host's namespace (from a thread that entered it, never the
pytest process itself)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from agentflow.testing.chaos.netns import Lab, unavailable

T = TypeVar("T")
MARKER = b"marker"
SO_RCVBUFFORCE = 33  # root may exceed net.core.rmem_max
RECEIVE_BUFFER_BYTES = 8 << 20
RECEIVE_DEADLINE_S = 5.0  # the marker, sent on a healed path, arrives well within this


def make_lab(tmp_path: Path) -> Iterator[Lab]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Lab(tmp_path / "lab") as lab:
        yield lab


def in_host(lab: Lab, host: str, fn: Callable[[], T]) -> T:
    """``fn()`` run by a thread that entered ``host``'s namespace (the caller stays put)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            lab.enter(host)
            box.append(fn())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def udp(lab: Lab, host: str) -> socket.socket:
    """A UDP socket of ``host``, bound to its address."""
    ip = lab.hosts[host].ip

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for every probe datagram: an overflow would drop them, the marker too.
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
        sock.bind((ip, 0))
        return sock

    return in_host(lab, host, make)


def count_until_marker(receiver: socket.socket) -> int:
    """Datagrams received before the marker (which must come within the deadline)."""
    receiver.settimeout(RECEIVE_DEADLINE_S)
    count = 0
    while receiver.recv(64) != MARKER:
        count += 1
    return count


def send_through(lab: Lab, src: str, dst: str, n: int, heal: Callable[[], None]) -> int:
    """Send ``n`` datagrams ``src`` -> ``dst`` under the faults in force, call ``heal``, send a
    marker on the healed path; how many of the ``n`` arrived (all are in before the marker:
    one path, in order)."""
    sender, receiver = udp(lab, src), udp(lab, dst)
    try:
        address = receiver.getsockname()
        for i in range(n):
            with contextlib.suppress(PermissionError):  # dropped on its way out: EPERM
                sender.sendto(b"%d" % i, address)
        heal()
        sender.sendto(MARKER, address)
        return count_until_marker(receiver)
    finally:
        sender.close()
        receiver.close()
