"""The stack-trace guard on upstream 5xx answers, seen from the client and the log."""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable

import pytest

from apishield.errors import UpstreamError
from apishield.proxy import UpstreamApp
from tests.proxy.upstreams import Connection, RawUpstream, context, drive

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]

TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "/srv/orders/views.py", line 88, in create\n'
    b"    cursor.execute(sql)\n"
    b'psycopg.errors.UndefinedTable: relation "orders_secret" does not exist\n'
)


def answering(status: int, headers: list[tuple[str, str]], body: bytes) -> Callable[..., object]:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(status, headers, body)

    return handler


async def test_traceback_500_is_hidden_and_logged(
    serve: Serve, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve(answering(500, [("Content-Type", "text/plain")], TRACEBACK))
    app = make_app(server.url())
    with caplog.at_level(logging.WARNING, logger="apishield.upstream"):
        result = await drive(app, "GET", "/", ctx=context(request_id="rid-trace"))
    error = result.error
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (500, "upstream_error_hidden")
    assert error.detail is not None and "orders_secret" not in error.detail
    assert result.messages == []  # nothing of the original reached the client
    [record] = [r for r in caplog.records if r.name == "apishield.upstream"]
    assert record.levelno == logging.WARNING
    assert "rid-trace" in record.getMessage()
    assert 'relation "orders_secret" does not exist' in record.getMessage()
    assert getattr(record, "request_id", None) == "rid-trace"
    # The whole body was read, so the connection is still good for the next request.
    assert app.pool.idle_connections == 1


async def test_log_line_has_length_fingerprint_and_a_short_excerpt(
    serve: Serve, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    body = TRACEBACK + b"#" * 20_000
    server = await serve(answering(502, [("Content-Type", "text/plain")], body))
    app = make_app(server.url())
    with caplog.at_level(logging.WARNING, logger="apishield.upstream"):
        result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert result.error.status == 502
    [record] = [r for r in caplog.records if r.name == "apishield.upstream"]
    message = record.getMessage()
    assert "Traceback" in message
    assert f"length={len(body)}," in message
    assert f"sha256={hashlib.sha256(body).hexdigest()}" in message
    assert message.count("#") <= 1024 - len(TRACEBACK)
    assert app.pool.idle_connections == 1  # read whole (under the window): kept


async def test_body_longer_than_the_window_is_hidden_unread(
    serve: Serve, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    # A clean-looking start is no proof: the rest is never inspected, so it is never shown.
    body = b'{"error":"maintenance","padding":"' + b"." * 300_000 + b'"}'
    server = await serve(answering(503, [("Content-Type", "application/json")], body))
    app = make_app(server.url())
    with caplog.at_level(logging.WARNING, logger="apishield.upstream"):
        result = await drive(app, "GET", "/")
    error = result.error
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (503, "upstream_error_hidden")
    assert result.messages == []
    [record] = [r for r in caplog.records if r.name == "apishield.upstream"]
    assert "longer than the inspection window" in record.getMessage()
    assert re.search(r"length=\d{5,}\+,", record.getMessage())  # read so far, and more
    assert app.pool.open_connections == 0  # not read to the end: never reused


# Werkzeug and Django print their markers late in the page; an attacker pads what the page
# echoes (a query string, a form field) so that they fall past any fixed window.
PADDED_TRACE = b"<html><body><pre>q=" + b"A" * 70_000 + b"</pre>" + TRACEBACK + b"</body></html>"


@pytest.mark.parametrize(
    ("content_type", "encoding", "body"),
    [
        pytest.param("text/plain", "", b"q=" + b"A" * 70_000 + TRACEBACK, id="padded-plain"),
        pytest.param("text/html", "", PADDED_TRACE, id="padded-html"),
        pytest.param("text/plain", "gzip", gzip.compress(PADDED_TRACE), id="padded-gzip"),
        pytest.param(
            "text/html; charset=utf-8",
            "",
            b"<html><title>Error</title><p>Something went wrong.</p></html>",
            id="html-page-without-markers",
        ),
        pytest.param("application/xhtml+xml", "", b"<html><p>error</p></html>", id="xhtml-page"),
        pytest.param(
            "application/json",
            "gzip",
            gzip.compress(b'{"error":"busy"}') + gzip.compress(TRACEBACK),
            id="trace-in-second-gzip-member",
        ),
    ],
)
async def test_error_bodies_that_cannot_be_cleared_are_hidden(
    serve: Serve, make_app: MakeApp, content_type: str, encoding: str, body: bytes
) -> None:
    headers = [("Content-Type", content_type)]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    server = await serve(answering(500, headers, body))
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert (result.error.status, result.error.code) == (500, "upstream_error_hidden")
    assert result.messages == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(
            "application/problem+json",
            b'{"type":"about:blank","title":"Service Unavailable","status":503}',
            id="problem-json",
        ),
        pytest.param("application/json", b'{"e":"' + b"x" * 60_000 + b'"}', id="json-near-window"),
        pytest.param("text/plain", b"Service Unavailable", id="plain-text"),
        pytest.param("text/html", b"", id="empty-html"),
    ],
)
async def test_clean_error_bodies_within_the_window_pass(
    serve: Serve, make_app: MakeApp, content_type: str, body: bytes
) -> None:
    server = await serve(answering(503, [("Content-Type", content_type)], body))
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert result.error is None
    assert (result.status, result.body) == (503, body)


PASSWORD = "Zq9-correct-horse-battery"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(
            "text/plain",
            TRACEBACK + f"  conn = connect('postgresql://orders:{PASSWORD}@db:5432/o')\n".encode(),
            id="dsn-in-traceback",
        ),
        pytest.param(
            "text/html",
            b"<h1>OperationalError</h1><table><tr><td>password</td><td class=code><pre>&#x27;"
            + PASSWORD.encode()
            + b"&#x27;</pre></td></tr></table>",
            id="django-locals",
        ),
        pytest.param(
            "application/json",
            b'{"trace":"Traceback (most recent call last):\\n  File \\"/a.py\\", line 1",'
            b'"settings":{"DB_PASSWORD":"' + PASSWORD.encode() + b'"}}',
            id="json-settings",
        ),
        pytest.param(
            "text/plain",
            b"x" * 70_000 + f" password={PASSWORD}".encode(),
            id="past-the-excerpt",
        ),
    ],
)
async def test_a_password_in_the_hidden_body_never_reaches_a_log_line(
    serve: Serve,
    make_app: MakeApp,
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    body: bytes,
) -> None:
    server = await serve(answering(500, [("Content-Type", content_type)], body))
    app = make_app(server.url())
    with caplog.at_level(logging.DEBUG):
        result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert result.error.code == "upstream_error_hidden"
    assert [r for r in caplog.records if r.name == "apishield.upstream"]
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in repr(record.__dict__)
    assert PASSWORD not in caplog.text


