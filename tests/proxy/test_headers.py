from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apishield.errors import BadRequestError, UpstreamError
from apishield.proxy.headers import (
    CLIENT_IDENTITY,
    CONNECTION_PROTECTED,
    HOP_BY_HOP,
    METHOD_OVERRIDES,
    Origin,
    build_request_head,
    clean_request_headers,
    clean_response_headers,
    connection_options,
    relative_location,
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
        pytest.param(b"x_forwarded_for", id="underscore-x-forwarded-for"),
        pytest.param(b"x-real_ip", id="underscore-x-real-ip"),
        pytest.param(b"x_custom", id="any-underscore"),
        pytest.param(b"x-original-uri", id="x-original-uri"),
        pytest.param(b"x-forwarded-uri", id="x-forwarded-uri"),
        pytest.param(b"x-remote-user", id="x-remote-user"),
        pytest.param(b"remote-user", id="remote-user"),
        pytest.param(b"x-http-method-override", id="x-http-method-override"),
        pytest.param(b"x-method-override", id="x-method-override"),
        pytest.param(b"x-http-method", id="x-http-method"),
        pytest.param(b"x-authenticated-subject", id="x-authenticated-subject"),
        pytest.param(b"x-authenticated-scopes", id="x-authenticated-scopes"),
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


def test_forwardable_names_are_still_checked_for_the_request_id_field() -> None:
    # A name learnt as forwardable for one app may be another app's request id field.
    clean_request_headers([(b"x-correlation-id", b"1")])
    kept, _, _ = clean_request_headers(
        [(b"x-correlation-id", b"spoofed")], request_id_header=b"x-correlation-id"
    )
    assert kept == []


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param([b"content-type"], id="content-type"),
        pytest.param([b"Content-Length"], id="content-length"),
        pytest.param([b"keep-alive, content-encoding"], id="content-encoding"),
        pytest.param([b"content-digest"], id="any-content-field"),
        pytest.param([b"host"], id="host"),
        pytest.param([b"authorization"], id="authorization"),
        pytest.param([b"x-api-key"], id="x-api-key"),
        pytest.param([b"cookie"], id="cookie"),
        pytest.param([b"transfer-encoding"], id="transfer-encoding"),
        pytest.param([b"origin"], id="origin"),
        pytest.param([b"keep-alive", b" , Authorization ,"], id="second-field-padded"),
    ],
)
def test_connection_naming_a_field_the_gateway_relies_on_is_refused(
    connection: list[bytes],
) -> None:
    headers = [(b"connection", value) for value in connection]
    headers += [(b"content-type", b"application/json"), (b"authorization", b"Bearer t")]
    with pytest.raises(BadRequestError) as caught:
        clean_request_headers(headers)
    assert (caught.value.status, caught.value.code) == (400, "connection_header_invalid")


def test_connection_protected_fields_can_be_extended() -> None:
    headers = [(b"connection", b"x-tenant"), (b"x-tenant", b"acme")]
    assert clean_request_headers(headers)[0] == []
    with pytest.raises(BadRequestError):
        clean_request_headers(headers, protected=CONNECTION_PROTECTED | {b"x-tenant"})


def test_identity_fields_go_after_the_clients_and_replace_forged_ones() -> None:
    _, fields, _ = build(
        [(b"x-authenticated-subject", b"admin"), (b"accept", b"*/*")],
        identity=[(b"x-authenticated-subject", b"alice"), ("X-Authenticated-Scopes", "a b")],
    )
    assert fields[:4] == [
        (b"host", b"orders.internal:8080"),
        (b"accept", b"*/*"),
        (b"x-authenticated-subject", b"alice"),
        (b"x-authenticated-scopes", b"a b"),
    ]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(b"x-user", id="outside-the-prefix"),
        pytest.param(b"x-authenticated-", id="prefix-alone"),
        pytest.param(b"x-authenticated-a b", id="not-a-token"),
    ],
)
def test_identity_fields_outside_the_reserved_prefix_are_a_stage_error(name: bytes) -> None:
    with pytest.raises(ValueError, match="identity header"):
        build([], identity=[(name, b"1")])


def test_identity_values_cannot_split_the_head() -> None:
    with pytest.raises(BadRequestError):
        build([], identity=[(b"x-authenticated-subject", b"a\r\nx-admin: 1")])


