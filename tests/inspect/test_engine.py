"""The engine over whole requests: every location, field names, exclusions, paranoia levels."""

from __future__ import annotations

import pytest

from apishield.inspect import Finding, InspectionSettings, Inspector, RequestParts

HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"),
    (b"accept", b"application/json, text/plain, */*"),
    (b"cookie", b"session=abc.def; theme=dark"),
]

LOCATIONS = [
    pytest.param(
        RequestParts(path_params={"item_id": "1 or 1=1"}), "path", "path.item_id", id="path"
    ),
    pytest.param(
        RequestParts(query=b"q=%27+or+%27a%27%3D%27a"), "query", "query.q", id="query-plus"
    ),
    pytest.param(
        RequestParts(query=b"a%27+or+1%3D1--=x"), "query", "query.a' or 1=1--", id="query-name"
    ),
    pytest.param(
        RequestParts(headers=[*HEADERS, (b"x-custom", b"' or 1=1--")]),
        "header",
        "header.x-custom",
        id="custom-header",
    ),
    pytest.param(
        RequestParts(headers=[(b"user-agent", b"() { :;}; /bin/bash -c id")]),
        "header",
        "header.user-agent",
        id="user-agent",
    ),
    pytest.param(
        RequestParts(headers=[(b"referer", b"https://x.example/?q=<script>alert(1)</script>")]),
        "header",
        "header.referer",
        id="referer",
    ),
    pytest.param(
        RequestParts(headers=[(b"cookie", b"a=1; pref=%3Cscript%3E")]),
        "cookie",
        "cookie.pref",
        id="cookie",
    ),
    pytest.param(
        RequestParts(json={"items": [{"note": "{{7*7}}"}]}), "body", "body.items.0.note", id="json"
    ),
    pytest.param(RequestParts(json={"$where": "1"}), "body", "body.$where", id="json-key"),
    pytest.param(
        RequestParts(form=b"name=x&bio=%3Csvg+onload%3Dalert(1)%3E"), "body", "body.bio", id="form"
    ),
    pytest.param(
        RequestParts(text_body='{"a": "../../etc/passwd"'), "body", "body", id="unparsed-json"
    ),
]


@pytest.mark.parametrize(("parts", "location", "field"), LOCATIONS)
def test_every_location_is_inspected(
    inspector: Inspector, parts: RequestParts, location: str, field: str
) -> None:
    findings = inspector.inspect(parts)
    assert findings, "nothing found"
    assert (findings[0].location, findings[0].field) == (location, field)


def test_a_clean_request_has_no_findings(inspector: Inspector) -> None:
    parts = RequestParts(
        path_params={"item_id": "42"},
        query=b"page=2&sort=-created_at&q=men%27s+shoes",
        headers=HEADERS,
        json={"name": "O'Brien", "note": "Please select a size", "tags": ["a", "b"], "n": 3},
    )
    assert inspector.inspect(parts) == []


def test_credentials_are_not_inspected(inspector: Inspector) -> None:
    parts = RequestParts(headers=[(b"authorization", b"Basic ' or 1=1--")])
    assert inspector.inspect(parts) == []


def test_finding_names_the_code_not_the_value(inspector: Inspector) -> None:
    (finding,) = inspector.inspect(RequestParts(query=b"file=../../etc/passwd"))
    assert finding == Finding("traversal", "query", "query.file", finding.score)
    assert finding.code == "path_traversal_detected"
    assert "passwd" not in repr(finding)


def test_report_collects_every_finding() -> None:
    inspector = Inspector()
    parts = RequestParts(query=b"a=%3Cscript%3E&b=;id", json={"c": "{{7*7}}"})
    assert len(inspector.inspect(parts, first_only=True)) == 1
    findings = inspector.inspect(parts, first_only=False)
    assert {f.category for f in findings} == {"xss", "cmdi", "ssti"}
    assert [f.score for f in findings] == sorted((f.score for f in findings), reverse=True)


EXCLUDE = InspectionSettings(
    exclude=[
        {"route": "/v2/snippets", "field": "body.snippet", "detectors": ["sqli"]},
        {"route": "/v2/pages", "field": "body.blocks.*.html"},
        {"field": "header.x-debug-query", "detectors": ["sqli"]},
        {"route": "/v2/search", "field": "body.filter.**", "detectors": ["nosqli"]},
    ]
)
SQL = "SELECT * FROM t WHERE a = 'x' OR 1=1; DROP TABLE t;--"


def test_exclusion_is_per_route_field_and_detector() -> None:
    inspector = Inspector(EXCLUDE)
    assert inspector.inspect(RequestParts(json={"snippet": SQL}), route="/v2/snippets") == []
    # same field, other route
    assert inspector.inspect(RequestParts(json={"snippet": SQL}), route="/v2/items")
    # same route, other field
    assert inspector.inspect(RequestParts(json={"title": SQL}), route="/v2/snippets")
    # same route and field, other detector
    findings = inspector.inspect(
        RequestParts(json={"snippet": "<script>alert(1)</script>"}), route="/v2/snippets"
    )
    assert [f.category for f in findings] == ["xss"]


