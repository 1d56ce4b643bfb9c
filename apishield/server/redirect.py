"""The plain-HTTP listener (``listen.redirect_http``): it only sends clients to HTTPS.

- ``GET``/``HEAD``: ``301 Moved Permanently`` (RFC 9110 §15.4.2) to the same path and query on
  ``https://`` with the host the client asked for and the HTTPS listener's port.
- Any other method: ``403`` problem+json with code ``https_required``. A 301/302 would make
  most clients repeat the request as a GET, and a 307/308 would make them send the body again:
  either way the client keeps "working" while every call leaks its credentials and data in
  cleartext. Refusing makes the misconfigured client fail loudly, once. 403 rather than 400:
  the request is well-formed, the server refuses to act on it over this transport.
- No ``Strict-Transport-Security`` here: RFC 6797 §7.2 forbids it over plain HTTP (an attacker
  on the path could forge or strip it anyway); the HTTPS responses carry it.

Trust assumption: nothing in the request is trusted. The ``Host`` header is echoed into
``Location`` only when it is a syntactically valid DNS name, IPv4 address or bracketed IPv6
address (RFC 9112 §3.2 asks for 400 on an invalid or repeated ``Host``); the path and query are
percent-encoded down to RFC 3986 characters, so no header injection or script can ride along.
A client that sends ``Host: evil.example`` is redirected to ``evil.example``, which only ever
misleads that same client; shared caches key the answer on the host.
"""

from __future__ import annotations

import ipaddress
import json
import re

from apishield.errors import PROBLEM_TYPE_BASE, TITLES
from apishield.types import Headers, Receive, Scope, Send

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")
# RFC 3986 §3.3 pchar plus '/', and '%' to keep existing escapes; §3.4 adds '?' for queries.
_PATH_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%"
)
_QUERY_SAFE = _PATH_SAFE | frozenset(b"?")
_SAFE_METHODS = ("GET", "HEAD")
# Same baseline as every apishield refusal: not cached, not sniffed, not framed.
_PROBLEM_HEADERS: Headers = [
    (b"content-type", b"application/problem+json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"connection", b"close"),
]


def parse_host(value: str) -> str | None:
    """The host part of a ``Host`` header (lower-case, IPv6 in brackets), or None if invalid.

    Accepts ``name``, ``name:port``, ``1.2.3.4[:port]`` and ``[v6][:port]`` (RFC 9110 §7.2,
    RFC 3986 §3.2.2), restricted to what DNS host names allow (RFC 1123 §2.1): no user info,
    no percent-encoding, no IPv6 zone, nothing longer than 253 characters.
    """
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        literal, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and _PORT.match(rest[1:])):
            return None
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        if address.scope_id is not None:  # a zone is local to the client, meaningless here
            return None
        return f"[{address.compressed}]"
    host, sep, port = value.partition(":")
    if sep and not _PORT.match(port):
        return None
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        return None
    if name.replace(".", "").isdigit():  # looks numeric: must be a real dotted quad
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return None
    return name.lower()


def https_location(host: str, https_port: int, raw_path: bytes, query: bytes) -> bytes:
    """The ``Location`` for a redirect; ``host`` must come from ``parse_host``."""
    authority = host if https_port == 443 else f"{host}:{https_port}"
    path = _escape(raw_path, _PATH_SAFE) if raw_path.startswith(b"/") else b"/"
    location = b"https://" + authority.encode("ascii") + path
    if query:
        location += b"?" + _escape(query, _QUERY_SAFE)
    return location


def _escape(data: bytes, safe: frozenset[int]) -> bytes:
    return b"".join(bytes((c,)) if c in safe else b"%%%02X" % c for c in data)


class HttpsRedirectApp:
    """ASGI app for the plain listener: redirect GET/HEAD to HTTPS, refuse everything else.

    ``https_port`` is the port clients reach the HTTPS listener on (omitted from ``Location``
    when it is 443). See the module docstring for the trust assumption and the RFCs.
    """

    def __init__(self, *, https_port: int) -> None:
        if not 0 < https_port < 65536:
            raise ValueError(f"https_port must be a TCP port, not {https_port}")
        self.https_port = https_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "websocket":
            # Closing before accepting makes the server answer the upgrade with 403.
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Scope, send: Send) -> None:
        hosts = [v for k, v in scope["headers"] if k == b"host"]
        host = parse_host(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        if host is None:
            await _problem(send, 400, "invalid_host", "The Host header is missing or invalid.")
            return
        method = scope["method"]
        if method not in _SAFE_METHODS:
            await _problem(
                send, 403, "https_required", "This API accepts requests over HTTPS only."
            )
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        location = https_location(host, self.https_port, raw_path, scope.get("query_string", b""))
        await send(
            {
                "type": "http.response.start",
                "status": 301,
                "headers": [
                    (b"location", location),
                    (b"content-length", b"0"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


async def _problem(send: Send, status: int, code: str, detail: str) -> None:
    """An RFC 9457 problem document; never echoes anything from the request."""
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + code,
            "title": TITLES[status],
            "status": status,
            "code": code,
            "detail": detail,
        },
        separators=(",", ":"),
    ).encode()
    headers = [*_PROBLEM_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
