"""Detection of stack traces and framework debug pages in upstream error bodies.

An upstream that crashes often answers with its internals: a Python traceback, a Java stack,
Django's or Werkzeug's debug page. Those name files, library versions, SQL and sometimes
secrets (OWASP API Security Top 10, API8:2023 Security Misconfiguration; CWE-209). The upstream
stage calls :func:`looks_like_stack_trace` on the first bytes of every 5xx body and replaces the
response when it answers ``True``.

Trust assumption: the body is attacker-influenced (an upstream error may echo request data), so
detection is a fixed number of substring searches over a bounded prefix: linear time, no regular
expressions, nothing that backtracks. A false positive hides an upstream's error message behind
our own problem+json with the same status; a false negative leaks. Markers are therefore chosen
to be specific to traces (file *and* line number, a framework's fixed debug-page sentence) so
that ordinary error messages such as ``{"error": "database unavailable"}`` pass.
"""

from __future__ import annotations

import zlib
from typing import Final

#: Sentences and headers that only traces or debug pages print; one is enough.
_STRONG_MARKERS: Final[tuple[bytes, ...]] = (
    b"(most recent call last)",  # Python traceback, also inside Werkzeug's <em>
    b'Exception in thread "',  # Java uncaught exception
    b"seeing this error because you have",  # Django, DEBUG = True
    b"The debugger caught an exception",  # Werkzeug debugger
    b"Starlette Debugger",  # Starlette/FastAPI debug=True
    b"Whitelabel Error Page",  # Spring Boot
    b"Action Controller: Exception caught",  # Rails
    b"Rails.root: ",  # Rails
    b"An unhandled exception occurred while processing the request",  # ASP.NET Core
    b"Server Error in '",  # ASP.NET yellow screen
    b"Stack trace:",  # PHP, Node util.inspect
    b"Stack Trace:",  # ASP.NET
    b"' panicked at ",  # Rust
)

#: Pairs that mark a trace only together.
_PAIRED_MARKERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"goroutine ", b" [running]:"),  # Go panic
    (b"Fatal error", b" on line "),  # PHP
    (b"Parse error", b" on line "),  # PHP
)

#: A source location: the marker must be followed by a decimal line number.
_FRAME_LOCATIONS: Final[tuple[bytes, ...]] = (
    b'", line ',  # Python: File "x.py", line 12
    b".java:",  # Java: (Foo.java:12)
    b".kt:",
    b".scala:",
    b".groovy:",
    b":line ",  # .NET: in C:\src\Foo.cs:line 42
    b".js:",  # Node: (file.js:12:5)
    b".mjs:",
    b".cjs:",
    b".ts:",
    b".rb:",  # Ruby: app.rb:12:in `foo'
    b".php:",  # PHP: /var/www/a.php:12
    b".php(",  # PHP: #0 /var/www/a.php(12): f()
    b".php on line ",
    b".go:",  # Go: /src/main.go:12 +0x1d
    b".rs:",  # Rust
    b".py:",  # Python in logging formats
)

#: How a frame line starts; one of these next to a single location is a trace too.
_FRAME_PREFIXES: Final[tuple[bytes, ...]] = (
    b"\tat ",  # Java
    b"   at ",  # .NET (three spaces), Node (four)
    b'  File "',  # Python
    b"#0 ",  # PHP
    b"Caused by: ",  # Java
)

_HTML_ENTITIES: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"&nbsp;", b" "),
    (b"&#160;", b" "),
    (b"&#39;", b"'"),
    (b"&#x27;", b"'"),
    (b"&apos;", b"'"),
    (b"&quot;", b'"'),
    (b"&#34;", b'"'),
    (b"&lt;", b"<"),
    (b"&gt;", b">"),
    (b"&amp;", b"&"),  # last, so "&amp;lt;" stays "&lt;"
)

_JSON_ESCAPES: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"\\n", b"\n"),
    (b"\\t", b"\t"),
    (b'\\"', b'"'),
    (b"\\u0027", b"'"),
    (b"\\/", b"/"),
)

_INSPECT_LIMIT: Final = 64 * 1024


def looks_like_stack_trace(body: bytes, content_type: str) -> bool:
    """Whether ``body`` looks like a stack trace or a framework debug page.

    ``content_type`` (the response's ``Content-Type``, possibly empty) selects a normalisation
    before matching: HTML entities are decoded for HTML so that Express's ``&nbsp;at`` frames
    match, and JSON string escapes are undone for JSON so that a trace embedded in a JSON field
    (Spring's ``trace``) matches like plain text. Only the first 64 KiB are inspected.

    Trust assumption: ``body`` is untrusted; the cost is linear in its length whatever it holds.
    """
    data = bytes(body[:_INSPECT_LIMIT])
    media = content_type.partition(";")[0].strip().lower()
    if media.endswith(("html", "xml")):
        data = _replace_all(data, _HTML_ENTITIES)
    elif media.endswith("json"):
        data = _replace_all(data, _JSON_ESCAPES)
    for marker in _STRONG_MARKERS:
        if marker in data:
            return True
    for first, second in _PAIRED_MARKERS:
        if first in data and second in data:
            return True
    frames = 0
    for location in _FRAME_LOCATIONS:
        frames += _count_numbered(data, location, limit=2 - frames)
        if frames >= 2:
            return True
    return frames == 1 and any(prefix in data for prefix in _FRAME_PREFIXES)


def decode_for_inspection(body: bytes, content_encoding: str) -> bytes | None:
    """The readable bytes of a (possibly truncated) body, or ``None`` when they cannot be known.

    ``gzip`` and ``deflate`` (RFC 9110 §8.4.1) are inflated up to 64 KiB of output, which bounds
    the work a compression bomb can cause; identity bodies are returned as they are. Any other
    coding (``br``, ``zstd``…) cannot be inspected here, and the caller must fail closed.
    """
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    data = body
    for coding in reversed(codings):  # the last coding applied is undone first
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS  # zlib-wrapped, as RFC 9110 §8.4.1.2 defines it
        else:
            return None
        try:
            data = zlib.decompressobj(wbits).decompress(data, _INSPECT_LIMIT)
        except zlib.error:
            return None
    return data


def _replace_all(data: bytes, pairs: tuple[tuple[bytes, bytes], ...]) -> bytes:
    for old, new in pairs:
        if old in data:
            data = data.replace(old, new)
    return data


def _count_numbered(data: bytes, marker: bytes, *, limit: int) -> int:
    """Occurrences of ``marker`` followed by an ASCII digit, counting at most ``limit``."""
    found = 0
    start = data.find(marker)
    while start != -1 and found < limit:
        after = start + len(marker)
        if after < len(data) and 0x30 <= data[after] <= 0x39:
            found += 1
        start = data.find(marker, after)
    return found