def test_nothing_extra_without_identity() -> None:
    _, fields, _ = build([])
    assert not [n for n, _ in fields if n.startswith(b"x-authenticated-")]


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
    sorted(
        HOP_BY_HOP
        | CLIENT_IDENTITY
        | METHOD_OVERRIDES
        | {b"host", b"accept", b"x-a", b"x-b", b"cookie", b"x_a", b"x-authenticated-subject"}
    )
)
_VALUES = st.binary(min_size=0, max_size=20).filter(
    lambda v: b"\r" not in v and b"\n" not in v and b"\0" not in v
)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12))
def test_built_head_never_carries_hop_by_hop_or_spoofable_fields(headers: Headers) -> None:
    options = connection_options(headers)
    if options & CONNECTION_PROTECTED or any(o.startswith(b"content-") for o in options):
        with pytest.raises(BadRequestError):
            build(headers)
        return
    _, fields, _ = build(headers)
    names = [name for name, _ in fields]
    ours = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
    assert not (set(names) & HOP_BY_HOP)
    assert not (set(names) & (CLIENT_IDENTITY - ours))
    assert not (set(names) & METHOD_OVERRIDES)
    assert not [n for n in names if b"_" in n or n.startswith(b"x-authenticated-")]
    for name in ours | {b"x-request-id", b"via"}:
        assert names.count(name) == 1
    expected = [
        (n, v)
        for n, v in headers
        if n in (b"accept", b"x-a", b"x-b", b"cookie") and n not in options
    ]
    assert [f for f in fields if f[0] in (b"accept", b"x-a", b"x-b", b"cookie")] == expected


UPSTREAM = Origin("http", "orders.internal", 8080, "")
BASED = Origin("https", "10.0.0.5", 443, "/api")


@pytest.mark.parametrize(
    ("origin", "location", "expected"),
    [
        pytest.param(
            UPSTREAM, b"http://orders.internal:8080/v1/orders/7", b"/v1/orders/7", id="own"
        ),
        pytest.param(
            UPSTREAM, b"http://Orders.Internal:8080/a?b=1#c", b"/a?b=1#c", id="query-frag"
        ),
        pytest.param(UPSTREAM, b"HTTP://orders.internal:8080", b"/", id="no-path"),
        pytest.param(UPSTREAM, b"//orders.internal:8080/x", b"/x", id="network-path"),
        pytest.param(UPSTREAM, b"http://u:p@orders.internal:8080/x", b"/x", id="userinfo"),
        pytest.param(BASED, b"https://10.0.0.5/api/orders?x", b"/orders?x", id="base-stripped"),
        pytest.param(BASED, b"https://10.0.0.5:443/api", b"/", id="base-alone"),
        pytest.param(BASED, b"https://10.0.0.5/apiary", b"/apiary", id="base-not-a-segment"),
        pytest.param(
            UPSTREAM,
            b"http://orders.internal:8080//evil.example/x",
            b"/.//evil.example/x",
            id="double-slash",
        ),
        pytest.param(
            UPSTREAM,
            b"http://orders.internal:8080/\\evil.example",
            b"/./\\evil.example",
            id="backslash",
        ),
        pytest.param(UPSTREAM, b"https://orders.internal:8080/x", None, id="other-scheme"),
        pytest.param(UPSTREAM, b"http://orders.internal/x", None, id="other-port"),
        pytest.param(
            UPSTREAM, b"http://orders.internal:8080@evil.example/x", None, id="userinfo-trick"
        ),
        pytest.param(UPSTREAM, b"https://login.example.com/authorize", None, id="elsewhere"),
        pytest.param(UPSTREAM, b"/v1/orders/7", None, id="already-relative"),
        pytest.param(UPSTREAM, b"http://orders.internal:80x/", None, id="bad-port"),
        pytest.param(UPSTREAM, "http://orders.internal:8080/\u00e9".encode(), None, id="not-ascii"),
    ],
)
def test_relative_location(origin: Origin, location: bytes, expected: bytes | None) -> None:
    assert relative_location(location, origin) == expected


def test_response_location_fields_are_rewritten_only_with_an_origin() -> None:
    headers = [
        (b"location", b"http://orders.internal:8080/orders/8"),
        (b"content-location", b"http://orders.internal:8080/orders/8?v=2"),
        (b"link", b"<http://orders.internal:8080/x>; rel=next"),
    ]
    kept, _, _ = clean_response_headers(headers, 201, origin=UPSTREAM)
    assert kept == [
        (b"location", b"/orders/8"),
        (b"content-location", b"/orders/8?v=2"),
        (b"link", b"<http://orders.internal:8080/x>; rel=next"),
    ]
    assert clean_response_headers(headers, 201)[0] == headers
