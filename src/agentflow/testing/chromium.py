"""How the dashboard's browser tests and its cost benchmark start Debian's Chromium.

Headless, with everything that would reach out to the network at start-up switched off (this
workplace's network is closed, and a test must never depend on it); Playwright drives the
system browser at :data:`CHROMIUM`, never a downloaded one.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
