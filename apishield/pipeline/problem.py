"""RFC 9457 problem+json responses, the only shape a refusal takes.

A problem says what the client may know: a stable ``code``, the status, a request id to quote to
the operator. ``mode: development`` adds ``hint`` (why, and how to fix it) and the name of the
guide in ``docs/refusals/``; production never does, since the why can teach an attacker.
"""

from __future__ import annotations

import json

from apishield.errors import PROBLEM_TYPE_BASE, TITLES, HTTPError, SchemaViolationError
from apishield.types import Headers, Send

# Refusals are never cached, never sniffed, never framed: they carry the same baseline headers
# the response stage adds to upstream answers.
BASE_HEADERS: Headers = [
    (b"content-type", b"application/problem+json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]


def problem_body(
    error: HTTPError,
    request_id: str,
    *,
    development: bool = False,
    type_base: str = PROBLEM_TYPE_BASE,
) -> dict[str, object]:
    """The problem document for ``error`` (a plain dict, ready for ``json.dumps``)."""
    body: dict[str, object] = {
        "type": type_base + error.code,
        "title": TITLES.get(error.status, error.title),
        "status": error.status,
        "code": error.code,
        "request_id": request_id,
    }
    if error.detail:
        body["detail"] = error.detail
    if development:
        if error.hint:
            body["hint"] = error.hint
        if isinstance(error, SchemaViolationError) and error.errors:
            # Each failing field, named but never quoted: a field list maps the API for an
            # attacker, so production sends only the code.
            body["errors"] = error.errors
        body["guide"] = f"docs/refusals/{error.code}.md"
        body["explain"] = f"apishield explain {error.code}"
    return body


def render_problem(
    error: HTTPError,
    request_id: str,
    *,
    development: bool = False,
    type_base: str = PROBLEM_TYPE_BASE,
    head: bool = False,
) -> tuple[int, Headers, bytes]:
    """Status, headers and body bytes of the problem response."""
    body = json.dumps(
        problem_body(error, request_id, development=development, type_base=type_base),
        separators=(",", ":"),
    ).encode()
    headers = list(BASE_HEADERS)
    for name, value in error.headers.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    headers.append((b"content-length", str(len(body)).encode()))
    return error.status, headers, b"" if head else body


async def send_problem(
    send: Send,
    error: HTTPError,
    request_id: str,
    *,
    development: bool = False,
    type_base: str = PROBLEM_TYPE_BASE,
    head: bool = False,
) -> None:
    """Send a whole problem response through an ASGI ``send``."""
    status, headers, body = render_problem(
        error, request_id, development=development, type_base=type_base, head=head
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
