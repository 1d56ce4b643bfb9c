"""A fake identity provider for the bearer-token tests: keys, tokens, and a loopback server.

``IdP`` mints real signed tokens with keys generated here (joserfc) and serves, on 127.0.0.1
over plain HTTP (which ``IssuerSettings`` allows for loopback), whatever routes a test
installs: a JWK Set, metadata documents, an introspection endpoint. Each route is a function
of the request, so a test can rotate keys, fail, stall or redirect between two calls, and
every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from joserfc.jwk import ECKey, Key, KeyParameters, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

NOW = 1_900_000_000.0  # a fixed unix time for token clocks


class Clock:
    """A clock a test moves by hand: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@functools.cache
def rsa_key(kid: str = "rsa-1", alg: str | None = "RS256") -> RSAKey:
    params: dict[str, Any] = {"kid": kid, "use": "sig"}
    if alg:
        params["alg"] = alg
    return RSAKey.generate_key(2048, parameters=params)  # type: ignore[arg-type]


def ec_key(kid: str = "ec-1", crv: str = "P-256", alg: str | None = "ES256") -> ECKey:
    params: dict[str, Any] = {"kid": kid, "use": "sig"}
    if alg:
        params["alg"] = alg
    return ECKey.generate_key(crv, parameters=params)  # type: ignore[arg-type]


def ed_key(kid: str = "ed-1") -> OKPKey:
    params: KeyParameters = {"kid": kid, "use": "sig"}
    return OKPKey.generate_key("Ed25519", parameters=params)


def jwks(*keys: Key) -> dict[str, Any]:
    """The public JWK Set of ``keys``."""
    return {"keys": [key.as_dict(private=False) for key in keys]}


def claims(issuer: str, now: float = NOW, *, lifetime: float = 600, **extra: Any) -> dict[str, Any]:
    """RFC 9068 access-token claims; ``extra`` adds or replaces (None removes)."""
    base: dict[str, Any] = {
        "iss": issuer,
        "sub": "user-42",
        "aud": "orders-api",
        "iat": int(now),
        "exp": int(now + lifetime),
        "jti": "jti-1",
        "client_id": "web-app",
        "scope": "orders:read orders:write",
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Key, payload: dict[str, Any], **header: Any) -> str:
    """A compact JWS of ``payload`` signed with ``key``; ``header`` adds or replaces members."""
    alg = header.pop("alg", None) or _default_alg(key)
    base: dict[str, Any] = {"alg": alg, "typ": "at+jwt"}
    if key.kid is not None:
        base["kid"] = key.kid
    base.update(header)
    base = {k: v for k, v in base.items() if v is not None}
    return sign_raw(key, base, payload)


def _default_alg(key: Key) -> str:
    own = key.get("alg")
    if isinstance(own, str):
        return own
    if isinstance(key, RSAKey):
        return "RS256"
    if isinstance(key, OKPKey):
        return "EdDSA"
    assert isinstance(key, ECKey)
    return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[key.curve_name]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(key: Key | bytes | None, header: dict[str, Any] | str, payload: dict[str, Any]) -> str:
    """A hand-built compact JWS, for headers joserfc would refuse to sign.

    ``key`` is a joserfc key, raw bytes for an HMAC secret (HS256), or None for ``alg: none``.
    ``header`` may be a JSON text, to send exactly those bytes (duplicate members).
    """
    header_text = header if isinstance(header, str) else json.dumps(header)
    signing_input = f"{b64(header_text.encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    if isinstance(key, bytes):
        mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"
    alg = json.loads(header_text)["alg"]
    signature = JWSRegistry.algorithms[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Awaitable[Reply] | Reply]


def json_reply(document: Any, status: int = 200) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(document).encode()


@dataclass
class IdP:
    """A loopback HTTP server with routes set by the test; one request per connection."""

    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def paths(self) -> list[str]:
        return [request.path for request in self.seen]

    def serve_json(self, path: str, document: Any) -> None:
        self.routes[path] = lambda _: json_reply(document)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Seen(method, target, headers, body)
        self.seen.append(request)
        route = self.routes.get(target)
        if route is None:
            reply: Reply = (404, {}, b"not found")
        else:
            result = route(request)
            reply = await result if inspect.isawaitable(result) else result
        status, reply_headers, payload = reply
        out = [f"HTTP/1.1 {status} X", "Connection: close"]
        out += [f"{k}: {v}" for k, v in reply_headers.items()]
        if "content-length" not in {k.lower() for k in reply_headers}:
            out.append(f"Content-Length: {len(payload)}")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()


@contextlib.asynccontextmanager
async def running_idp() -> AsyncIterator[IdP]:
    idp = IdP()
    await idp.start()
    try:
        yield idp
    finally:
        await idp.close()
