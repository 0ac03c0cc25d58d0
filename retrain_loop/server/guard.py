"""What a request must show before the app reads it: the right host, the token, a bounded body,
and, for a write, JSON from the server's own origin.

One ASGI middleware, ahead of everything else:

- **Host.** On a loopback address only loopback names are served, so a page on another site
  cannot reach the server through a DNS name that resolves to 127.0.0.1 (DNS rebinding).
- **Token.** When the server has one (always, when it listens beyond this machine), every request
  carries it: ``Authorization: Bearer``, the ``X-Retrain-Loop-Token`` header, the cookie the
  server sets, or ``?token=`` on the first visit, which sets that cookie. Otherwise 401.
- **Writes.** Any method but GET/HEAD/OPTIONS needs ``Content-Type: application/json`` (415) and,
  when the browser names its ``Origin``, the server's own (403). A cross-origin page can then
  neither lease rows nor post answers: browsers send neither without a preflight we refuse.
- **Size.** A body over ``max_body`` bytes gets 413 before the app sees any of it.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
COOKIE = "retrain_loop_token"
HEADER = "x-retrain-loop-token"
MAX_BODY = 8 * 1024 * 1024  # 1,000 answers of a few kB each fit; 20 MB of meta does not
_SAFE = ("GET", "HEAD", "OPTIONS")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or a loopback address (127.0.0.0/8,
    ::1). A DNS name that merely starts with ``127.`` is not one: it could rebind anywhere."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


class Guard:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", token: str | None = None,
                 max_body: int = MAX_BODY):
        self.app = app
        self.loopback = is_loopback(host)
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host_header = headers.get("host", "")
        name = _host_name(host_header)
        if self.loopback and not is_loopback(name):
            await _refuse(send, 400, f"this server answers to 127.0.0.1 or localhost, not {name!r}")
            return
        set_cookie = None
        if self.token is not None:
            given = _token(headers, scope.get("query_string", b""))
            # Bytes: compare_digest refuses str with characters beyond ASCII, which a header may hold.
            if given is None or not secrets.compare_digest(
                    given[0].encode("utf-8", "surrogateescape"), self.token.encode("utf-8")):
                await _refuse(send, 401, "a token is needed: open the URL the server printed")
                return
            set_cookie = self.token if given[1] is not None else None
        method = scope["method"]
        if method not in _SAFE:
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                await _refuse(send, 415, "send JSON, with Content-Type: application/json")
                return
            origin = headers.get("origin")
            if origin is not None and origin != f"{scope.get('scheme', 'http')}://{host_header}":
                await _refuse(send, 403, f"requests from {origin} are not accepted")
                return
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await _refuse(send, 413, f"the body is over {self.max_body} bytes")
                return
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    await _refuse(send, 413, f"the body is over {self.max_body} bytes")
                    return
            replayed = False

            async def receive_body() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            receive = receive_body
        if set_cookie is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cookie = (f"{COOKIE}={set_cookie}; Path=/; HttpOnly; SameSite=Strict")
                message = dict(message, headers=[*message.get("headers", []),
                                                 (b"set-cookie", cookie.encode("latin-1"))])
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8080
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _token(headers: dict[str, str], query: bytes) -> tuple[str, str | None] | None:
    """The token a request carries, and the cookie value to set (only for ``?token=``)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), None
    if HEADER in headers:
        return headers[HEADER], None
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is as good as none
        cookie = SimpleCookie()
    if COOKIE in cookie:
        return cookie[COOKIE].value, None
    values = parse_qs(query.decode("latin-1")).get("token")
    if values:
        return values[0], values[0]
    return None


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
