"""The inspection engine: every value of a request through every detector, as a pure function.

The engine takes the parts of a request as plain values (path parameters, the raw query string,
headers, the parsed JSON body, a form body) and returns :class:`Finding` objects; it does no
I/O and knows nothing of ASGI. The pipeline stage (``apishield.pipeline.inspection``) turns a
finding into a refusal or a report.

Cost is kept near zero for ordinary values: a value of letters and digits only is skipped;
any other value is decoded once (:func:`~apishield.inspect.decode.canonical`) and reduced to its
special characters and words, from which a screen per detector
(:mod:`apishield.inspect.screen`) decides whether that detector can score it at all. A
User-Agent holds ``(;)`` but no command name after the ``;``, no quote and no SQL keyword, so
no detector runs on it.

Scores run from 0 to 100. The paranoia level sets the score that counts as a finding: 70 at
level 1 (strong evidence only), 50 at level 2, 30 at level 3. (The same idea as OWASP CRS's
paranoia levels, with apishield's own scores.)

Trust assumption: everything in :class:`RequestParts` comes from the client. Each detector is
linear in the size of a value, so a request costs time linear in its size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from apishield.inspect.cmdi import score_cmdi
from apishield.inspect.decode import canonical, decode_utf8, percent_decode
from apishield.inspect.multipart import FormPart
from apishield.inspect.nosqli import score_nosqli, score_nosqli_key
from apishield.inspect.screen import ascii_form, candidates
from apishield.inspect.settings import DETECTORS, DetectorName, InspectionSettings
from apishield.inspect.sqli import score_sqli
from apishield.inspect.ssti import score_ssti
from apishield.inspect.traversal import score_traversal
from apishield.inspect.xss import score_xss

__all__ = [
    "CODES",
    "THRESHOLDS",
    "Finding",
    "Inspector",
    "RequestParts",
    "parse_cookies",
    "parse_form",
]

THRESHOLDS = {1: 70, 2: 50, 3: 30}
CACHE_ENTRIES = 4096
CACHE_VALUE_LIMIT = 1024
CODES: dict[DetectorName, str] = {
    "sqli": "sqli_detected",
    "nosqli": "nosqli_detected",
    "cmdi": "cmdi_detected",
    "xss": "xss_detected",
    "traversal": "path_traversal_detected",
    "ssti": "ssti_detected",
}
#: Headers never inspected: credentials (opaque tokens, checked by authentication), the cookie
#: header (inspected cookie by cookie instead) and framing that earlier stages validate.
SKIPPED_HEADERS = frozenset(
    {
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"te",
        b"upgrade",
    }
)

_ENCODED = re.compile(r"[%&\x00\\]")
_WORDLIKE = re.compile(r"\w*", re.ASCII)


@dataclass(frozen=True, slots=True)
class Finding:
    """A value that a detector scored at or above the paranoia threshold.

    ``field`` names where the value was (``query.q``, ``body.items.0.name``,
    ``header.user-agent``); the value itself is never kept, so a finding can be logged.
    """

    category: DetectorName
    location: str
    field: str
    score: int

    @property
    def code(self) -> str:
        """The refusal code: ``sqli_detected``, ``path_traversal_detected``..."""
        return CODES[self.category]


_MISSING = object()
_NOTHING: frozenset[DetectorName] = frozenset()


@dataclass(frozen=True, slots=True)
class RequestParts:
    """The parts of a request the engine inspects, as the pipeline has them.

    ``json`` is the parsed JSON body (absent when there is none); ``form`` the raw
    ``application/x-www-form-urlencoded`` body; ``multipart`` the parts of a
    ``multipart/form-data`` body (:func:`~apishield.inspect.multipart.parse_form_data`): each
    name, each file name (as ``body.<name>.filename``) and the text of each field without a file
    name; ``text_body`` a body that should have been JSON but could not be parsed (inspected as
    one value rather than not at all).
    """

    path_params: Mapping[str, str] = field(default_factory=dict)
    query: bytes = b""
    headers: Sequence[tuple[bytes, bytes]] = ()
    json: object = _MISSING
    form: bytes | None = None
    multipart: Sequence[FormPart] = ()
    text_body: str | None = None


def _decode_bytes(data: bytes, *, plus: bool) -> str:
    if plus and data.find(b"+") >= 0:
        data = data.replace(b"+", b" ")
    return decode_utf8(percent_decode(data))


def parse_form(data: bytes) -> list[tuple[str, str]]:
    """Name/value pairs of a query string or form body, ``+`` and ``%XX`` decoded once.

    Unlike ``urllib.parse.parse_qsl`` nothing is dropped: empty values and names without
    ``=`` are kept, since an injection can sit in either.
    """
    pairs: list[tuple[str, str]] = []
    for chunk in data.split(b"&"):
        if not chunk:
            continue
        name, _, value = chunk.partition(b"=")
        pairs.append((_decode_bytes(name, plus=True), _decode_bytes(value, plus=True)))
    return pairs


def parse_cookies(header: str) -> list[tuple[str, str]]:
    """Cookie names and values from a ``Cookie`` header (RFC 6265 §5.4), quotes removed."""
    pairs: list[tuple[str, str]] = []
    for chunk in header.split(";"):
        name, sep, value = chunk.strip().partition("=")
        if not sep and not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        pairs.append((name.strip(), value))
    return pairs


def _plain_word(value: str) -> bool:
    """One word of ``[A-Za-z0-9_]`` (or nothing): no detector can score it (test_screen.py)."""
    # isidentifier() is a C-level test that settles snake_case keys without the regex.
    return value.isascii() and (
        value.isalnum() or value.isidentifier() or _WORDLIKE.fullmatch(value) is not None
    )


def _walk_json(document: object) -> Iterator[tuple[str, str | int | None, str, bool]]:
    """(parent path, key or index, string, is_key) for the keys and strings of a JSON document.

    The field of a value is ``f"{parent}.{key}"`` (or ``parent`` when the key is ``None``); it is
    left to the caller to build, since only values with a finding, or routes with exclusions,
    need it. Keys and strings that are one plain word are left out: they are most of a typical
    body and no detector can score them. Iterative, so a deep document cannot exhaust the stack.
    """
    # The plain-word test is written out here rather than calling _plain_word: this loop runs
    # once per key and string of the body, and the call was a tenth of the cost of inspecting a
    # typical JSON request (callgrind, bench/inspection_cost.py).
    wordlike = _WORDLIKE.fullmatch
    stack: list[tuple[object, str]] = [(document, "body")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                key = str(key)
                if not (
                    key.isascii()
                    and (key.isalnum() or key.isidentifier() or wordlike(key) is not None)
                ):
                    yield path, key, key, True
                if isinstance(child, str):
                    if not (
                        child.isascii()
                        and (child.isalnum() or child.isidentifier() or wordlike(child) is not None)
                    ):
                        yield path, key, child, False
                elif isinstance(child, (dict, list)):
                    stack.append((child, f"{path}.{key}"))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, str):
                    if not _plain_word(child):
                        yield path, index, child, False
                elif isinstance(child, (dict, list)):
                    stack.append((child, f"{path}.{index}"))
        elif isinstance(node, str) and not _plain_word(node):
            yield path, None, node, False


class _FieldRule:
    __slots__ = ("parts", "rest", "detectors")

    def __init__(self, pattern: str | None, detectors: frozenset[DetectorName]) -> None:
        parts = pattern.split(".") if pattern else []
        self.rest = bool(parts) and parts[-1] == "**"
        self.parts = parts[:-1] if self.rest else parts
        self.detectors = detectors

    def matches(self, field_name: str) -> bool:
        if not self.parts and not self.rest:
            return True  # no field: every field of the route
        names = field_name.split(".")
        if self.rest:
            if len(names) < len(self.parts):
                return False
            names = names[: len(self.parts)]
        elif len(names) != len(self.parts):
            return False
        return all(p == "*" or p == n for p, n in zip(self.parts, names, strict=True))


_Detector = Callable[[str, bool], int]


def _run_sqli(value: str, _nul: bool) -> int:
    return score_sqli(value)


def _run_nosqli(value: str, _nul: bool) -> int:
    return score_nosqli(value)


def _run_cmdi(value: str, _nul: bool) -> int:
    return score_cmdi(value)


def _run_xss(value: str, _nul: bool) -> int:
    return score_xss(value)


def _run_ssti(value: str, _nul: bool) -> int:
    return score_ssti(value)


_RUNNERS: dict[DetectorName, _Detector] = {
    "sqli": _run_sqli,
    "nosqli": _run_nosqli,
    "cmdi": _run_cmdi,
    "xss": _run_xss,
    "traversal": score_traversal,
    "ssti": _run_ssti,
}


class Inspector:
    """Detectors, threshold and exclusions compiled from :class:`InspectionSettings` once."""

    def __init__(self, settings: InspectionSettings | None = None) -> None:
        settings = settings or InspectionSettings()
        self.settings = settings
        self.threshold = THRESHOLDS[settings.paranoia]
        enabled = [d for d in DETECTORS if d in settings.detectors]
        self.detectors: tuple[tuple[DetectorName, _Detector], ...] = tuple(
            (name, _RUNNERS[name]) for name in enabled
        )
        self.enabled = frozenset(enabled)
        self.nosqli_on = "nosqli" in enabled
        # Header and cookie values repeat across requests (the same client sends the same
        # User-Agent, Accept, Referer, session cookie): their scores are kept, keyed by the
        # exact value. Scoring is a pure function of the value, so this changes no outcome;
        # the dict is bounded and simply emptied when full.
        self._cache: dict[str, list[tuple[DetectorName, int]]] = {}
        self._global: list[_FieldRule] = []
        self._by_route: dict[str, list[_FieldRule]] = {}
        for exclusion in settings.exclude:
            rule = _FieldRule(
                exclusion.field,
                frozenset(exclusion.detectors if exclusion.detectors else DETECTORS),
            )
            if exclusion.route is None:
                self._global.append(rule)
            else:
                self._by_route.setdefault(exclusion.route, []).append(rule)

    def clear_cache(self) -> None:
        """Forget the scores kept for header and cookie values (benchmarks measure both)."""
        self._cache.clear()

    # -- single values ------------------------------------------------------------------------

    def score_value(
        self, raw: str, *, plus: bool = False, skip: frozenset[DetectorName] = frozenset()
    ) -> list[tuple[DetectorName, int]]:
        """Every detector's score for one value that reaches the threshold, best first."""
        if _plain_word(raw):
            return []  # one word of [A-Za-z0-9_]: no detector can score it
        return self._scores(raw, plus, skip)

    def _scores(
        self, raw: str, plus: bool, skip: frozenset[DetectorName]
    ) -> list[tuple[DetectorName, int]]:
        # score_value for a value already known not to be one plain word.
        if raw.isascii():
            if _ENCODED.search(raw) or (plus and "+" in raw):
                value, nul = canonical(raw, plus=plus)
            else:
                value, nul = raw, False
        else:
            value, nul = canonical(raw, plus=plus)
        found: list[tuple[DetectorName, int]] = []
        threshold = self.threshold
        # Screening "Zürich" rather than running all six detectors on it: POST cold of
        # bench/inspection_cost.py 1.25M -> 1.22M instructions per request (callgrind).
        screened = value if value.isascii() else ascii_form(value)
        if screened is not None:
            # The screens skip the detectors that cannot score this value; a removed NUL byte is
            # evidence for the traversal detector whatever the rest of the value holds.
            names = candidates(screened)
            if nul and "traversal" not in names:
                names.append("traversal")
            if not names:
                return found
            for name in names:
                if name in self.enabled and name not in skip:
                    score = _RUNNERS[name](value, nul)
                    if score >= threshold:
                        found.append((name, score))
        else:
            for name, run in self.detectors:
                if name not in skip:
                    score = run(value, nul)
                    if score >= threshold:
                        found.append((name, score))
        if len(found) > 1:
            found.sort(key=lambda item: -item[1])
        return found

    # -- whole requests -----------------------------------------------------------------------

    def _rules_for(self, route: str | None) -> list[_FieldRule]:
        if route is None:
            return self._global
        return self._global + self._by_route.get(route, [])

    def inspect(
        self, parts: RequestParts, *, route: str | None = None, first_only: bool = True
    ) -> list[Finding]:
        """Findings for the request, worst first; with ``first_only``, stop at the first one.

        ``route`` is the matched policy route template, for the exclusions that name one.
        """
        rules = self._rules_for(route)
        findings: list[Finding] = []
        cache = self._cache
        for location, prefix, name, value, is_key in self._values(parts):
            field_name = None
            skip: frozenset[DetectorName] = _NOTHING
            if rules:
                field_name = prefix if name is None else f"{prefix}.{name}"
                skip = frozenset(
                    d for rule in rules if rule.matches(field_name) for d in rule.detectors
                )
            if not skip and (location == "header" or location == "cookie"):
                scored = cache.get(value)
                if scored is None:
                    scored = self._scores(value, False, _NOTHING)
                    if len(value) <= CACHE_VALUE_LIMIT:
                        if len(cache) >= CACHE_ENTRIES:
                            cache.clear()
                        cache[value] = scored
            elif is_key:
                scored = self._score_key(value, skip)
            else:
                scored = self._scores(value, False, skip)
            if scored:
                if field_name is None:
                    field_name = prefix if name is None else f"{prefix}.{name}"
                for category, score in scored:
                    findings.append(Finding(category, location, field_name, score))
                    if first_only:
                        return findings
        findings.sort(key=lambda f: -f.score)
        return findings

    def _score_key(
        self, value: str, skip: frozenset[DetectorName]
    ) -> list[tuple[DetectorName, int]]:
        found: list[tuple[DetectorName, int]] = []
        if self.nosqli_on and "$" in value and "nosqli" not in skip:
            score = score_nosqli_key(value)
            if score >= self.threshold:
                found.append(("nosqli", score))
        found.extend(self._scores(value, False, skip))
        return found

    def _values(
        self, parts: RequestParts
    ) -> Iterator[tuple[str, str, str | int | None, str, bool]]:
        """(location, prefix, name, value, is-a-key) for every value of the request that is not
        one plain word; the value's field is ``prefix.name`` (``prefix`` when name is ``None``).
        """
        plain = _plain_word
        for name, value in parts.path_params.items():
            if not plain(value):
                yield "path", "path", name, value, False
        if parts.query:
            for name, value in parse_form(parts.query):
                if not plain(name):
                    yield "query", "query", name, name, True
                if not plain(value):
                    yield "query", "query", name, value, False
        for raw_name, raw_value in parts.headers:
            if raw_name in SKIPPED_HEADERS:
                if raw_name == b"cookie":
                    for name, value in parse_cookies(decode_utf8(raw_value)):
                        if not plain(value):
                            yield "cookie", "cookie", name, value, False
                continue
            text = decode_utf8(raw_value)
            if not plain(text):
                yield "header", "header", raw_name.decode("latin-1").lower(), text, False
        if parts.json is not _MISSING:
            for path, key, value, is_key in _walk_json(parts.json):
                yield "body", path, key, value, is_key
        if parts.form:
            for name, value in parse_form(parts.form):
                if not plain(name):
                    yield "body", "body", name, name, True
                if not plain(value):
                    yield "body", "body", name, value, False
        for part in parts.multipart:
            # Values as the application reads them: multipart text is not percent-encoded, but
            # canonical decoding still applies (an app or a later layer may decode it again).
            if not plain(part.name):
                yield "body", "body", part.name, part.name, True
            if part.text is not None and not plain(part.text):
                yield "body", "body", part.name, part.text, False
            if part.filename is not None and not plain(part.filename):
                yield "body", "body", f"{part.name}.filename", part.filename, False
        if parts.text_body is not None and not plain(parts.text_body):
            yield "body", "body", None, parts.text_body, False
