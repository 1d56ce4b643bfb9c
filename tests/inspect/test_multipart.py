"""``multipart/form-data`` parsing for inspection (RFC 7578), and what the engine inspects in it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.inspect import InspectionSettings, Inspector
from apishield.inspect.engine import RequestParts
from apishield.inspect.multipart import (
    MAX_PARTS,
    FormPart,
    MultipartError,
    parse_form_data,
)

BOUNDARY = b"b0undary-7Qx"
CONTENT_TYPE = b"multipart/form-data; boundary=" + BOUNDARY


def part(disposition: bytes, data: bytes, *extra: bytes) -> bytes:
    lines = [b"--" + BOUNDARY, b"Content-Disposition: " + disposition, *extra, b"", data]
    return b"\r\n".join(lines) + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


UPLOAD = body(
    part(b'form-data; name="title"', "O'Brien — Zürich".encode()),
    part(
        b'form-data; name="doc"; filename="report (final).pdf"',
        b"\x89PNG\r\n\x1a\n' OR 1=1-- <script>alert(1)</script>\x00\xff",
        b"Content-Type: image/png",
    ),
    part(b'form-data; name="empty"', b""),
)


def test_fields_keep_their_text_and_files_only_their_name() -> None:
    assert parse_form_data(UPLOAD, CONTENT_TYPE) == [
        FormPart("title", None, "O'Brien — Zürich"),
        FormPart("doc", "report (final).pdf", None),
        FormPart("empty", None, ""),
    ]


def test_a_quoted_boundary_and_an_epilogue_are_accepted() -> None:
    content_type = b'multipart/form-data; charset=utf-8; boundary="' + BOUNDARY + b'"'
    parts = parse_form_data(UPLOAD + b"trailing epilogue\r\n", content_type)
    assert [p.name for p in parts] == ["title", "doc", "empty"]


MALFORMED = [
    pytest.param(UPLOAD, b"multipart/form-data", "boundary_missing", id="no-boundary"),
    pytest.param(
        UPLOAD, b"multipart/form-data; boundary=", "boundary_missing", id="empty-boundary"
    ),
    pytest.param(
        UPLOAD,
        b"multipart/form-data; boundary=" + b"x" * 71,
        "boundary_invalid",
        id="long-boundary",
    ),
    pytest.param(UPLOAD[:-40], CONTENT_TYPE, "truncated", id="truncated"),
    pytest.param(UPLOAD[: len(UPLOAD) // 2], CONTENT_TYPE, "truncated", id="cut-in-a-part"),
    pytest.param(b"", CONTENT_TYPE, "truncated", id="empty"),
    pytest.param(b'{"a": 1}', CONTENT_TYPE, "malformed", id="not-multipart"),
    pytest.param(
        b"--" + BOUNDARY + b"\r\nno colon here\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n",
        CONTENT_TYPE,
        "malformed",
        id="broken-header",
    ),
    pytest.param(
        body(b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n"),
        CONTENT_TYPE,
        "disposition_missing",
        id="no-disposition",
    ),
    pytest.param(
        body(part(b'attachment; name="a"', b"x")),
        CONTENT_TYPE,
        "disposition_invalid",
        id="not-form-data",
    ),
    pytest.param(body(part(b"form-data", b"x")), CONTENT_TYPE, "disposition_invalid", id="no-name"),
    pytest.param(
        body(part(b'form-data; name="a"', b"x", b'Content-Disposition: form-data; name="b"')),
        CONTENT_TYPE,
        "disposition_ambiguous",
        id="two-dispositions",
    ),
    pytest.param(
        body(
            part(b'form-data; name="q"', b"JyBPUiAxPTEtLQ==", b"Content-Transfer-Encoding: base64")
        ),
        CONTENT_TYPE,
        "transfer_encoding",
        id="base64-part",
    ),
    pytest.param(
        body(part(b'form-data; name="f"; filename="a.png"; filename*=UTF-8\'\'..%2Fx', b"x")),
        CONTENT_TYPE,
        "extended_parameter",
        id="rfc5987-filename",
    ),
    pytest.param(
        body(part(b'form-data; name="q"; name="other"', b"x")),
        CONTENT_TYPE,
        "disposition_ambiguous",
        id="repeated-name",
    ),
    pytest.param(
        body(part(b'form-data; name="q" trailing', b"x")),
        CONTENT_TYPE,
        "disposition_invalid",
        id="junk-after-parameter",
    ),
    pytest.param(
        body(part(b'form-data; name="f"; filename="shell.php\x00.png"', b"x")),
        CONTENT_TYPE,
        "control_character",
        id="nul-in-filename",
    ),
    pytest.param(
        body(part(b'form-data; name="a\x01b"', b"x")),
        CONTENT_TYPE,
        "control_character",
        id="control-in-name",
    ),
    pytest.param(
        body(part(b'form-data; name="a"', b"x", *[b"X-N: 1"] * 8)),
        CONTENT_TYPE,
        "malformed",
        id="too-many-headers",
    ),
    pytest.param(
        body(part(b'form-data; name="a"; filename="' + b"n" * 2000 + b'"', b"x")),
        CONTENT_TYPE,
        "malformed",
        id="long-header",
    ),
    pytest.param(
        body(*[part(b'form-data; name="a"', b"")] * (MAX_PARTS + 1)),
        CONTENT_TYPE,
        "too_many_parts",
        id="too-many-parts",
    ),
]


@pytest.mark.parametrize(("data", "content_type", "reason"), MALFORMED)
def test_unreadable_bodies_raise_with_a_reason(
    data: bytes, content_type: bytes, reason: str
) -> None:
    with pytest.raises(MultipartError) as info:
        parse_form_data(data, content_type)
    assert info.value.reason == reason


def test_a_semicolon_inside_a_quoted_filename_is_part_of_the_name() -> None:
    data = body(part(b'form-data; name="f"; filename="a; name=b.png"', b"x"))
    assert parse_form_data(data, CONTENT_TYPE) == [FormPart("f", "a; name=b.png", None)]


def test_the_error_message_never_contains_body_bytes() -> None:
    data = body(part(b'form-data; name="f"; filename="secret-7f3a\x00.png"', b"x"))
    with pytest.raises(MultipartError) as info:
        parse_form_data(data, CONTENT_TYPE)
    assert "secret-7f3a" not in str(info.value)


def test_exactly_the_part_limit_is_accepted() -> None:
    data = body(*[part(b'form-data; name="a"', b"1")] * MAX_PARTS)
    assert len(parse_form_data(data, CONTENT_TYPE)) == MAX_PARTS


# -- the engine over the parts -----------------------------------------------------------------

ATTACKS = [
    pytest.param(FormPart("comment", None, "' OR 1=1--"), "sqli", "body.comment", id="sqli-field"),
    pytest.param(
        FormPart("bio", None, "<img src=x onerror=alert(1)>"), "xss", "body.bio", id="xss-field"
    ),
    pytest.param(
        FormPart("host", None, "127.0.0.1; cat /etc/passwd"), "cmdi", "body.host", id="cmdi-field"
    ),
    pytest.param(FormPart("name", None, "{{7*7}}"), "ssti", "body.name", id="ssti-field"),
    pytest.param(
        FormPart("<script>alert(1)</script>", None, "x"),
        "xss",
        "body.<script>alert(1)</script>",
        id="xss-field-name",
    ),
    pytest.param(
        FormPart("user[$ne]", None, "1"), "nosqli", "body.user[$ne]", id="nosqli-field-name"
    ),
    pytest.param(
        FormPart("avatar", "../../etc/passwd", None),
        "traversal",
        "body.avatar.filename",
        id="traversal-filename",
    ),
    pytest.param(
        FormPart("avatar", "..\\..\\windows\\win.ini", None),
        "traversal",
        "body.avatar.filename",
        id="traversal-filename-backslash",
    ),
    pytest.param(
        FormPart("avatar", "<svg onload=alert(1)>.png", None),
        "xss",
        "body.avatar.filename",
        id="xss-filename",
    ),
]


@pytest.mark.parametrize(("form_part", "category", "field"), ATTACKS)
def test_names_texts_and_filenames_are_inspected(
    inspector: Inspector, form_part: FormPart, category: str, field: str
) -> None:
    findings = inspector.inspect(RequestParts(multipart=[form_part]), first_only=False)
    assert findings
    assert findings[0].category == category
    assert findings[0].field == field
    assert findings[0].location == "body"


def test_benign_parts_and_file_contents_raise_nothing(inspector: Inspector) -> None:
    parts = parse_form_data(UPLOAD, CONTENT_TYPE)
    assert inspector.inspect(RequestParts(multipart=parts), first_only=False) == []


def test_exclusions_name_multipart_fields_like_json_fields() -> None:
    settings = InspectionSettings.model_validate(
        {
            "exclude": [
                {"route": "/v2/snippets", "field": "body.sql", "detectors": ["sqli"]},
                {"route": "/v2/snippets", "field": "body.avatar.**"},
            ]
        }
    )
    inspector = Inspector(settings)
    allowed = [
        FormPart("sql", None, "SELECT * FROM t WHERE a = 'x' OR 1=1; --"),
        FormPart("avatar", "../../etc/passwd", None),
    ]
    assert inspector.inspect(RequestParts(multipart=allowed), route="/v2/snippets") == []
    # The same values on another route, and another detector on the excluded field, still count.
    assert inspector.inspect(RequestParts(multipart=allowed), route="/v2/other")
    xss = [FormPart("sql", None, "<script>alert(1)</script>")]
    findings = inspector.inspect(RequestParts(multipart=xss), route="/v2/snippets")
    assert [f.category for f in findings] == ["xss"]


VALID_PIECES = [
    b"--" + BOUNDARY,
    b"--" + BOUNDARY + b"--",
    b"\r\n",
    b'Content-Disposition: form-data; name="a"',
    b'Content-Disposition: form-data; name="f"; filename="x.png"',
    b"Content-Type: text/plain",
    b"Content-Transfer-Encoding: base64",
    b"' OR 1=1--",
    b"\x00",
    b":",
    b'"',
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(VALID_PIECES), st.binary(max_size=12)), min_size=0, max_size=30
    )
)
def test_random_bodies_parse_or_raise_only_multipart_error(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    try:
        parts = parse_form_data(data, CONTENT_TYPE)
    except MultipartError:
        return
    for form_part in parts:
        assert isinstance(form_part.name, str)
        assert (form_part.filename is None) != (form_part.text is None)
