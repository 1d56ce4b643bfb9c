from __future__ import annotations

import gzip
import os
import zlib

import pytest

from apishield.proxy.leaks import decode_for_inspection, looks_like_stack_trace

PYTHON_TRACE = b"""Traceback (most recent call last):
  File "/app/handlers/orders.py", line 42, in get_order
    row = db.fetch(order_id)
KeyError: 'order_id'
"""

JAVA_TRACE = b"""java.lang.NullPointerException: Cannot invoke "String.length()"
\tat com.example.orders.OrderService.total(OrderService.java:88)
\tat com.example.orders.OrderController.get(OrderController.java:31)
"""

POSITIVES = [
    pytest.param(PYTHON_TRACE, "text/plain", id="python-traceback"),
    pytest.param(
        b'{"detail": "Traceback (most recent call last):\\n  File \\"/app/x.py\\", line 3"}',
        "application/json",
        id="python-traceback-in-json",
    ),
    pytest.param(
        b'  File "/srv/app.py", line 12, in handler\n  File "/srv/db.py", line 99, in q\n',
        "text/plain",
        id="python-frames-without-header",
    ),
    pytest.param(JAVA_TRACE, "text/plain", id="java-frames"),
    pytest.param(
        b'Exception in thread "main" java.lang.IllegalStateException: boom', "", id="java-thread"
    ),
    pytest.param(
        b'{"timestamp":"2026-11-02T10:00:00Z","status":500,"error":"Internal Server Error",'
        b'"trace":"java.lang.RuntimeException: x\\n\\tat com.example.A.b(A.java:10)\\n'
        b'\\tat com.example.C.d(C.java:20)\\n","path":"/orders"}',
        "application/json",
        id="spring-json-trace",
    ),
    pytest.param(
        b"<html><body><h1>Whitelabel Error Page</h1><p>This application has no explicit "
        b"mapping for /error</p></body></html>",
        "text/html",
        id="spring-whitelabel",
    ),
    pytest.param(
        b"System.NullReferenceException: Object reference not set to an instance of an object.\n"
        b"   at Orders.Api.OrderController.Get(Int32 id) in C:\\src\\OrderController.cs:line 42\n",
        "text/plain",
        id="dotnet-frame-with-line",
    ),
    pytest.param(
        b"<title>Internal Server Error</title><h1>An unhandled exception occurred while "
        b"processing the request.</h1>",
        "text/html; charset=utf-8",
        id="aspnet-core-developer-page",
    ),
    pytest.param(
        b"TypeError: Cannot read properties of undefined (reading 'id')\n"
        b"    at getOrder (/app/src/orders.js:12:5)\n"
        b"    at Layer.handle (/app/node_modules/express/lib/router/layer.js:95:5)\n",
        "text/plain",
        id="node-frames",
    ),
    pytest.param(
        b"<!DOCTYPE html><html><body><pre>Error: boom<br> &nbsp; &nbsp;at /app/index.js:5:9<br>"
        b" &nbsp; &nbsp;at Layer.handle [as handle_request] "
        b"(/app/node_modules/express/lib/router/layer.js:95:5)</pre></body></html>",
        "text/html; charset=utf-8",
        id="express-dev-error-page",
    ),
    pytest.param(
        b"<br />\n<b>Fatal error</b>:  Uncaught Exception: boom in /var/www/html/index.php:3\n"
        b"  thrown in <b>/var/www/html/index.php</b> on line <b>3</b><br />",
        "text/html",
        id="php-fatal-error",
    ),
    pytest.param(
        b"PHP Warning: oops\nStack trace:\n#0 /var/www/a.php(12): f()\n#1 {main}",
        "text/plain",
        id="php-stack-trace",
    ),
    pytest.param(
        b"<h1>The debugger caught an exception in your WSGI application.</h1>",
        "text/html",
        id="werkzeug-debugger",
    ),
    pytest.param(
        b"<p>You&#x27;re seeing this error because you have <code>DEBUG = True</code> in your "
        b"Django settings file.</p>",
        "text/html",
        id="django-debug-page",
    ),
    pytest.param(
        b"<title>Action Controller: Exception caught</title><h1>NoMethodError</h1>",
        "text/html",
        id="rails-debug-page",
    ),
    pytest.param(
        b"app/controllers/orders_controller.rb:12:in `show'\napp/models/order.rb:40:in `total'\n",
        "text/plain",
        id="ruby-frames",
    ),
    pytest.param(
        b"panic: runtime error: invalid memory address or nil pointer dereference\n"
        b"[signal SIGSEGV: segmentation violation]\n\ngoroutine 1 [running]:\n"
        b"main.handler(...)\n\t/src/main.go:12 +0x1d\n",
        "text/plain",
        id="go-panic",
    ),
    pytest.param(
        b"thread 'tokio-runtime-worker' panicked at src/orders.rs:42:9:\ncalled unwrap on None",
        "text/plain",
        id="rust-panic",
    ),
    pytest.param(PYTHON_TRACE, "", id="no-content-type"),
]

