from __future__ import annotations

import gzip
import os
import zlib

import pytest

from apishield.proxy.leaks import decode_for_inspection, looks_like_stack_trace, redact_excerpt

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


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        pytest.param(b"\x1b\x00\x00", "br", id="brotli"),
        pytest.param(b"(\xb5/\xfd", "zstd", id="zstd"),
        pytest.param(b"not gzip at all", "gzip", id="corrupt-gzip"),
        pytest.param(
            gzip.compress(PYTHON_TRACE + os.urandom(1000))[:200], "gzip", id="truncated-gzip"
        ),
        pytest.param(gzip.compress(b"\0" * (50 * 1024 * 1024)), "gzip", id="compression-bomb"),
        pytest.param(gzip.compress(b" " * (64 * 1024 + 1)), "gzip", id="one-byte-past-the-window"),
        pytest.param(
            gzip.compress(b'{"error":"busy"}') + gzip.compress(PYTHON_TRACE),
            "gzip",
            id="trace-in-a-second-gzip-member",
        ),
        pytest.param(zlib.compress(b"{}") + b"trailing", "deflate", id="bytes-after-the-end"),
    ],
)
def test_decode_for_inspection_gives_up_on_what_it_cannot_read(body: bytes, encoding: str) -> None:
    # The caller hides what cannot be read whole: fail closed.
    assert decode_for_inspection(body, encoding) is None


def test_decode_for_inspection_accepts_exactly_the_window() -> None:
    body = b" " * (64 * 1024)
    assert decode_for_inspection(gzip.compress(body), "gzip") == body


SECRET = "Tr0ub4dor&3-hunter2"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


@pytest.mark.parametrize(
    ("body", "content_type", "secret"),
    [
        pytest.param(
            b"OperationalError: could not connect to postgresql://orders:S3cr3t@pw@db.internal/o",
            "text/plain",
            "S3cr3t@pw",
            id="url-userinfo",
        ),
        pytest.param(
            f"POST body: user=bob&password={SECRET}&next=/".encode(),
            "text/plain",
            SECRET,
            id="form-password",
        ),
        pytest.param(
            f'{{"trace": "x", "config": {{"db_password": "{SECRET}"}}}}'.encode(),
            "application/json",
            SECRET,
            id="json-field",
        ),
        pytest.param(
            f'{{"detail": "settings: {{\\"SECRET_KEY\\": \\"{SECRET}\\"}}"}}'.encode(),
            "application/json",
            SECRET,
            id="json-escaped-field",
        ),
        pytest.param(
            f"DATABASES = {{'default': {{'USER': 'orders', 'PASSWORD': '{SECRET}'}}}}".encode(),
            "text/plain",
            SECRET,
            id="python-repr",
        ),
        pytest.param(
            f'<tr><td>passwd</td>\n<td class="code"><pre>&#x27;{SECRET}&#x27;</pre></td>'.encode(),
            "text/html; charset=utf-8",
            SECRET,
            id="django-local-variable-cell",
        ),
        pytest.param(
            f"api_key: {SECRET}\nretries: 3".encode(), "text/plain", SECRET, id="yaml-api-key"
        ),
        pytest.param(
            f"Authorization: Bearer {TOKEN}".encode(), "text/plain", TOKEN, id="bearer-token"
        ),
        pytest.param(
            b"Authorization: Basic b3JkZXJzOmh1bnRlcjI=", "text/plain", "b3JkZXJz", id="basic"
        ),
        pytest.param(
            f"request headers: {{'x-api-key': '{SECRET}'}}".encode(),
            "text/plain",
            SECRET,
            id="header-dict",
        ),
        pytest.param(
            b"signing key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 used",
            "text/plain",
            "9f86d081884c7d659a2feaa0c55ad015",
            id="hex-run",
        ),
        pytest.param(
            b"aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY loaded",
            "text/plain",
            "wJalrXUtnFEMI",
            id="base64-run",
        ),
    ],
)
def test_redact_excerpt_hides_secrets(body: bytes, content_type: str, secret: str) -> None:
    excerpt = redact_excerpt(body, content_type)
    assert secret not in excerpt
    assert "[REDACTED]" in excerpt


def test_redact_excerpt_keeps_what_the_operator_needs() -> None:
    excerpt = redact_excerpt(
        b'Traceback (most recent call last):\n  File "/usr/lib/python3.11/site-packages/'
        b"django/core/handlers/exception.py\", line 55, in inner\nKeyError: 'order_id'",
        "text/plain",
    )
    assert "/django/core/handlers/exception.py" in excerpt
    assert "KeyError: 'order_id'" in excerpt
    assert "[REDACTED]" not in excerpt


def test_redact_excerpt_is_bounded_and_sees_past_its_end() -> None:
    # A secret that starts inside the excerpt and runs past its end is still recognised.
    body = b"x" * 1000 + b" password=" + SECRET.encode() * 10 + b" " + b"y" * 100_000
    excerpt = redact_excerpt(body, "text/plain")
    assert len(excerpt) == 1024
    assert SECRET[:5] not in excerpt


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"password" + b"<a>" * 20_000 + b";", id="markup-after-a-key"),
        pytest.param(b"password<a><a><a><a><a><a><a><a>;" * 2000, id="many-keys"),
        pytest.param(b"postgresql://" + b"a" * 100_000, id="endless-authority"),
        pytest.param(b"A1b" * 40_000, id="endless-run"),
    ],
)
@pytest.mark.timeout(10)
def test_redact_excerpt_takes_bounded_time(body: bytes) -> None:
    for _ in range(20):
        redact_excerpt(body, "text/html")
