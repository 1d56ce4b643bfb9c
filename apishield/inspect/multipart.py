"""``multipart/form-data`` bodies as the inspection engine needs them (RFC 7578).

:func:`parse_form_data` splits a buffered body into its parts with ``python_multipart``'s
streaming parser and keeps, per part, the field name, the file name (for file parts) and the
text (for fields without a file name). File contents are not kept: the engine does not inspect
them (see :mod:`apishield.pipeline.inspection` for why).

Anything the parser or these rules cannot read with certainty raises :class:`MultipartError`,
and the stage refuses the request: a body that we read one way and the application another is
how inspection is bypassed, so ambiguity fails closed. The rules beyond the parser's own:

- the ``boundary`` parameter is required (RFC 7578 §4.1, RFC 2046 §5.1.1: 1 to 70 characters);
- the body must end with the closing delimiter (a truncated body is refused);
- every part has one ``Content-Disposition: form-data`` with a ``name`` (RFC 7578 §4.2), no
  parameter twice and no RFC 5987 ``filename*``/``name*`` (§4.2 forbids them; the parser
  ignores them while other parsers prefer them, so a ``filename*`` could carry a traversal
  past us to an application that reads it);
- no ``Content-Transfer-Encoding`` other than the identity ones (RFC 7578 §4.7 deprecates it;
  some parsers decode ``base64`` parts, which would hide their text from inspection);
- names and file names hold no control characters: a NUL cuts off the extension a server
  checks (``shell.php\\0.png``, CWE-158), and no legitimate name holds one;
- at most :data:`MAX_PARTS` parts, :data:`MAX_PART_HEADERS` header lines per part and
  :data:`MAX_HEADER_SIZE` bytes per header line, so a body within the route's size limit still
  cannot make the parse costly.

Trust assumption: the body and the ``Content-Type`` come from the client; the body's size has
already been bounded by the content stage (the route's ``body_limit``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from apishield.inspect.decode import decode_utf8

__all__ = [
    "MAX_HEADER_SIZE",
    "MAX_PARTS",
    "MAX_PART_HEADERS",
    "FormPart",
    "MultipartError",
    "parse_form_data",
]

#: Parts per body. Forms have tens of fields; a thousand tiny parts is a parsing workload, not a
#: form (the same default as Starlette's ``max_fields``).
MAX_PARTS = 1000
#: Header lines per part: Content-Disposition, Content-Type and a few more at most.
MAX_PART_HEADERS = 8
#: Bytes per header line; a file name rarely passes 255 bytes.
MAX_HEADER_SIZE = 1024
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
# One disposition parameter: a token name, then a quoted string (with backslash escapes) or a
# bare value. Quoted strings are skipped whole, so a ';' inside a file name is not a parameter.
_PARAM = re.compile(rb'[ \t]*;[ \t]*([^\s=;"]+)[ \t]*=[ \t]*(?:"(?:[^"\\]|\\.)*"|[^;"]*)')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IDENTITY_CODINGS = frozenset({b"7bit", b"8bit", b"binary"})


class MultipartError(ValueError):
    """The body is not a ``multipart/form-data`` body we can read unambiguously.

    ``reason`` is a stable word for logs (``boundary_missing``, ``truncated``,
    ``too_many_parts``...); the message never contains bytes of the body.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part: its field ``name``; ``filename`` for a file part; ``text`` for a field."""

    name: str
    filename: str | None
    text: str | None


def _boundary(content_type: bytes) -> bytes:
    _media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError("boundary_missing", "the Content-Type has no boundary parameter")
    if not _BOUNDARY.match(boundary):
        raise MultipartError("boundary_invalid", "the boundary is not 1 to 70 allowed characters")
    return boundary


def _check_parameters(disposition: bytes) -> None:
    names: set[bytes] = set()
    pos = disposition.find(b";")
    while pos >= 0 and pos < len(disposition):
        match = _PARAM.match(disposition, pos)
        if match is None:
            if disposition[pos:].strip(b" \t;"):
                raise MultipartError("disposition_invalid", "a part's disposition is malformed")
            return
        name = match.group(1).lower()
        if b"*" in name:
            raise MultipartError("extended_parameter", "a part uses an RFC 5987 parameter")
        if name in names:
            raise MultipartError("disposition_ambiguous", "a part repeats a parameter")
        names.add(name)
        pos = match.end()


class _Collector:
    """Receives the parser's callbacks and builds the list of parts."""

    def __init__(self) -> None:
        self.parts: list[FormPart] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.field = bytearray()
        self.value = bytearray()
        self.data = bytearray()
        self.name = ""
        self.filename: str | None = None

    def part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise MultipartError("too_many_parts", f"more than {MAX_PARTS} parts")
        self.headers.clear()
        self.data.clear()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers.append((bytes(self.field).strip().lower(), bytes(self.value).strip()))
        self.field.clear()
        self.value.clear()

    def headers_finished(self) -> None:
        disposition: bytes | None = None
        for name, value in self.headers:
            if name == b"content-disposition":
                if disposition is not None:
                    raise MultipartError("disposition_ambiguous", "a part has two dispositions")
                disposition = value
            elif name == b"content-transfer-encoding" and value.lower() not in _IDENTITY_CODINGS:
                raise MultipartError("transfer_encoding", "a part has a Content-Transfer-Encoding")
        if disposition is None:
            raise MultipartError("disposition_missing", "a part has no Content-Disposition")
        _check_parameters(disposition)
        kind, options = parse_options_header(disposition)
        field_name = options.get(b"name")
        if kind != b"form-data" or field_name is None:
            raise MultipartError("disposition_invalid", "a part is not form-data with a name")
        self.name = decode_utf8(field_name)
        filename = options.get(b"filename")
        self.filename = None if filename is None else decode_utf8(filename)
        if _CONTROL.search(self.name) or (self.filename and _CONTROL.search(self.filename)):
            raise MultipartError("control_character", "a name holds a control character")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.filename is None:  # file contents are not inspected: do not copy them
            self.data += data[start:end]

    def part_end(self) -> None:
        text = None if self.filename is not None else decode_utf8(bytes(self.data))
        self.parts.append(FormPart(self.name, self.filename, text))


def parse_form_data(body: bytes, content_type: bytes) -> list[FormPart]:
    """The parts of a ``multipart/form-data`` ``body`` sent with ``content_type`` (RFC 7578).

    Raises :class:`MultipartError` when the body cannot be read unambiguously (module docstring).
    """
    collector = _Collector()
    try:
        parser = MultipartParser(
            _boundary(content_type),
            {
                "on_part_begin": collector.part_begin,
                "on_part_data": collector.part_data,
                "on_part_end": collector.part_end,
                "on_header_field": collector.header_field,
                "on_header_value": collector.header_value,
                "on_header_end": collector.header_end,
                "on_headers_finished": collector.headers_finished,
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_HEADER_SIZE,
        )
        written = parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise MultipartError("malformed", "the body is not valid multipart/form-data") from exc
    # The parser does not check that the closing delimiter arrived (its finalize() is a no-op).
    if written != len(body) or parser.state != MultipartState.END:
        raise MultipartError("truncated", "the body ends before the closing boundary")
    return collector.parts