async def test_json_503_passes_through_unchanged(
    serve: Serve, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"error":"database unavailable"}'
    server = await serve(
        answering(503, [("Content-Type", "application/json"), ("Retry-After", "5")], body)
    )
    app = make_app(server.url())
    with caplog.at_level(logging.WARNING, logger="apishield.upstream"):
        result = await drive(app, "GET", "/")
    assert result.error is None
    assert (result.status, result.body) == (503, body)
    assert result.header("retry-after") == "5"
    assert not [r for r in caplog.records if r.name == "apishield.upstream"]


async def test_only_5xx_answers_are_inspected(serve: Serve, make_app: MakeApp) -> None:
    server = await serve(answering(200, [("Content-Type", "text/plain")], TRACEBACK))
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert (result.status, result.body) == (200, TRACEBACK)


async def test_guard_can_be_turned_off(serve: Serve, make_app: MakeApp) -> None:
    server = await serve(answering(500, [("Content-Type", "text/plain")], TRACEBACK))
    app = make_app(server.url(), stacktrace_guard=False)
    result = await drive(app, "GET", "/")
    assert (result.status, result.body) == (500, TRACEBACK)


@pytest.mark.parametrize(
    ("encoding", "body", "hidden"),
    [
        pytest.param("gzip", gzip.compress(TRACEBACK), True, id="gzip-trace"),
        pytest.param("gzip", gzip.compress(b'{"error":"busy"}'), False, id="gzip-clean"),
        pytest.param("br", b"\x0b\x02\x80{}\x03", True, id="unreadable-coding"),
    ],
)
async def test_compressed_error_bodies_are_inspected(
    serve: Serve, make_app: MakeApp, encoding: str, body: bytes, hidden: bool
) -> None:
    server = await serve(
        answering(500, [("Content-Type", "text/plain"), ("Content-Encoding", encoding)], body)
    )
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    if hidden:
        assert isinstance(result.error, UpstreamError)
        assert result.error.code == "upstream_error_hidden"
    else:
        assert (result.status, result.body) == (500, body)
        assert result.header("content-encoding") == encoding
