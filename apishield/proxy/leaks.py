"""Detection of stack traces and framework debug pages in upstream error bodies.

An upstream that crashes often answers with its internals: a Python traceback, a Java stack,
Django's or Werkzeug's debug page. Those name files, library versions, SQL and sometimes
secrets (OWASP API Security Top 10, API8:2023 Security Misconfiguration; CWE-209). The upstream
stage calls :func:`looks_like_stack_trace` on every 5xx body that fits in the inspection window
and replaces the response when it answers ``True``; longer bodies, HTML pages and bodies in an
unknown content coding are replaced without looking (fail closed). :func:`redact_excerpt`
makes the part of a hidden body that goes to the log safe to keep there.

Trust assumption: the body is attacker-influenced (an upstream error may echo request data), so
detection is a fixed number of substring searches over a bounded prefix: linear time, no regular
expressions, nothing that backtracks. A false positive hides an upstream's error message behind
our own problem+json with the same status; a false negative leaks. Markers are therefore chosen
to be specific to traces (file *and* line number, a framework's fixed debug-page sentence) so
that ordinary error messages such as ``{"error": "database unavailable"}`` pass.
"""

from __future__ import annotations

import re
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

#: How much of a body (after content decoding) is inspected.
INSPECT_LIMIT: Final = 64 * 1024


