"""Latency histograms cheap enough for the hot path, exposed as Prometheus histograms.

An observation is one ``bisect`` and two additions, with no lock and no allocation: the
master observes on its event loop (and the Raft log's fsync on its disk thread, one writer per
histogram), and a scrape reads the counts as they are. prometheus_client's own ``Histogram``
takes a lock per observation and walks every bucket; these are read by a collector at scrape
time instead (:mod:`agentflow.api.metrics`). Stdlib only, so every layer may hold one.

Label sets are bounded: a :class:`HistogramVec` keeps at most ``max_series`` of them, and any
label set seen after that is counted under :data:`OVERFLOW_LABEL` for every label, so a
user-chosen label (a task's group) can never grow the exposition without bound.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

__all__ = [
    "FAST_BUCKETS_S",
    "OVERFLOW_LABEL",
    "SLOW_BUCKETS_S",
    "Histogram",
    "HistogramVec",
]

# Seconds. Fast: a commit, an fsync, an HTTP answer (50 us .. 10 s).
FAST_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
# Slow: a task's queue wait and run time (1 ms .. 1 day).
SLOW_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.005,
    0.025,
    0.1,
    0.5,
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4 * 3600.0,
    86400.0,
)
OVERFLOW_LABEL = "_other"


class Histogram:
    """Counts of observations per bucket (``counts[i]`` holds values <= ``bounds[i]`` and above
    the bound before; the last slot, values above every bound) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = FAST_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and ascending")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, int]], int, float]:
        """``([(le, cumulative count), ..., ("+Inf", count)], count, sum)`` as exposed."""
        counts = list(self.counts)  # one read: the +Inf bucket always equals the count
        total = 0
        buckets: list[tuple[str, int]] = []
        for bound, n in zip(self.bounds, counts, strict=False):
            total += n
            buckets.append((_float_text(bound), total))
        total += counts[-1]
        buckets.append(("+Inf", total))
        return buckets, total, self.sum


class HistogramVec:
    """Histograms by label values, at most ``max_series`` label sets (then the overflow set)."""

    __slots__ = ("_overflow", "bounds", "labels", "max_series", "series")

    def __init__(
        self, labels: Sequence[str], bounds: Sequence[float], *, max_series: int = 64
    ) -> None:
        self.labels = tuple(labels)
        self.bounds = tuple(bounds)
        self.max_series = max_series
        self.series: dict[tuple[str, ...], Histogram] = {}
        self._overflow = (OVERFLOW_LABEL,) * len(self.labels)

    def of(self, *values: str) -> Histogram:
        """The histogram of ``values`` (the overflow one once ``max_series`` are in use)."""
        hist = self.series.get(values)
        if hist is None:
            key = values if len(self.series) < self.max_series else self._overflow
            hist = self.series.get(key)
            if hist is None:
                hist = self.series[key] = Histogram(self.bounds)
        return hist

    def observe(self, value: float, *values: str) -> None:
        self.of(*values).observe(value)

    def items(self) -> Iterator[tuple[tuple[str, ...], Histogram]]:
        return iter(sorted(self.series.items()))


def _float_text(value: float) -> str:
    return repr(float(value))
