"""Header hygiene between the client and the upstream: pure functions, no I/O.

Both directions lose the hop-by-hop fields of RFC 9110 §7.6.1: ``Connection`` and every field
it names, ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
``Upgrade``, ``Proxy-Authorization`` and ``Proxy-Authenticate``. They describe one connection,
and forwarding them lets a client steer our connection to the upstream (request smuggling
through ``Transfer-Encoding``, protocol switches through ``Upgrade``, stripping a security
header by naming it in ``Connection``).

Towards the upstream, the fields that tell it who the client is are ours alone: a client's
``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP`` and kin are dropped, because upstreams trust
them for logging, rate limits and URL building. We send ``X-Forwarded-For``,
``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from the request context, which the transport
stage filled after checking the trusted proxies, and the request id.

Trust assumption: names arrive lower-cased (ASGI §"HTTP" requires it of servers, and the
upstream parser's names are lower-cased by the caller); values were checked by an HTTP parser.
Values we add ourselves are checked here, since one of them may come from a client's header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

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

#: Fields by which a client could claim another address, scheme, host or path for itself.
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
        b"x-rewrite-url",
        b"x-original-host",
    }
)

# Host is replaced by the upstream's; Content-Length is re-derived from the body we forward;
# Expect was already answered by our own server, so the upstream must not wait to answer it.
_REQUEST_DROP: Final = HOP_BY_HOP | CLIENT_IDENTITY | {b"host", b"content-length", b"expect"}
_UNFORWARDABLE: Final = "The request could not be forwarded."


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
    headers: Iterable[Header], *, request_id_header: bytes = b"x-request-id"
) -> tuple[list[Header], bytes | None, bool]:
    """The client's fields that may go to the upstream, its ``Content-Length`` if any, and
    whether it sent ``Transfer-Encoding``: without either, an HTTP/1.1 request has no content
    (RFC 9112 §6.3).

    Drops hop-by-hop fields and those ``Connection`` names, client identity fields, ``Host``,
    ``Content-Length``, ``Expect`` and the client's copy of the request id field; the caller adds
    ours with :func:`build_request_head`.
    """
    kept: list[Header] = []
    content_length: bytes | None = None
    chunked = False
    connection: list[bytes] = []
    for field in headers:
        name = field[0]
        if name in _REQUEST_DROP or name == request_id_header:
            if name == b"content-length":
                content_length = field[1]
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection" and field[1] not in _PLAIN_CONNECTION:
                connection.append(field[1])
            continue
        kept.append(field)
    if connection:
        options = _options(connection)
        if not options <= _PLAIN_OPTIONS:
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
) -> tuple[bytes, bytes | None, bool]:
    """The request line and fields for the upstream (RFC 9112 §3), with the client's framing
    as :func:`clean_request_headers` reports it.

    The head ends after the last field line, without the empty line, so that the caller can
    append the framing field (``Content-Length`` or ``Transfer-Encoding``). Fields are the
    client's after :func:`clean_request_headers`, then ours: ``Host`` (the upstream's, RFC 9110
    §7.2), ``X-Forwarded-For``/``-Proto``/``-Host`` from the request context (left out when
    empty), the request id, and ``Via`` (RFC 9110 §7.6.3).

    Raises ``BadRequestError`` when a line break or NUL would end up inside a field (a value
    set by a middleware, or a context value taken from a client's header), since it would
    split the head (RFC 9110 §5.5), or when one of our values is not Latin-1.
    """
    kept, content_length, chunked = clean_request_headers(
        headers, request_id_header=request_id_header
    )
    # Measured: joining "name: value" pairs beats formatting or extending a flat part list.
    lines = [b" ".join((method.encode("ascii"), target, b"HTTP/1.1")), b"host: " + host]
    join = b": ".join
    lines += [join(field) for field in kept]
    try:
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


def clean_response_headers(
    headers: Iterable[Header], status: int
) -> tuple[list[Header], bytes, bytes]:
    """The upstream's fields that may go to the client, its ``Content-Type`` and
    ``Content-Encoding``.

    Raises ``UpstreamError`` (502) for a ``Transfer-Encoding`` other than ``chunked`` alone:
    RFC 9112 §6.3 would make the body close-delimited and undecodable by the client once we
    re-frame it. ``Content-Length`` is dropped from 1xx, 204 and 304 answers, which carry no
    content (RFC 9110 §8.6), so the server does not wait for bytes that never come.
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
        kept.append(field)
    if connection:
        options = _options(connection)
        if not options <= _PLAIN_OPTIONS:
            kept = [(n, v) for n, v in kept if n not in options]
    return kept, content_type, content_encoding
