"""The dashboard's cost on the master (issue 16): W1 of ``fast_path.py`` (no-op calls mapped and
gathered, one master, 2 one-slot workers) with and without a headless Chromium page open on
the master's dashboard, runs alternated on fresh clusters; medians of the master's CPU ms per
task, its RSS after the run, and tasks/s.

The page is ``#/tasks`` by default (``--page queue`` etc.): it follows every task event over
``WS /api/v1/events`` and re-reads its list at most once a second, the busiest page under W1.
Needs Debian's ``chromium`` (``make sysdeps``) and the dev extra's ``playwright``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fast_path
from _cluster import figure, run_main
from agentflow.testing.chromium import CHROMIUM, CHROMIUM_FLAGS

BENCH = "dashboard_cost"
FLAGS = list(CHROMIUM_FLAGS)
KEYS = ("w1_master_cpu_ms_per_task", "w1_master_rss_mb", "w1_tasks_per_s")


def one_run(args: argparse.Namespace, browser: Any | None) -> dict[str, float]:
    parsed = argparse.Namespace(layout="2x1")
    with fast_path._cluster(parsed, 1, "dash") as cluster:
        page = None
        if browser is not None:
            page = browser.new_page()
            page.goto(f"{cluster.urls[0]}/#/{args.page}")
            page.wait_for_selector("section.page h1")
            page.locator("#live", has_text="live").wait_for()
        figures = fast_path.w1(cluster, args.count)
        if page is not None:
            page.close()
    return {k: figures[k] for k in KEYS}


def body(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            for _ in range(args.runs):
                runs["off"].append(one_run(args, None))
                runs["on"].append(one_run(args, browser))
        finally:
            browser.close()
    for mode, results in runs.items():
        for key in KEYS:
            values = [r[key] for r in results]
            figure(BENCH, f"{key}_page_{mode}", statistics.median(values), fmt="{:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of each (median)")
    parser.add_argument("--count", type=int, default=10_000, help="W1 calls per run")
    parser.add_argument("--page", default="tasks", help="the dashboard page held open")
    args = parser.parse_args()
    return run_main(BENCH, lambda: body(args))


if __name__ == "__main__":
    sys.exit(main())
