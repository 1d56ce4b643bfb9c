from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apishield.errors import BadRequestError, UpstreamError
from apishield.proxy.headers import (
    CLIENT_IDENTITY,
    HOP_BY_HOP,
    build_request_head,
    clean_request_headers,
    clean_response_headers,
    connection_options,
)

Headers = list[tuple[bytes, bytes]]


def head_fields(head: bytes) -> tuple[bytes, Headers]:
    lines = head.split(b"\r\n")
    assert lines[-1] == b""
    fields = [tuple(line.split(b": ", 1)) for line in lines[1:-1]]
    return lines[0], [(k, v) for k, v in fields]


def build(headers: Headers, **overrides: object) -> tuple[bytes, Headers, bytes | None]:
    settings: dict[str, object] = {
        "host": b"orders.internal:8080",
        "client_ip": "203.0.113.7",
        "scheme": "https",
        "client_host": "api.example.com",
        "request_id": "req-1",
    }
    settings.update(overrides)
    head, length, _ = build_request_head("POST", b"/v1/orders?x=1", headers, **settings)  # type: ignore[arg-type]
    line, fields = head_fields(head)
    return line, fields, length


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(b"connection", id="connection"),
        pytest.param(b"keep-alive", id="keep-alive"),
        pytest.param(b"proxy-connection", id="proxy-connection"),
        pytest.param(b"te", id="te"),
        pytest.param(b"trailer", id="trailer"),
        pytest.param(b"transfer-encoding", id="transfer-encoding"),
        pytest.param(b"upgrade", id="upgrade"),
        pytest.param(b"proxy-authorization", id="proxy-authorization"),
        pytest.param(b"proxy-authenticate", id="proxy-authenticate"),
        pytest.param(b"forwarded", id="forwarded"),
        pytest.param(b"x-forwarded-for", id="x-forwarded-for"),
        pytest.param(b"x-forwarded-proto", id="x-forwarded-proto"),
        pytest.param(b"x-forwarded-host", id="x-forwarded-host"),
        pytest.param(b"x-forwarded-prefix", id="x-forwarded-prefix"),
        pytest.param(b"x-real-ip", id="x-real-ip"),
        pytest.param(b"x-original-url", id="x-original-url"),
        pytest.param(b"host", id="host"),
        pytest.param(b"content-length", id="content-length"),
        pytest.param(b"expect", id="expect"),
        pytest.param(b"x-request-id", id="x-request-id"),
    ],
)
def test_request_fields_that_never_reach_the_upstream_as_sent(name: bytes) -> None:
    kept, _, _ = clean_request_headers([(b"accept", b"*/*"), (name, b"spoofed"), (b"x-a", b"1")])
    assert kept == [(b"accept", b"*/*"), (b"x-a", b"1")]


def test_fields_named_by_connection_are_dropped() -> None:
    headers = [
        (b"connection", b"keep-alive, X-Foo"),
        (b"connection", b" x-bar ,"),
        (b"x-foo", b"1"),
        (b"x-bar", b"2"),
        (b"authorization", b"Bearer t"),
    ]
    assert connection_options(headers) == {b"keep-alive", b"x-foo", b"x-bar"}
    kept, _, _ = clean_request_headers(headers)
    assert kept == [(b"authorization", b"Bearer t")]


@pytest.mark.parametrize(
    ("headers", "framing"),
    [
        pytest.param([(b"content-length", b"12")], (b"12", False), id="content-length"),
        pytest.param([(b"transfer-encoding", b"chunked")], (None, True), id="chunked"),
        pytest.param([], (None, False), id="no-content"),
    ],
)
def test_client_framing_is_reported_not_kept(
    headers: Headers, framing: tuple[bytes | None, bool]
) -> None:
    kept, length, chunked = clean_request_headers([*headers, (b"accept", b"*/*")])
    assert kept == [(b"accept", b"*/*")]
    assert (length, chunked) == framing


def test_request_head_has_our_fields_and_no_spoofed_ones() -> None:
    line, fields, length = build(
        [
            (b"host", b"evil.example"),
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-request-id", b"spoofed"),
            (b"accept", b"application/json"),
            (b"content-length", b"3"),
        ]
    )
    assert line == b"POST /v1/orders?x=1 HTTP/1.1"
    assert fields == [
        (b"host", b"orders.internal:8080"),
        (b"accept", b"application/json"),
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"api.example.com"),
        (b"x-request-id", b"req-1"),
        (b"via", b"1.1 apishield"),
    ]
    assert length == b"3"


