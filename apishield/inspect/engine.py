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
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from apishield.inspect.cmdi import score_cmdi
from apishield.inspect.decode import (
    ENCODING_CHARS,
    NOT_A_REFERENCE,
    canonical,
    decode_utf8,
    percent_decode,
)
from apishield.inspect.multipart import FormPart
from apishield.inspect.nosqli import score_nosqli, score_nosqli_key
from apishield.inspect.screen import ascii_form, candidates, request_screen, value_starts
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

_ENCODED = re.compile("[" + re.escape(ENCODING_CHARS) + "]")
# "&" followed by one of these needs no decoding; the probe's separator ends a value.
_NOT_ENTITY = NOT_A_REFERENCE | {"\x01"}
# Joins the values for the search of ENCODING_CHARS: ASCII, and not one of them.
_PROBE_SEPARATOR = "\x01"
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


Origin = tuple[str, str, "str | int | None", bool]
#: A JSON container whose keys and strings start at an index of the collected values: (that
#: index, its path, the container, whether its keys were collected).
_Mark = tuple[int, str, object, bool]
_SCALARS = frozenset({int, float, bool, type(None)})


def _walk_json(document: object, values: list[str], marks: list[_Mark]) -> None:
    """Append the keys and strings of a JSON document to ``values``, container by container,
    and one mark per container, from which :func:`_json_origins` finds where a value was.

    Origins are worked out afterwards, only for the values a screen picks: building one per
    key and string cost more than screening them all (callgrind, bench/inspection_cost.py).
    Iterative, so a deep document cannot exhaust the stack.
    """
    stack: list[tuple[object, str]] = [(document, "body")]
    add = values.append
    push = stack.append
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            # Keys that are all plain words (most are) are left out with one test for all.
            try:
                keys = "".join(node)
            except TypeError:  # a key that is not a string, from a caller's own document
                keys = "-"
            with_keys = not (keys.isascii() and ("k" + keys).isidentifier())
            marks.append((len(values), path, node, with_keys))
            if with_keys:
                values.extend(node)  # str from a JSON parser (inspect() fixes others)
            for key, child in node.items():
                kind = type(child)
                if kind is str:
                    add(child)
                elif kind is dict or kind is list:
                    push((child, f"{path}.{key}"))
                elif kind not in _SCALARS:  # subclasses, from a caller's own document
                    if isinstance(child, str):
                        add(child)
                    elif isinstance(child, (dict, list)):
                        push((child, f"{path}.{key}"))
        elif isinstance(node, list):
            marks.append((len(values), path, node, False))
            for index, child in enumerate(node):
                kind = type(child)
                if kind is str:
                    add(child)
                elif kind is dict or kind is list:
                    push((child, f"{path}.{index}"))
                elif kind not in _SCALARS:
                    if isinstance(child, str):
                        add(child)
                    elif isinstance(child, (dict, list)):
                        push((child, f"{path}.{index}"))
        elif isinstance(node, str):
            marks.append((len(values), path, node, False))
            add(node)