NEGATIVES = [
    pytest.param(b'{"error":"database unavailable"}', "application/json", id="json-error"),
    pytest.param(b"", "application/json", id="empty"),
    pytest.param(b"Internal Server Error", "text/plain", id="plain-500"),
    pytest.param(
        b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
        b"</h1></center><hr><center>nginx</center></body></html>",
        "text/html",
        id="nginx-error-page",
    ),
    pytest.param(
        b'{"error":"ValueError: invalid literal for int()"}',
        "application/json",
        id="exception-name-without-frames",
    ),
    pytest.param(b'{"detail":"Traceback disabled in production"}', "", id="word-traceback"),
    pytest.param(
        b'{"error":"upstream busy, retry at 12:05","at":"edge-3"}', "", id="word-at-and-time"
    ),
    pytest.param(b'{"status":"[running]: queue full"}', "", id="running-without-goroutine"),
    pytest.param(b'{"error":"Fatal error in payment provider"}', "", id="fatal-without-line"),
    pytest.param(b'{"error":"config main.js:12 is missing"}', "", id="one-location-no-frame"),
    pytest.param(b'{"message":"Stack overflow in queue; look at the logs"}', "", id="stack-word"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", id="binary"),
]


@pytest.mark.parametrize(("body", "content_type"), POSITIVES)
def test_traces_are_recognised(body: bytes, content_type: str) -> None:
    assert looks_like_stack_trace(body, content_type)


@pytest.mark.parametrize(("body", "content_type"), NEGATIVES)
def test_ordinary_errors_are_not_traces(body: bytes, content_type: str) -> None:
    assert not looks_like_stack_trace(body, content_type)


def test_only_the_first_64_kib_are_inspected() -> None:
    body = b" " * (64 * 1024) + PYTHON_TRACE
    assert not looks_like_stack_trace(body, "text/plain")
    assert looks_like_stack_trace(PYTHON_TRACE + b" " * (256 * 1024), "text/plain")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'", line ' * 9000, id="python-location-markers"),
        pytest.param(b".java:" * 12000, id="java-location-markers"),
        pytest.param(b"&nbsp;" * 12000, id="html-entities"),
        pytest.param(b"a" * 70_000, id="one-byte"),
    ],
)
@pytest.mark.timeout(10)
def test_adversarial_bodies_take_linear_time(body: bytes) -> None:
    # Linear work over 64 KiB is well under a millisecond a call; quadratic work (4e9 steps)
    # would blow the generous timeout.
    for _ in range(10):
        assert not looks_like_stack_trace(body, "text/html")
        assert not looks_like_stack_trace(body, "application/json")


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("x-gzip", gzip.compress, id="x-gzip"),
        pytest.param("deflate", zlib.compress, id="deflate"),
        pytest.param("", lambda b: b, id="none"),
        pytest.param("identity", lambda b: b, id="identity"),
    ],
)
def test_decode_for_inspection_inflates_known_codings(encoding: str, encode: object) -> None:
    assert callable(encode)
    encoded = encode(PYTHON_TRACE)
    assert decode_for_inspection(encoded, encoding) == PYTHON_TRACE


def test_decode_for_inspection_reads_a_truncated_gzip_prefix() -> None:
    body = gzip.compress(PYTHON_TRACE + os.urandom(100_000))
    decoded = decode_for_inspection(body[: len(body) // 2], "gzip")
    assert decoded is not None and decoded.startswith(PYTHON_TRACE)


def test_decode_for_inspection_bounds_a_compression_bomb() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    decoded = decode_for_inspection(bomb, "gzip")
    assert decoded is not None and len(decoded) == 64 * 1024


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        pytest.param(b"\x1b\x00\x00", "br", id="brotli"),
        pytest.param(b"(\xb5/\xfd", "zstd", id="zstd"),
        pytest.param(b"not gzip at all", "gzip", id="corrupt-gzip"),
    ],
)
def test_decode_for_inspection_gives_up_on_what_it_cannot_read(body: bytes, encoding: str) -> None:
    assert decode_for_inspection(body, encoding) is None