def test_empty_context_values_are_left_out() -> None:
    _, fields, _ = build([], client_ip="", client_host="")
    assert [name for name, _ in fields] == [
        b"host",
        b"x-forwarded-proto",
        b"x-request-id",
        b"via",
    ]


def test_request_id_field_name_is_configurable() -> None:
    _, fields, _ = build([(b"x-correlation-id", b"spoofed")], request_id_header=b"x-correlation-id")
    assert (b"x-correlation-id", b"req-1") in fields
    assert (b"x-correlation-id", b"spoofed") not in fields


@pytest.mark.parametrize(
    ("headers", "overrides"),
    [
        pytest.param([(b"x-a", b"1\r\nx-admin: true")], {}, id="crlf-in-client-value"),
        pytest.param([(b"x-a", b"1\nx-admin: true")], {}, id="lf-in-client-value"),
        pytest.param([(b"x-a", b"1\rx")], {}, id="cr-in-client-value"),
        pytest.param([(b"x-a\r\nx-b", b"1")], {}, id="crlf-in-client-name"),
        pytest.param([(b"x-a", b"1\x00")], {}, id="nul-in-client-value"),
        pytest.param([], {"request_id": "id\r\nx-admin: true"}, id="crlf-in-request-id"),
        pytest.param([], {"client_host": "a.example\nx: y"}, id="lf-in-host"),
        pytest.param([], {"client_ip": "\u2603"}, id="non-latin-1"),
    ],
)
def test_values_that_would_split_the_head_are_refused(
    headers: Headers, overrides: dict[str, object]
) -> None:
    with pytest.raises(BadRequestError):
        build(headers, **overrides)


def test_response_hop_by_hop_and_named_fields_are_dropped() -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"connection", b"keep-alive, x-internal"),
        (b"keep-alive", b"timeout=5"),
        (b"x-internal", b"secret"),
        (b"proxy-authenticate", b"Basic"),
        (b"trailer", b"x-checksum"),
        (b"upgrade", b"h2c"),
        (b"transfer-encoding", b"chunked"),
        (b"content-encoding", b"gzip"),
        (b"x-ok", b"1"),
    ]
    kept, content_type, encoding = clean_response_headers(headers, 200)
    assert kept == [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"gzip"),
        (b"x-ok", b"1"),
    ]
    assert (content_type, encoding) == (b"application/json", b"gzip")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"gzip", id="gzip"),
        pytest.param(b"gzip, chunked", id="coding-then-chunked"),
        pytest.param(b"chunked, chunked", id="chunked-twice"),
        pytest.param(b"identity", id="identity"),
    ],
)
def test_response_transfer_codings_other_than_chunked_are_refused(value: bytes) -> None:
    with pytest.raises(UpstreamError) as caught:
        clean_response_headers([(b"transfer-encoding", value)], 200)
    assert caught.value.status == 502
    assert caught.value.code == "upstream_unavailable"


@pytest.mark.parametrize(
    ("status", "kept"),
    [
        pytest.param(200, True, id="200"),
        pytest.param(204, False, id="204"),
        pytest.param(304, False, id="304"),
        pytest.param(404, True, id="404"),
    ],
)
def test_content_length_is_dropped_where_there_is_no_content(status: int, kept: bool) -> None:
    headers, _, _ = clean_response_headers([(b"content-length", b"10")], status)
    assert ((b"content-length", b"10") in headers) is kept


_NAMES = st.sampled_from(
    sorted(HOP_BY_HOP | CLIENT_IDENTITY | {b"host", b"accept", b"x-a", b"x-b", b"cookie"})
)
_VALUES = st.binary(min_size=0, max_size=20).filter(
    lambda v: b"\r" not in v and b"\n" not in v and b"\0" not in v
)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12))
def test_built_head_never_carries_hop_by_hop_or_spoofable_fields(headers: Headers) -> None:
    _, fields, _ = build(headers)
    names = [name for name, _ in fields]
    ours = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
    assert not (set(names) & HOP_BY_HOP)
    assert not (set(names) & (CLIENT_IDENTITY - ours))
    for name in ours | {b"x-request-id", b"via"}:
        assert names.count(name) == 1
    options = connection_options(headers)
    expected = [
        (n, v)
        for n, v in headers
        if n in (b"accept", b"x-a", b"x-b", b"cookie") and n not in options
    ]
    assert [f for f in fields if f[0] in (b"accept", b"x-a", b"x-b", b"cookie")] == expected