def _json_origins(mark: _Mark) -> list[Origin]:
    """(location, parent path, key or index, is-a-key) of each value ``mark``'s container
    added, in the order :func:`_walk_json` added them."""
    _, path, node, with_keys = mark
    if isinstance(node, dict):
        found: list[Origin] = []
        if with_keys:
            found += [("body", path, key, True) for key in node]
        found += [
            ("body", path, key, False) for key, child in node.items() if isinstance(child, str)
        ]
        return found
    if isinstance(node, list):
        return [
            ("body", path, index, False)
            for index, child in enumerate(node)
            if isinstance(child, str)
        ]
    return [("body", path, None, False)]


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
        if raw.isascii() and not _ENCODED.search(raw) and not (plus and "+" in raw):
            return self._detect(raw, False, raw, skip)
        value, nul = canonical(raw, plus=plus)
        return self._detect(value, nul, value if value.isascii() else ascii_form(value), skip)

    def _detect(
        self, value: str, nul: bool, form: str | None, skip: frozenset[DetectorName]
    ) -> list[tuple[DetectorName, int]]:
        """Scores of the canonical ``value`` that reach the threshold, best first.

        ``form`` is its :func:`~apishield.inspect.screen.ascii_form` (``None``: it cannot be
        screened, and every detector runs); ``nul``, whether decoding removed a NUL byte.
        """
        found: list[tuple[DetectorName, int]] = []
        threshold = self.threshold
        if form is not None:
            # The screens skip the detectors that cannot score this value; a removed NUL byte is
            # evidence for the traversal detector whatever the rest of the value holds.
            names = candidates(form)
            if nul and "traversal" not in names:
                names.append("traversal")
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

    def _remember_clean(self, fresh: list[int], values: list[str], picked: list[int]) -> None:
        """Cache, as scoring nothing, the fresh header and cookie values no screen picked."""
        cache = self._cache
        chosen = set(picked)
        for i in fresh:
            raw = values[i]
            if i not in chosen and len(raw) <= CACHE_VALUE_LIMIT:
                if len(cache) >= CACHE_ENTRIES:
                    cache.clear()
                cache[raw] = []

    def _rules_for(self, route: str | None) -> list[_FieldRule]:
        if route is None:
            return self._global
        return self._global + self._by_route.get(route, [])

    def inspect(
        self, parts: RequestParts, *, route: str | None = None, first_only: bool = True
    ) -> list[Finding]:
        """Findings for the request, worst first; with ``first_only``, stop at the first one.

        ``route`` is the matched policy route template, for the exclusions that name one.

        The values are decoded and screened together (:func:`~apishield.inspect.screen.
        request_screen`); only those a screen picks, those that lost a NUL byte in decoding and
        those the screens cannot read go on, one by one, to their candidate detectors.
        """
        values, origins, marks, headers = _collect(parts)
        if not values:
            return []
        # Header and cookie values repeat across a client's requests: one known to score
        # nothing at any detector (the cache holds an empty list for it) is left out of the
        # screen, as an empty value; the others are remembered once screened.
        cache = self._cache
        fresh: list[int] = []
        first, end = headers
        if cache:
            for i in range(first, end):
                scores = cache.get(values[i])
                if scores is None:
                    fresh.append(i)
                elif not scores:
                    values[i] = ""
        else:
            fresh = list(range(first, end))
        try:
            probe = _PROBE_SEPARATOR.join(values)
        except TypeError:  # a JSON key that is not a string, from a caller's own document
            values = [value if isinstance(value, str) else str(value) for value in values]
            probe = _PROBE_SEPARATOR.join(values)
        canon: list[str] = values
        forms: list[str] = values
        nul_at: set[int] = set()
        unscreened: set[int] = set()
        # Which values need canonical decoding: the non-ASCII ones, and those holding one of
        # _ENCODED's characters, found with one C-level search per character (a regex over
        # the joined values cost ten times more, measured with callgrind).
        need: set[int] = set()
        if not probe.isascii():
            need.update(i for i, value in enumerate(values) if not value.isascii())
        starts: list[int] | None = None
        for char in ENCODING_CHARS:
            pos = probe.find(char)
            if pos >= 0:
                if starts is None:
                    starts = value_starts(values)
                count = len(starts)
                while pos >= 0:
                    if char == "&" and probe[pos + 1 : pos + 2] in _NOT_ENTITY:
                        # "Tom & Anna": no character reference starts with a space (or ends
                        # the value), so html.unescape would leave it as it is.
                        pos = probe.find(char, pos + 1)
                        continue
                    index = bisect_right(starts, pos) - 1
                    need.add(index)
                    pos = probe.find(char, starts[index + 1]) if index + 1 < count else -1
        if need:
            canon = list(values)
            forms = list(values)
            for index in need:
                value, nul = canonical(values[index])
                canon[index] = value
                if nul:
                    nul_at.add(index)
                form = value if value.isascii() else ascii_form(value)
                if form is None:
                    unscreened.add(index)
                    forms[index] = ""
                else:
                    forms[index] = form
        picked = request_screen(forms)
        if nul_at or unscreened:
            picked = sorted(set(picked) | nul_at | unscreened)
        if fresh:
            self._remember_clean(fresh, values, picked)
        if not picked:
            return []
        rules = self._rules_for(route)
        findings: list[Finding] = []
        json_start = len(origins)
        mark_starts = [mark[0] for mark in marks]
        # The origins of a JSON container's values, worked out once for all its picked values
        # (one at a time made a body of many picked values quadratic).
        known: dict[int, list[Origin]] = {}
        for i in picked:
            raw = values[i]
            if _plain_word(raw):
                continue  # one plain word: no detector can score it (test_screen.py)
            if i < json_start:
                location, prefix, name, is_key = origins[i]
            else:
                at = bisect_right(mark_starts, i) - 1
                container = known.get(at)
                if container is None:
                    container = known[at] = _json_origins(marks[at])
                location, prefix, name, is_key = container[i - marks[at][0]]
            field_name = None
            skip: frozenset[DetectorName] = _NOTHING
            if rules:
                field_name = prefix if name is None else f"{prefix}.{name}"
                skip = frozenset(
                    d for rule in rules if rule.matches(field_name) for d in rule.detectors
                )
            form = None if i in unscreened else forms[i]
            if not skip and (location == "header" or location == "cookie"):
                scored = cache.get(raw)
                if scored is None:
                    scored = self._detect(canon[i], i in nul_at, form, _NOTHING)
                    if len(raw) <= CACHE_VALUE_LIMIT:
                        if len(cache) >= CACHE_ENTRIES:
                            cache.clear()
                        cache[raw] = scored
            else:
                scored = self._detect(canon[i], i in nul_at, form, skip)
                if is_key and self.nosqli_on and "$" in raw and "nosqli" not in skip:
                    score = score_nosqli_key(raw)
                    if score >= self.threshold:
                        scored = [("nosqli", score), *scored]
            if scored:
                if field_name is None:
                    field_name = prefix if name is None else f"{prefix}.{name}"
                for category, score in scored:
                    findings.append(Finding(category, location, field_name, score))
                    if first_only:
                        return findings
        findings.sort(key=lambda f: -f.score)
        return findings


