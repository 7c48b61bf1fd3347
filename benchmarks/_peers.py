"""The issue 14 table: the peers' figures (Celery, Dask, Ray) beside this run's fast_path ones.

``run_all.py`` prints :func:`peers_table` after its summary, from the ``fast_path`` figure lines.
"""

from __future__ import annotations

# The table (2026-11-28, this 2-core machine, medians of 3): Celery, Dask, Ray, and
# AgentFlow then. W2 is p50 / p99 ms.
PEERS = (
    (
        "W1 10,000 no-op calls, tasks/s",
        ("655", "649", "2,167", "509"),
        ("w1_tasks_per_s",),
        ">= 4,000",
    ),
    (
        "W2 submit+result, p50 / p99 ms",
        ("1.8 / 3.0", "10.6 / 14.1", "1.3 / 1.7", "3.9 / 7.1"),
        ("w2_p50_ms", "w2_p99_ms"),
        "<= 1.2 / <= 2.5",
    ),
    ("W3 DAG 10 x 100, wall s", ("7.0", "1.2", "0.4", "1.9"), ("w3_wall_s",), "<= 0.3"),
    ("W4 500 `true`, tasks/s", ("464", "540", "1,034", "362"), ("w4_tasks_per_s",), ">= 1,500"),
    (
        "seed: shell tasks/s, 3 masters",
        ("-", "-", "-", "-"),
        ("seed_shell_tasks_per_s",),
        "> 1,000",
    ),
)


def peers_table(figures: dict[str, str]) -> str:
    """The issue's comparison table with this run's figures (``figures``: metric -> value as
    printed) in the 1-master and 3-master columns."""
    head = (
        "workload",
        "Celery",
        "Dask",
        "Ray",
        "AF 11-28",
        "AF 1 master",
        "AF 3 masters",
        "target",
    )
    rows: list[tuple[str, ...]] = [head]
    for label, peers, metrics, target in PEERS:
        cells = []
        for suffix in ("", "_3m"):
            values = [figures.get(m + suffix, "-") for m in metrics]
            cells.append(" / ".join(values) if any(v != "-" for v in values) else "-")
        rows.append((label, *peers, *cells, target))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = ["", "== fast path vs peers (issue 14 table; AF = AgentFlow) =="]
    for i, row in enumerate(rows):
        out.append("  ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
