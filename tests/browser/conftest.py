"""A headless Chromium (Debian's ``chromium``, driven by Playwright with the system binary:
never ``playwright install``) and real master and worker processes for the dashboard tests.

Every page a test opens fails the test on a console error or an uncaught exception. Screenshots
go to ``build/screenshots/`` (printed at the end of the run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.testing.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.e2e.procs import Processes

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
FLAGS = list(CHROMIUM_FLAGS)
VIEWPORT = {"width": 1366, "height": 800}  # a laptop screen
WAIT_MS = 15_000  # any wait for what a page shows

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "browser" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.slow)


# Per module, not per session: Playwright's sync API holds an event loop running in this thread
# while it is open, and the asyncio tests of later modules need none running.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: `make sysdeps` installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary --user-data-dir of its own (and refuses
        # one in args); each test's context is a fresh cookie jar on top.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """One browser context and page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(chromium: Any) -> Iterator[Tab]:
    opened = Tab(chromium)
    try:
        yield opened
        assert not opened.errors, "\n".join(opened.errors)
    finally:
        opened.close()


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    processes = Processes(Path(tmp_path_factory.mktemp("dash")))
    try:
        yield processes
    finally:
        processes.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SHOTS.is_dir() and any(SHOTS.iterdir()):
        terminalreporter.write_line(f"dashboard screenshots: {SHOTS}")