def _collect(
    parts: RequestParts,
) -> tuple[list[str], list[Origin], list[_Mark], tuple[int, int]]:
    """Every value of the request, the origin of each (location, prefix, name, is-a-key: the
    value's field is ``prefix.name``, or ``prefix`` when name is ``None``) but the JSON body's,
    which come last and are found through the marks of :func:`_walk_json`; and the range of
    indices of the header and cookie values.

    One plain word is collected like any other value: screened together, it costs less than
    a test of its own, and a picked one is dropped then.
    """
    values: list[str] = []
    origins: list[Origin] = []
    for name, value in parts.path_params.items():
        values.append(value)
        origins.append(("path", "path", name, False))
    if parts.query:
        for name, value in parse_form(parts.query):
            values += (name, value)
            origins += (("query", "query", name, True), ("query", "query", name, False))
    first = len(values)
    for raw_name, raw_value in parts.headers:
        if raw_name in SKIPPED_HEADERS:
            if raw_name == b"cookie":
                for name, value in parse_cookies(decode_utf8(raw_value)):
                    values.append(value)
                    origins.append(("cookie", "cookie", name, False))
            continue
        values.append(decode_utf8(raw_value))
        origins.append(("header", "header", raw_name.decode("latin-1").lower(), False))
    headers = (first, len(values))
    if parts.form:
        for name, value in parse_form(parts.form):
            values += (name, value)
            origins += (("body", "body", name, True), ("body", "body", name, False))
    for part in parts.multipart:
        # Values as the application reads them: multipart text is not percent-encoded, but
        # canonical decoding still applies (an app or a later layer may decode it again).
        values.append(part.name)
        origins.append(("body", "body", part.name, True))
        if part.text is not None:
            values.append(part.text)
            origins.append(("body", "body", part.name, False))
        if part.filename is not None:
            values.append(part.filename)
            origins.append(("body", "body", f"{part.name}.filename", False))
    if parts.text_body is not None:
        values.append(parts.text_body)
        origins.append(("body", "body", None, False))
    marks: list[_Mark] = []
    if parts.json is not _MISSING:
        _walk_json(parts.json, values, marks)
    return values, origins, marks, headers
