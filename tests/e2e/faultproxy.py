"""A fault-injecting TCP relay for peer links between real master processes.

Each :class:`Link` listens on a free 127.0.0.1 port and relays every connection to one target
port. A test points a master's ``--peers`` at links it controls, one per directed link
(``m1 -> m2`` is the connection m1 dials to send to m2), and then cuts or heals them: a cut link
closes its open connections and accepts new ones only to close them at once, as a partition
that the peers keep probing would look like. All relays run on one event loop in a daemon
thread; ``close()`` stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["FaultProxy", "Link"]

T = TypeVar("T")
CONNECT_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 10.0
READ_BYTES = 1 << 16


class Link:
    """One relay: connections to ``port`` are forwarded to ``target_port`` while it is up."""

    def __init__(self, proxy: FaultProxy, name: str, target_port: int) -> None:
        self.proxy = proxy
        self.name = name
        self.target_port = target_port
        self.port = 0
        self.up = True
        self.accepted = 0  # connections accepted (relayed or refused), for assertions
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def cut(self) -> None:
        self.proxy.call(self._set(up=False))

    def heal(self) -> None:
        self.proxy.call(self._set(up=True))

    async def _set(self, *, up: bool) -> None:
        self.up = up
        if not up:
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()

    def _cut(self) -> bool:
        return not self.up

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        await self._set(up=False)
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        if self._cut():  # cut while we were connecting
            writer.close()
            up_writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side closes; then close the other so the pair dies together."""
    try:
        while data := await reader.read(READ_BYTES):
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        writer.close()


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class FaultProxy:
    """Owns the relays and the event loop thread they run on."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="faultproxy", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    def link(self, name: str, target_port: int) -> Link:
        """A new relay named ``name`` (e.g. ``"m1->m2"``) to ``target_port``."""
        link = Link(self, name, target_port)
        self.call(link._start())
        self.links[name] = link
        return link

    def isolate(self, node: str) -> None:
        """Cut every link to and from ``node`` (names look like ``"a->b"``)."""
        for name, link in self.links.items():
            if node in name.split("->"):
                link.cut()

    def heal_all(self) -> None:
        for link in self.links.values():
            link.heal()

    def close(self) -> None:
        if not self._loop.is_running():
            return
        for link in self.links.values():
            with contextlib.suppress(Exception):
                self.call(link._stop())
        with contextlib.suppress(Exception):
            self.call(_cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT_S)
        self._loop.close()