def looks_like_stack_trace(body: bytes, content_type: str) -> bool:
    """Whether ``body`` looks like a stack trace or a framework debug page.

    ``content_type`` (the response's ``Content-Type``, possibly empty) selects a normalisation
    before matching: HTML entities are decoded for HTML so that Express's ``&nbsp;at`` frames
    match, and JSON string escapes are undone for JSON so that a trace embedded in a JSON field
    (Spring's ``trace``) matches like plain text. Only the first 64 KiB are inspected.

    Trust assumption: ``body`` is untrusted; the cost is linear in its length whatever it holds.
    """
    data = bytes(body[:INSPECT_LIMIT])
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
    """The readable bytes of a whole body, or ``None`` when they cannot all be known.

    ``gzip`` and ``deflate`` (RFC 9110 §8.4.1) are inflated up to 64 KiB of output, which bounds
    the work a compression bomb can cause; identity bodies are returned as they are. ``None``
    (the caller must fail closed) for any other coding (``br``, ``zstd``…), for a stream that
    inflates past 64 KiB, ends early or has bytes after its end: a client would read a second
    gzip member that a single inflation never sees (RFC 1952 §2.2).
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
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(data, INSPECT_LIMIT)
        except zlib.error:
            return None
        if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
            return None
    return data


# Always hidden when they carry a 5xx: an error page is a debug page until proven otherwise,
# and an attacker can push its markers past any window by padding what it echoes.
_HTML: Final = frozenset({"text/html", "application/xhtml+xml"})


def error_body_verdict(
    body: bytes, whole: bool, content_type: str, content_encoding: str
) -> tuple[str | None, bytes | None]:
    """Why the 5xx ``body`` must be hidden (``None`` when it may be shown), and its readable
    bytes (``None`` when they cannot be known).

    ``whole`` says whether ``body`` is all of it. Fail closed: a body longer than the
    inspection window, an HTML page, or content that cannot be decoded whole is hidden
    without looking further; anything else is hidden when it looks like a stack trace. An
    empty body has nothing to hide.

    Trust assumption: ``body`` is untrusted; the work is bounded by the window.
    """
    if not body and whole:
        return None, body
    readable = decode_for_inspection(body, content_encoding)
    if not whole or len(body) > INSPECT_LIMIT:
        return "longer than the inspection window", readable
    if content_type.partition(";")[0].strip().lower() in _HTML:
        return "an HTML page", readable
    if readable is None:
        return "content not inspectable", None
    if looks_like_stack_trace(readable, content_type):
        return "looks like a stack trace", readable
    return None, readable


#: Length of the excerpt of a hidden body that is logged, in characters.
EXCERPT: Final = 1024
_REDACTED: Final = "[REDACTED]"
# Redaction looks at twice the excerpt, so a secret that starts inside it and runs past its
# end is still recognised whole.
_REDACT_WINDOW: Final = 2 * EXCERPT

# scheme://user:password@host — greedy up to the last "@" of the authority, so that a password
# holding "@" goes whole.
_URL_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)[^/\s?#]*@")
# Authorization schemes followed by their credentials (RFC 9110 §11.4, RFC 6750 §2.1).
_AUTH_SCHEME: Final = re.compile(r"(?i)\b(bearer|basic|digest|negotiate)\s+[A-Za-z0-9._~+/=-]+")
# A key naming a secret, then ":", "=", "=>" or markup (a debug page's table cell), then the
# value: quoted (JSON, Python reprs, YAML) or bare up to a delimiter. Every repetition is
# bounded, so that no input makes the matching backtrack more than a fixed amount.
_SEPARATOR: Final = r"(?:\s|<[^<>]{0,80}>){0,8}(?:=>|[:=]|<[^<>]{0,80}>)(?:\s|<[^<>]{0,80}>){0,8}"
_KEY_VALUE: Final = re.compile(
    r"(?i)((?:passw(?:or)?d|pwd|secret|token|api[_-]?key|apikey|authorization"
    r"|private[_-]?key|access[_-]?key|credentials?)[\w-]{0,40}[\"']?"
    + _SEPARATOR
    + r")(\"(?:[^\"\\\n]|\\.){0,256}\"?|'(?:[^'\\\n]|\\.){0,256}'?|[^\s\"'<>,;&)\]}]{1,256})"
)
# Runs of the base64, base64url or hex alphabets: keys, tokens, hashes.
_LONG_RUN: Final = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
_HEX_RUN: Final = re.compile(r"[0-9A-Fa-f]{32,}")


def _redact_run(match: re.Match[str]) -> str:
    run = match.group()
    # Random base64 of 32 characters mixes digits and both cases with near certainty; file
    # paths and identifiers of a trace rarely do, and stay readable for the operator.
    if (
        _HEX_RUN.fullmatch(run)
        or "+" in run
        or run.endswith("=")
        or (
            any(c.isdigit() for c in run)
            and any(c.isupper() for c in run)
            and any(c.islower() for c in run)
        )
    ):
        return _REDACTED
    return run


def redact_excerpt(body: bytes, content_type: str) -> str:
    """The first :data:`EXCERPT` characters of ``body`` with the obvious secrets replaced by
    ``[REDACTED]``: the userinfo of URLs, ``Authorization`` credentials, values of keys that
    name a password, secret, token, API key or credential (``key=value``, ``key: value``, JSON
    and Python-repr fields, a debug page's table cells), and runs of 32 or more base64 or hex
    characters. HTML entities and JSON escapes are undone first, as for the detection.

    Trust assumption: ``body`` is untrusted and may contain anything; redaction is best
    effort, so the log still never gets more than the excerpt. The cost is bounded by the
    fixed window, whatever the body holds.
    """
    data = bytes(body[: _REDACT_WINDOW * 2])
    media = content_type.partition(";")[0].strip().lower()
    if media.endswith(("html", "xml")):
        data = _replace_all(data, _HTML_ENTITIES)
    elif media.endswith("json"):
        data = _replace_all(data, _JSON_ESCAPES)
    text = data.decode("utf-8", "replace")[:_REDACT_WINDOW]
    text = _URL_USERINFO.sub(r"\1" + _REDACTED + "@", text)
    text = _AUTH_SCHEME.sub(r"\1 " + _REDACTED, text)
    text = _KEY_VALUE.sub(r"\1" + _REDACTED, text)
    text = _LONG_RUN.sub(_redact_run, text)
    return text[:EXCERPT]


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
