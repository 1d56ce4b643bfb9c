"""Header hygiene between the client and the upstream: pure functions, no I/O.

Both directions lose the hop-by-hop fields of RFC 9110 §7.6.1: ``Connection`` and every field
it names, ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
``Upgrade``, ``Proxy-Authorization`` and ``Proxy-Authenticate``. They describe one connection,
and forwarding them lets a client steer our connection to the upstream (request smuggling
through ``Transfer-Encoding``, protocol switches through ``Upgrade``, stripping a security
header by naming it in ``Connection``).

Towards the upstream, the fields that tell it who the client is are ours alone: a client's
``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ``Remote-User`` and kin are dropped, because
upstreams trust them for logging, rate limits, URL building and sometimes authentication. So
are the method overrides (``X-HTTP-Method-Override`` and kin), which Express, Laravel and
Symfony honour: an allowed ``POST`` would reach the upstream as the ``DELETE`` that the
per-method authorization refused. Every field whose name holds an underscore is dropped too,
as nginx does by default (``underscores_in_headers off``): CGI-style servers, Django under
ASGI among them, fold ``X_Forwarded_For`` and ``X-Forwarded-For`` into the same
``HTTP_X_FORWARDED_FOR`` key, so a drop list of hyphenated names alone could be sidestepped.
The ``X-Authenticated-*`` prefix is reserved for the identity the authentication stage has
verified: a client's fields with that prefix are dropped here as well (defence in depth), and
the stage's own go in after cleaning (:func:`build_request_head`'s ``identity``). We send
``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from the request
context, which the transport stage filled after checking the trusted proxies, and the request
id.

A ``Connection`` option that names an end-to-end field the gateway relies on (``Host``, any
``Content-*``, ``Transfer-Encoding``, the credentials) is refused with 400
``connection_header_invalid`` rather than honoured: honouring it would let a client have the
gateway check one request and the upstream receive another (RFC 9110 §7.6.1 forbids a sender
to name such a field, and also requires a proxy to remove the fields that are named, so
refusing is the one answer that keeps both rules).

Upstream redirects to the upstream's own origin are rewritten into relative references
(:func:`relative_location`), so that the internal address never reaches the client.

Trust assumption: names arrive lower-cased (ASGI §"HTTP" requires it of servers, and the
upstream parser's names are lower-cased by the caller); values were checked by an HTTP parser.
Values we add ourselves are checked here, since one of them may come from a client's header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from apishield.errors import BadRequestError, UpstreamError

Header = tuple[bytes, bytes]

#: RFC 9110 §7.6.1, plus the non-standard ``Proxy-Connection`` that old clients send.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

#: Fields by which a client could claim another address, scheme, host, path or user.
CLIENT_IDENTITY: Final = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-forwarded-server",
        b"x-forwarded-ssl",
        b"x-forwarded-scheme",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"true-client-ip",
        b"x-original-url",
        b"x-original-uri",
        b"x-forwarded-uri",
        b"x-rewrite-url",
        b"x-original-host",
        b"remote-user",
        b"x-remote-user",
    }
)

#: Fields by which a client asks the upstream framework to run another method than the one
#: the gateway authorized (Express method-override, Laravel, Symfony, ASP.NET).
METHOD_OVERRIDES: Final = frozenset(
    {b"x-http-method-override", b"x-method-override", b"x-http-method"}
)

#: Reserved for the identity the authentication stage verified; never taken from a client.
IDENTITY_PREFIX: Final = b"x-authenticated-"

#: End-to-end fields the gateway's stages read, which a ``Connection`` option may not name:
#: routing and framing, the credentials, the CORS origin. Any ``content-*`` field too.
CONNECTION_PROTECTED: Final = frozenset(
    {
        b"host",
        b"transfer-encoding",
        b"authorization",
        b"cookie",
        b"x-api-key",
        b"dpop",
        b"origin",
    }
)

# Host is replaced by the upstream's; Content-Length is re-derived from the body we forward;
# Expect was already answered by our own server, so the upstream must not wait to answer it.
_REQUEST_DROP: Final = (
    HOP_BY_HOP | CLIENT_IDENTITY | METHOD_OVERRIDES | {b"host", b"content-length", b"expect"}
)
_UNFORWARDABLE: Final = "The request could not be forwarded."
_CONNECTION_INVALID: Final = "The Connection header names a field that must reach the API."

# Names already found forwardable by the checks below. Measured: the underscore and prefix
# tests cost about 1.3 µs on a request of eight fields, the set lookup 0.03 µs. Bounded, so
# that a client inventing names cannot grow it; past the bound names are only checked again.
_FORWARDABLE: set[bytes] = set()
_FORWARDABLE_MAX: Final = 1024


def connection_options(headers: Iterable[Header]) -> frozenset[bytes]:
    """The lower-cased field names listed in every ``Connection`` field (RFC 9110 §7.6.1)."""
    return _options([value for name, value in headers if name == b"connection"])


def _options(values: list[bytes]) -> frozenset[bytes]:
    names: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            names.add(token.strip().lower())
    names.discard(b"")
    return frozenset(names)


# Options that name no field we would keep anyway; the common case needs no second pass.
_PLAIN_OPTIONS: Final = frozenset({b"keep-alive", b"close"})
# The usual whole values of Connection, recognised without parsing.
_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def clean_request_headers(
    headers: Iterable[Header],
    *,
    request_id_header: bytes = b"x-request-id",
    protected: frozenset[bytes] = CONNECTION_PROTECTED,
) -> tuple[list[Header], bytes | None, bool]:
    """The client's fields that may go to the upstream, its ``Content-Length`` if any, and
    whether it sent ``Transfer-Encoding``: without either, an HTTP/1.1 request has no content
    (RFC 9112 §6.3).

    Drops hop-by-hop fields and those ``Connection`` names, client identity fields, method
    overrides, names with an underscore or the ``X-Authenticated-`` prefix, ``Host``,
    ``Content-Length``, ``Expect`` and the client's copy of the request id field; the caller
    adds ours with :func:`build_request_head`.

    Raises ``BadRequestError`` 400 ``connection_header_invalid`` when a ``Connection`` option
    names a field in ``protected`` or any ``content-*`` field (RFC 9110 §7.6.1).
    """
    kept: list[Header] = []
    content_length: bytes | None = None
    chunked = False
    connection: list[bytes] = []
    forwardable = _FORWARDABLE
    for field in headers:
        name = field[0]
        if name in forwardable:
            if name != request_id_header:
                kept.append(field)
            continue
        if name in _REQUEST_DROP or name == request_id_header:
            if name == b"content-length":
                content_length = field[1]
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection" and field[1] not in _PLAIN_CONNECTION:
                connection.append(field[1])
            continue
        if b"_" in name or name.startswith(IDENTITY_PREFIX):
            continue
        if len(forwardable) < _FORWARDABLE_MAX:
            forwardable.add(name)
        kept.append(field)
    if connection:
        options = _options(connection)
        if not options <= _PLAIN_OPTIONS:
            if not options.isdisjoint(protected) or any(
                option.startswith(b"content-") for option in options
            ):
                raise BadRequestError(_CONNECTION_INVALID, code="connection_header_invalid")
            kept = [(n, v) for n, v in kept if n not in options]
    return kept, content_length, chunked


def build_request_head(
    method: str,
    target: bytes,
    headers: Iterable[Header],
    *,
    host: bytes,
    client_ip: str,
    scheme: str,
    client_host: str,
    request_id: str,
    request_id_header: bytes = b"x-request-id",
    identity: Iterable[tuple[bytes | str, bytes | str]] = (),
    protected: frozenset[bytes] = CONNECTION_PROTECTED,
) -> tuple[bytes, bytes | None, bool]:
    """The request line and fields for the upstream (RFC 9112 §3), with the client's framing
    as :func:`clean_request_headers` reports it.

    The head ends after the last field line, without the empty line, so that the caller can
    append the framing field (``Content-Length`` or ``Transfer-Encoding``). Fields are the
    client's after :func:`clean_request_headers`, then ``identity`` (the verified identity the
    authentication stage set, each name with the ``X-Authenticated-`` prefix), then ours:
    ``Host`` (the upstream's, RFC 9110 §7.2), ``X-Forwarded-For``/``-Proto``/``-Host`` from
    the request context (left out when empty), the request id, and ``Via`` (RFC 9110 §7.6.3).

    Raises ``BadRequestError`` when a line break or NUL would end up inside a field (a value
    set by a middleware, or a context value taken from a client's header), since it would
    split the head (RFC 9110 §5.5), or when one of our values is not Latin-1. Raises
    ``ValueError`` for an ``identity`` name outside the reserved prefix: a stage's mistake,
    not the client's, so the errors stage answers 500 and logs it.
    """
    kept, content_length, chunked = clean_request_headers(
        headers, request_id_header=request_id_header, protected=protected
    )
    # Measured: joining "name: value" pairs beats formatting or extending a flat part list.
    lines = [b" ".join((method.encode("ascii"), target, b"HTTP/1.1")), b"host: " + host]
    join = b": ".join
    lines += [join(field) for field in kept]
    try:
        known = _IDENTITY_LINES
        for field in identity:
            line = known.get(field)
            if line is None:
                line = _identity_line(field)
                if len(known) < _IDENTITY_LINES_MAX:
                    known[field] = line
            lines.append(line)
        if client_ip:
            lines.append(b"x-forwarded-for: " + client_ip.encode("latin-1"))
        if scheme:
            lines.append(b"x-forwarded-proto: " + scheme.encode("latin-1"))
        if client_host:
            lines.append(b"x-forwarded-host: " + client_host.encode("latin-1"))
        if request_id:
            lines.append(join((request_id_header, request_id.encode("latin-1"))))
    except UnicodeEncodeError as exc:
        raise BadRequestError(_UNFORWARDABLE) from exc
    lines.append(b"via: 1.1 apishield\r\n")
    head = b"\r\n".join(lines)
    count = len(lines)  # one CRLF ends each line
    if head.count(b"\n") != count or head.count(b"\r") != count or b"\0" in head:
        raise BadRequestError(_UNFORWARDABLE)
    return head, content_length, chunked


# Identity fields repeat from request to request (one principal, many requests): each
# distinct pair is checked and joined once. Measured on the full policy: the checks cost about
# as much as the rest of the head. Bounded like _FORWARDABLE; values are never secrets (they
# are sent upstream on every request), and CR, LF and NUL are still refused with the head.
_IDENTITY_LINES: dict[tuple[bytes | str, bytes | str], bytes] = {}
_IDENTITY_LINES_MAX: Final = 4096


def _identity_line(field: tuple[bytes | str, bytes | str]) -> bytes:
    name, value = field
    raw_name = (name.encode("latin-1") if isinstance(name, str) else name).lower()
    suffix = raw_name[len(IDENTITY_PREFIX) :]
    if not raw_name.startswith(IDENTITY_PREFIX) or not suffix.replace(b"-", b"").isalnum():
        raise ValueError(f"identity header {raw_name!r} is outside {IDENTITY_PREFIX!r}")
    raw_value = value.encode("latin-1") if isinstance(value, str) else value
    return b": ".join((raw_name, raw_value))


class Origin(NamedTuple):
    """The upstream's origin (RFC 6454) and base path, as the policy's ``upstream.url`` says:
    scheme and host lower-case, the port explicit, the base path percent-encoded without a
    trailing slash ("" at the root)."""

    scheme: str
    host: str
    port: int
    base: str


def relative_location(value: bytes, origin: Origin) -> bytes | None:
    """``value`` (a ``Location`` or ``Content-Location``, RFC 9110 §10.2.2) as a relative
    reference when it points at the upstream's own origin, else ``None`` (leave it alone).

    The upstream builds absolute URLs from the ``Host`` we send it, its internal address;
    the client must stay on the gateway instead. The path loses the upstream's base path when
    it starts with it, since the gateway adds it back. A path that would start with ``//`` or
    ``/\\`` gets a ``/.`` in front, as the WHATWG URL standard serialises such paths, so the
    rewrite can never turn into a reference to another host (an open redirect).

    Trust assumption: the upstream is trusted to run the API, not to keep its address to
    itself; ``value`` was checked by the HTTP parser (no CR, LF or NUL).
    """
    if b"//" not in value:
        return None  # neither absolute nor a network-path reference: nothing to hide
    try:
        parts = urlsplit(value.decode("ascii"))
        port = parts.port
    except ValueError:  # not ASCII (no URI, RFC 3986 §2), or a port that is no number
        return None
    if not parts.netloc or (parts.scheme and parts.scheme != origin.scheme):
        return None
    if parts.hostname != origin.host:
        return None
    if port is None:
        port = 443 if origin.scheme == "https" else 80
    if port != origin.port:
        return None
    path, base = parts.path, origin.base
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base) :]
    if not path:
        path = "/"
    elif path[1:2] in ("/", "\\"):
        path = "/." + path
    if parts.query:
        path = f"{path}?{parts.query}"
    if parts.fragment:
        path = f"{path}#{parts.fragment}"
    return path.encode("ascii")


def clean_response_headers(
    headers: Iterable[Header], status: int, *, origin: Origin | None = None
) -> tuple[list[Header], bytes, bytes]:
    """The upstream's fields that may go to the client, its ``Content-Type`` and
    ``Content-Encoding``.

    Raises ``UpstreamError`` (502) for a ``Transfer-Encoding`` other than ``chunked`` alone:
    RFC 9112 §6.3 would make the body close-delimited and undecodable by the client once we
    re-frame it. ``Content-Length`` is dropped from 1xx, 204 and 304 answers, which carry no
    content (RFC 9110 §8.6), so the server does not wait for bytes that never come. With
    ``origin``, a ``Location`` or ``Content-Location`` pointing at it is made relative
    (:func:`relative_location`).
    """
    kept: list[Header] = []
    content_type = b""
    content_encoding = b""
    connection: list[bytes] = []
    for field in headers:
        name, value = field
        if name in HOP_BY_HOP:
            if name == b"transfer-encoding" and value.strip().lower() != b"chunked":
                raise UpstreamError("The upstream service sent an invalid response.")
            if name == b"connection" and value not in _PLAIN_CONNECTION:
                connection.append(value)
            continue
        if name == b"content-type":
            content_type = value
        elif name == b"content-encoding":
            content_encoding = value
        elif name == b"content-length" and (status < 200 or status in (204, 304)):
            continue
        elif (name == b"location" or name == b"content-location") and origin is not None:
            relative = relative_location(value, origin)
            if relative is not None:
                field = (name, relative)
        kept.append(field)
    if connection:
        options = _options(connection)
        if not options <= _PLAIN_OPTIONS:
            kept = [(n, v) for n, v in kept if n not in options]
    return kept, content_type, content_encoding
