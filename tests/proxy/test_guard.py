"""The stack-trace guard on upstream 5xx answers, seen from the client and the log."""

from __future__ import annotations

import gzip
import logging
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


async def test_logged_body_is_truncated_to_4_kib(
    serve: Serve, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    body = TRACEBACK + b"#" * 1_000_000
    server = await serve(answering(502, [("Content-Type", "text/plain")], body))
    app = make_app(server.url())
    with caplog.at_level(logging.WARNING, logger="apishield.upstream"):
        result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert result.error.status == 502
    [record] = [r for r in caplog.records if r.name == "apishield.upstream"]
    assert "Traceback" in record.getMessage()
    assert record.getMessage().count("#") <= 4096 - len(TRACEBACK)
    assert app.pool.open_connections == 0  # not read to the end: never reused


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


async def test_large_clean_5xx_is_forwarded_whole(serve: Serve, make_app: MakeApp) -> None:
    body = b'{"error":"maintenance","padding":"' + b"." * 300_000 + b'"}'
    server = await serve(answering(503, [("Content-Type", "application/json")], body))
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert result.error is None
    assert (result.status, result.body) == (503, body)
    assert result.finished


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
