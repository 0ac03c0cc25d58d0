"""The server's listening sockets, bound before anything else is created.

``serve`` binds its sockets right after reading the pool and before opening the database, and
uvicorn serves on those very sockets, so a port in use is reported before any file is made and
nothing can take the port in between.
"""

from __future__ import annotations

import errno
import socket


class ListenError(OSError):
    """A host or port the server cannot listen on."""


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on every address of ``host``, as uvicorn would bind them."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen on {host}: {e.strerror}") from e
    # "::" takes IPv4 too where it can, so the 127.0.0.1 address printed for it works.
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    sockets: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
            if sockets:  # the free port the first one took, for --port 0
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = socket.create_server(address, family=family, dualstack_ipv6=dualstack)
            sockets.append(sock)
            # create_server leaves proto 0, so asyncio does not set TCP_NODELAY on the
            # connections it accepts; set here, they inherit it. Without it a keep-alive
            # request waited ~40 ms for a delayed ACK (Nagle) before its reply's body went out.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:
        for sock in sockets:
            sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} on {host} is in use: stop what is listening there, or "
                           "pick another with --port") from e
        raise ListenError(f"cannot listen on {host} port {port}: {e.strerror or e}") from e
    return sockets


def url_host(host: str) -> str:
    """The host part of the page's address on this machine."""
    if host == "0.0.0.0" or (host == "::" and socket.has_dualstack_ipv6()):
        return "127.0.0.1"
    return "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
