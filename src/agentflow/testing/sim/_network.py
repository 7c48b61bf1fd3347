"""The simulated network: which links are cut, and what happens to each message sent.

The network decides a message's fate when it is sent (dropped, delivered once, or
duplicated, each copy with its own delay, which is also how messages get reordered) and
again when a copy is due (a partition that appeared meanwhile swallows it). It keeps no
queue of its own: the simulation's single event heap carries copies in flight, so one
ordering of events — the seed's — governs everything.

A clogged link (BUGGIFY) neither drops nor delivers: copies due on it are held back, and
released all at once when the link is unclogged — ideally at the worst moment, so that a
burst of messages from an older term meets a freshly elected leader.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["LinkFaults", "SimNetwork"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFaults:
    """Probabilities and delays applied to every message; `calm()` is the healed network."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_ms_min: int = 1
    delay_ms_max: int = 8

    def __post_init__(self) -> None:
        assert 0.0 <= self.drop_rate < 1.0, self
        assert 0.0 <= self.duplicate_rate < 1.0, self
        assert 0 < self.delay_ms_min <= self.delay_ms_max, self

    @staticmethod
    def calm() -> LinkFaults:
        return LinkFaults()


class SimNetwork:
    """Directed links between node ids, each either open or cut."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._cut: set[tuple[str, str]] = set()
        self._clogged: set[tuple[str, str]] = set()
        self._held: list[object] = []  # copies that came due on a clogged link, in order
        self.faults = LinkFaults.calm()
        self.description = "healed"

    # -- partitions -------------------------------------------------------------------------

    def heal(self) -> None:
        self._cut.clear()
        self.description = "healed"

    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Symmetric partition: nodes talk only within their own group."""
        members = [sorted(group) for group in groups]
        self._cut.clear()
        for i, left in enumerate(members):
            for j, right in enumerate(members):
                if i != j:
                    self._cut.update((a, b) for a in left for b in right)
        self.description = "partition " + " | ".join(",".join(g) for g in members)

    def isolate_one_way(self, node: str, others: Iterable[str], *, inbound: bool) -> None:
        """Asymmetric partition: `node` can send but not receive (inbound) or the reverse."""
        self._cut.clear()
        for other in sorted(others):
            self._cut.add((other, node) if inbound else (node, other))
        direction = "deaf" if inbound else "mute"
        self.description = f"{node} {direction}"

    def bridge(self, left: Iterable[str], bridge: str, right: Iterable[str]) -> None:
        """Two halves that cannot talk to each other, and one node that talks to both."""
        lhs, rhs = sorted(left), sorted(right)
        self._cut.clear()
        for a in lhs:
            for b in rhs:
                self._cut.add((a, b))
                self._cut.add((b, a))
        self.description = f"bridge {','.join(lhs)} <{bridge}> {','.join(rhs)}"

    # -- clogs ------------------------------------------------------------------------------

    def clog(self, links: Iterable[tuple[str, str]]) -> None:
        self._clogged.update(links)

    def clogged(self, sender: str, receiver: str) -> bool:
        return bool(self._clogged) and (sender, receiver) in self._clogged

    def hold(self, message: object) -> None:
        """Keep a copy that came due on a clogged link until the link is unclogged."""
        self._held.append(message)

    def unclog(self) -> list[object]:
        """Open every clogged link; the copies held back, oldest first, to deliver now."""
        held, self._held = self._held, []
        self._clogged.clear()
        return held

    @property
    def has_clogs(self) -> bool:
        return bool(self._clogged)

    def silence(self, node: str, others: Iterable[str]) -> None:
        """Cut ``node``'s outbound links on top of whatever else is cut (BUGGIFY: what it sends
        next is lost) until the next partition or heal."""
        self._cut.update((node, other) for other in sorted(others))
        self.description += f" +{node} silenced"

    def unsilence(self, node: str) -> None:
        """Reopen every outbound link of ``node`` (it restarted)."""
        self._cut = {(a, b) for a, b in self._cut if a != node}

    def connected(self, sender: str, receiver: str) -> bool:
        return (sender, receiver) not in self._cut

    # -- per-message fate -------------------------------------------------------------------

    def delays_ms(self, sender: str, receiver: str) -> list[int]:
        """Delays of the copies that will be in flight: none, one, or two (a duplicate)."""
        if (sender, receiver) in self._cut:
            return []
        faults = self.faults
        rng = self._rng
        if faults.drop_rate and rng.random() < faults.drop_rate:
            return []
        delays = [rng.randint(faults.delay_ms_min, faults.delay_ms_max)]
        if faults.duplicate_rate and rng.random() < faults.duplicate_rate:
            delays.append(rng.randint(faults.delay_ms_min, faults.delay_ms_max * 3))
        return delays
