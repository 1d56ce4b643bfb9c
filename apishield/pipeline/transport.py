"""Stage 3 — transport: who the client is, HTTPS only, HSTS.

The client address and scheme come from ``X-Forwarded-For``/``-Proto``/``-Host`` only when the
TCP peer is one of the configured trusted proxies; from anyone else those headers are ignored
(they are trivially forged). ``X-Forwarded-For`` is read right to left, skipping our own
proxies, so a client cannot choose its address by prepending entries.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

from apishield.errors import BadRequestError, ForbiddenError
from apishield.pipeline.context import get_context
from apishield.policy.models import HSTS
from apishield.server.redirect import https_location, parse_host
from apishield.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:\d{1,5})?$")


# Peers and forwarded addresses repeat from request to request; parsing one costs ~3 µs.
@functools.lru_cache(maxsize=4096)
def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()
    return host.rsplit(":", 1)[0].lower().rstrip(".")


def resolve_client(
    peer: str,
    forwarded_for: str | None,
    trusted: Sequence[Network],
) -> str:
    """The client address: the right-most ``X-Forwarded-For`` entry that is not our proxy."""
    peer_ip = _ip(peer)
    if peer_ip is None or not trusted or not any(peer_ip in net for net in trusted):
        return peer
    if not forwarded_for:
        return peer
    client = peer
    for part in reversed(forwarded_for.split(",")):
        ip = _ip(part)
        if ip is None:
            break  # garbage from beyond our proxies: stop at the last address we can vouch for
        client = str(ip)
        if not any(ip in net for net in trusted):
            break
    return client


class TransportMiddleware:
    """Resolves client address and scheme; redirects or refuses plain HTTP; adds HSTS."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Sequence[Network],
        hsts: HSTS,
        request_id_header: str = "X-Request-ID",
        require_https: bool = True,
        hosts: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.hosts = frozenset(h.lower().rstrip(".") for h in hosts) if hosts else None
        self.trusted = tuple(trusted_proxies)
        self.hsts = (
            (b"strict-transport-security", hsts.header_value().encode()) if hsts.enabled else None
        )
        self.request_id_header = request_id_header.lower().encode()
        self.require_https = require_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        client = scope.get("client")
        peer = client[0] if client else ""
        scheme = str(scope.get("scheme", "http"))
        host = ""
        hosts_seen = 0
        forwarded_for = forwarded_proto = forwarded_host = request_id = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                hosts_seen += 1
            elif name == b"x-forwarded-for":
                # several header lines are one comma-separated list (RFC 9110 §5.3)
                text = value.decode("latin-1")
                forwarded_for = f"{forwarded_for},{text}" if forwarded_for else text
            elif name == b"x-forwarded-proto":
                forwarded_proto = value.decode("latin-1")
            elif name == b"x-forwarded-host":
                forwarded_host = value.decode("latin-1")
            elif name == self.request_id_header:
                request_id = value.decode("latin-1")
        # Without trusted proxies no peer is one: skip parsing its address (~1 µs a request).
        from_proxy = False
        if self.trusted:
            peer_ip = _ip(peer)
            from_proxy = peer_ip is not None and any(peer_ip in net for net in self.trusted)
        if from_proxy:
            ctx.client_ip = resolve_client(peer, forwarded_for, self.trusted)
            if forwarded_proto:
                proto = forwarded_proto.split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    scheme = proto
            if forwarded_host and _HOST.match(forwarded_host.split(",")[-1].strip()):
                host = forwarded_host.split(",")[-1].strip()
            if request_id and _REQUEST_ID.match(request_id):
                ctx.request_id = request_id
        else:
            ctx.client_ip = peer
        ctx.scheme = scheme
        ctx.host = host if _HOST.match(host) else ""
        # RFC 9112 §3.2: exactly one valid Host in HTTP/1.1; two would let us and the upstream
        # each pick a different one.
        if hosts_seen > 1 or (
            scope.get("http_version") == "1.1" and (hosts_seen == 0 or not ctx.host)
        ):
            raise BadRequestError(code="invalid_host", hint="send exactly one valid Host header")
        if self.hosts is not None and _hostname(ctx.host) not in self.hosts:
            raise BadRequestError(
                code="invalid_host", hint="this gateway does not serve that host name"
            )

        if scheme != "https" and self.require_https:
            client_ip = _ip(ctx.client_ip)
            # Loopback callers (health checks, a local sidecar) may speak plain HTTP.
            if client_ip is None or not client_ip.is_loopback:
                await self._refuse_plain_http(scope, send)
                return

        if scheme == "https" and self.hsts is not None:
            ctx.response_headers.append(self.hsts)
        await self.app(scope, receive, send)

    async def _refuse_plain_http(self, scope: Scope, send: Send) -> None:
        ctx = get_context(scope)
        host = parse_host(ctx.host) if ctx.host else None
        if scope["method"] in ("GET", "HEAD") and host is not None:
            # Behind a proxy the public HTTPS port is unknown here: 443 is the only safe guess.
            location = https_location(
                host, 443, scope.get("raw_path") or scope["path"].encode(), scope["query_string"]
            )
            ctx.code = "https_redirect"
            await send(
                {
                    "type": "http.response.start",
                    "status": 301,
                    "headers": [
                        (b"location", location),
                        (b"content-length", b"0"),
                        # the target depends on the client's Host: never cache it
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        # A redirected POST would already have sent its body in cleartext: refuse instead.
        raise ForbiddenError(code="https_required", hint="this API accepts HTTPS only")
