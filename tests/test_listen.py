"""The server's listening sockets: the connections they accept send small replies at once."""

from __future__ import annotations

import socket

from retrain_loop.server.listen import listen


def test_accepted_connections_have_nagle_off():
    # asyncio sets TCP_NODELAY only on sockets made with proto IPPROTO_TCP, which
    # socket.create_server does not give; without it a keep-alive request waited ~40 ms.
    sockets = listen("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            conn, _ = sockets[0].accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for sock in sockets:
            sock.close()