def test_exclusion_patterns() -> None:
    inspector = Inspector(EXCLUDE)
    page = {"blocks": [{"html": "<iframe src=https://video.example/1>"}]}
    assert inspector.inspect(RequestParts(json=page), route="/v2/pages") == []
    nested = {"filter": {"price": {"$lt": 10}}}
    assert inspector.inspect(RequestParts(json=nested), route="/v2/search") == []
    header = RequestParts(headers=[(b"x-debug-query", SQL.encode())])
    assert inspector.inspect(header, route="/anything") == []


@pytest.mark.parametrize(
    ("paranoia", "found"),
    [pytest.param(1, False, id="level-1"), pytest.param(2, True, id="level-2")],
)
def test_paranoia_levels(paranoia: int, found: bool) -> None:
    inspector = Inspector(InspectionSettings(paranoia=paranoia))  # type: ignore[arg-type]
    # One "../" to a harmless file: medium evidence, refused from level 2 on.
    assert bool(inspector.inspect(RequestParts(query=b"f=../sibling.txt"))) is found


def test_detectors_can_be_switched_off() -> None:
    inspector = Inspector(InspectionSettings(detectors=["sqli"]))
    assert inspector.inspect(RequestParts(query=b"q=<script>")) == []
    assert inspector.inspect(RequestParts(query=b"q=1+or+1%3D1"))


# -- the whole request screened at once gives what value-by-value scoring gives --------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from apishield.inspect.engine import score_nosqli_key  # noqa: E402
from tests.inspect.test_screen import CORPUS_VALUES  # noqa: E402

PARANOID = Inspector(InspectionSettings(paranoia=3))


def one_by_one(values: list[tuple[str, str, str, bool]]) -> set[tuple[str, str, str, int]]:
    expected = set()
    for location, field, value, is_key in values:
        scored = PARANOID.score_value(value)
        if is_key and "$" in value and (score := score_nosqli_key(value)) >= 30:
            scored.append(("nosqli", score))
        expected |= {(category, location, field, score) for category, score in scored}
    return expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(CORPUS_VALUES), min_size=1, max_size=8),
    st.lists(st.sampled_from(CORPUS_VALUES), min_size=1, max_size=8),
    st.sampled_from(CORPUS_VALUES),
    st.sampled_from(CORPUS_VALUES),
)
def test_a_request_screened_at_once_scores_like_its_values_one_by_one(
    body: list[str], items: list[str], key: str, header: str
) -> None:
    document = {
        "plain": "word",
        "n": 1,
        "flag": True,
        "text": body[0],
        key: {"inner": body},
        "items": [{"name": value, "qty": 2} for value in items],
    }
    parts = RequestParts(headers=[(b"x-note", header.encode("utf-8"))], query=b"q=1", json=document)
    values = [("header", "header.x-note", header, False), ("body", "body.text", body[0], False)]
    values.append(("body", f"body.{key}", key, True))
    values += [("body", f"body.{key}.inner.{i}", value, False) for i, value in enumerate(body)]
    values += [("body", f"body.items.{i}.name", value, False) for i, value in enumerate(items)]
    got = {
        (f.category, f.location, f.field, f.score)
        for f in PARANOID.inspect(parts, first_only=False)
    }
    assert got == one_by_one(values)


def test_fields_of_values_in_nested_json() -> None:
    document = {
        "customer": {"name": "Anna", "note": "' or 1=1--"},
        "items": [{"sku": "A-1"}, "<script>alert(1)</script>", {"$where": "sleep(1)"}],
        "tags": ["x", ["../../etc/passwd"]],
    }
    found = {
        (f.field, f.category)
        for f in PARANOID.inspect(RequestParts(json=document), first_only=False)
    }
    assert ("body.customer.note", "sqli") in found
    assert ("body.items.1", "xss") in found
    assert ("body.items.2.$where", "nosqli") in found
    assert ("body.tags.1.0", "traversal") in found


def test_repeated_header_values_are_remembered_and_attacks_still_found() -> None:
    inspector = Inspector(InspectionSettings())
    benign = [(b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"), (b"cookie", b"theme=dark; a=b")]
    attack = (b"x-trace", b"' or 1=1--")
    assert inspector.inspect(RequestParts(headers=benign)) == []
    assert inspector.inspect(RequestParts(headers=benign)) == []  # from the cache now
    for _ in range(2):  # an attack in a header is found again, not remembered as clean
        found = inspector.inspect(RequestParts(headers=[*benign, attack]))
        assert [(f.field, f.category) for f in found] == [("header.x-trace", "sqli")]
    found = inspector.inspect(RequestParts(headers=benign, query=b"q=%3Cscript%3E"))
    assert [f.field for f in found] == ["query.q"]
