"""The master's API listener hands asyncio sockets it sets TCP_NODELAY on.

asyncio sets TCP_NODELAY on an accepted connection only when the socket's proto says
IPPROTO_TCP; ``socket.create_server`` leaves it 0. Without it, an answer written in two parts
(headers, then body) on a kept-alive connection waits for the client's delayed ACK (~40 ms).
"""

from __future__ import annotations

import asyncio
import socket

from agentflow.cli.server import _listen


def test_accepted_connections_have_nodelay() -> None:
    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            await writer.wait_closed()

        listener = _listen("127.0.0.1", 0)
        server = await asyncio.start_server(on_client, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            nodelay = await asyncio.wait_for(accepted, 5)
            writer.close()
            await writer.wait_closed()
        return nodelay

    assert asyncio.run(main()) != 0
