"""The small HTTP layer of the authorization server: requests in, responses out, forms.

Endpoints take a ``Request`` (method, path, query, headers, the body already read within a
limit) and return a ``Response``; the ASGI adapter in ``server.py`` does the I/O. Forms and
query strings are parsed strictly, as RFC 6749 §3.1–3.2 asks: parameters sent without a value
count as omitted, and a parameter repeated is refused (only RFC 8707's ``resource`` may
appear more than once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from apishield.errors import HTTPError, PayloadTooLargeError, UnsupportedMediaTypeError
from apishield.types import Headers, Receive

FORM = "application/x-www-form-urlencoded"
MULTI_VALUED = frozenset({"resource"})  # RFC 8707 §2
MAX_FIELDS = 64
_URI_CHARACTERS = ":/?#[]@!$&'()*+,;=%~-._"  # RFC 3986 reserved and unreserved, and '%'
NO_STORE: Headers = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


class DuplicateParameter(ValueError):
    """A parameter that may appear once appeared more than once."""

    def __init__(self, name: str) -> None:
        super().__init__(f"parameter {name!r} repeated")
        self.name = name


class Params:
    """Parsed parameters: names to their non-empty values, duplicates already refused."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, list[str]] | None = None) -> None:
        self._values = values or {}

    def get(self, name: str) -> str | None:
        """The value of a single-valued parameter, or None when absent (or empty)."""
        values = self._values.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (``resource`` may repeat)."""
        return list(self._values.get(name, ()))

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def names(self) -> set[str]:
        return set(self._values)


def parse_params(data: bytes | str, *, multi: frozenset[str] = MULTI_VALUED) -> Params:
    """``application/x-www-form-urlencoded`` data (a body or a query string) as ``Params``.

    Raises ``ValueError`` (``DuplicateParameter`` for a repeated name) when the data is not
    ASCII, not UTF-8 once percent-decoded, or holds more than ``MAX_FIELDS`` pairs.
    """
    text = data.decode("ascii") if isinstance(data, bytes) else data
    if not text.isascii():
        raise ValueError("not ASCII")
    values: dict[str, list[str]] = {}
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        strict_parsing=False,
        encoding="utf-8",
        errors="strict",
        max_num_fields=MAX_FIELDS,
    )
    for name, value in pairs:
        if value == "":
            continue  # RFC 6749 §3.1: a parameter without a value is treated as omitted
        if name in values and name not in multi:
            raise DuplicateParameter(name)
        values.setdefault(name, []).append(value)
    return Params(values)


@dataclass(slots=True)
class Request:
    """One request to the server, its body already read (never logged: it holds secrets)."""

    method: str
    path: str
    query: bytes = b""
    headers: Headers = field(default_factory=list)
    body: bytes = field(default=b"", repr=False)
    client_ip: str = ""
    request_id: str = "-"
    # What the endpoint learnt, for its log line: client id, grant type, and fingerprints
    # (never values) of the credentials presented.
    log: dict[str, str] = field(default_factory=dict)

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of the header ``name`` (lower-case)."""
        return [value for key, value in self.headers if key == name]

    def header(self, name: bytes) -> bytes | None:
        values = self.header_values(name)
        return values[0] if len(values) == 1 else None

    def form(self) -> Params:
        """The body as a form; ``UnsupportedMediaTypeError`` unless it was sent as one, with
        UTF-8 as its only possible charset; ``ValueError`` when malformed."""
        types = self.header_values(b"content-type")
        if len(types) != 1:
            raise UnsupportedMediaTypeError(
                hint=f"send the parameters as {FORM}", headers={"Accept-Post": FORM}
            )
        main, *params = types[0].decode("latin-1").split(";")
        charset_ok = all(
            p.strip().lower() in ("charset=utf-8", 'charset="utf-8"') for p in params if p.strip()
        )
        if main.strip().lower() != FORM or not charset_ok:
            raise UnsupportedMediaTypeError(
                hint=f"send the parameters as {FORM}", headers={"Accept-Post": FORM}
            )
        return parse_params(self.body)

    def query_params(self) -> Params:
        return parse_params(self.query)

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` when it was sent exactly once."""
        found: list[str] = []
        for header in self.header_values(b"cookie"):
            for item in header.decode("latin-1").split(";"):
                key, sep, value = item.strip().partition("=")
                if sep and key == name:
                    found.append(value)
        return found[0] if len(found) == 1 else None


@dataclass(slots=True)
class Response:
    """What an endpoint answers: status, headers (lower-case names) and body."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    code: str | None = None  # a refusal code for the audit event, if this is one

    def with_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Response:
        self.headers.extend(headers)
        return self


def json_response(
    status: int, document: object, *, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Response:
    """A JSON response, never cached (RFC 6749 §5.1 asks this of token responses)."""
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(
        status,
        [(b"content-type", b"application/json"), *NO_STORE, *headers],
        body,
    )


def redirect(location: str, *, status: int = 303, code: str | None = None) -> Response:
    """A redirect; 303 so that a browser follows a POST with a GET (RFC 9110 §15.4.4).
    ``code``: the refusal code for the audit event when the redirect reports a failure."""
    target = quote(location, safe=_URI_CHARACTERS)  # a registered URI may hold non-ASCII
    return Response(status, [(b"location", target.encode("ascii")), *NO_STORE], code=code)


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, up to ``limit`` bytes; ``PayloadTooLargeError`` past it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(code="bad_request", status=400, hint="the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(hint=f"the authorization server reads at most {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
