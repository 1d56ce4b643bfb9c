"""Route matching without I/O: path templates, methods and API versions from the policy.

Paths are matched on the percent-decoded path, segment by segment; a ``{param}`` fills exactly
one segment. Literal routes win over parameterised ones, so ``/orders/latest`` is never read as
``/orders/{id}``. Non-canonical paths (dot segments, empty segments, encoded ``/``, ``\\`` or
NUL) are refused before matching: the upstream might resolve them differently than we did,
which is how path-confusion bypasses of gateways work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from apishield.errors import (
    BadRequestError,
    GoneError,
    MethodNotAllowedError,
    NotFoundError,
)
from apishield.policy.models import Policy, Route, Version

_CONFUSABLE = frozenset("\ufffd\uff0e\u2024\u3002\ufe52\uff0f\u2215\u2044\uff3c\ufe68")
_IMPLIED = {"GET": ("HEAD",)}  # HEAD is GET without a body (RFC 9110 §9.3.2)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """What routing found: the policy route, its template, the path's parameters, the version."""

    route: Route
    template: str
    params: dict[str, str]
    version: Version | None
    methods: frozenset[str]  # every method the policy allows on this path (for Allow, CORS)


@dataclass(slots=True)
class _Entry:
    route: Route
    segments: tuple[str | None, ...]  # None marks a parameter
    names: tuple[str, ...]
    version: Version | None
    methods: frozenset[str]


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    entries: list[_Entry] = field(default_factory=list)


def _segments(path: str) -> list[str]:
    return path.split("/")[1:]


def _allowed(methods: Iterable[str]) -> frozenset[str]:
    out = set(methods)
    for method in list(out):
        out.update(_IMPLIED.get(method, ()))
    return frozenset(out)


def http_date(day: datetime) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7)."""
    return day.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def check_canonical(path: str, raw_path: bytes | None) -> None:
    """Refuse paths that different servers resolve differently."""
    if raw_path is not None:
        lowered = raw_path.lower()
        if b"%2f" in lowered or b"%5c" in lowered or b"%00" in lowered or b"%25" in lowered:
            raise BadRequestError(
                code="path_not_canonical",
                hint="encoded '/', '\\\\', '%' or NUL in the path are refused",
            )
    if not path.startswith("/") or "\\" in path or "\x00" in path:
        raise BadRequestError(code="path_not_canonical", hint="the path must start with '/'")
    if ";" in path:
        # Path parameters (`/files/..;/admin`, `;jsessionid=`) are resolved by some servers
        # (Tomcat, Spring) and not by others: the classic gateway/upstream disagreement.
        raise BadRequestError(code="path_not_canonical", hint="';' is refused in paths")
    if not path.isascii() and any(c in _CONFUSABLE for c in path):
        # U+FFFD marks bytes that were not UTF-8 (overlong encodings such as %C0%AE end up
        # here); the others are dots and slashes that some stacks fold to ASCII.
        raise BadRequestError(
            code="path_not_canonical", hint="invalid or look-alike characters in the path"
        )
    if path == "/":
        return
    for segment in _segments(path.rstrip("/") if path.endswith("/") else path):
        if segment in ("", ".", ".."):
            raise BadRequestError(
                code="path_not_canonical", hint="empty, '.' and '..' path segments are refused"
            )


class Router:
    """Compiled from the policy once; ``match`` runs per request."""

    def __init__(self, policy: Policy) -> None:
        self.root = _Node()
        self.prefix_versions = [v for v in policy.versions if v.prefix is not None]
        self.header_versions = {v.label: v for v in policy.versions if v.header is not None}
        self.version_header: str | None = None
        self.default_version: Version | None = None
        for version in self.header_versions.values():
            assert version.header is not None  # noqa: S101 - filtered above
            self.version_header = next(iter(version.header))
            if version.default:
                self.default_version = version
        self.by_header_value = {
            next(iter(v.header.values())): v for v in self.header_versions.values() if v.header
        }
        for route in policy.routes:
            self._add(route)

    def _version_of(self, route: Route) -> Version | None:
        if route.version is not None:
            return self.header_versions[route.version]
        for version in self.prefix_versions:
            assert version.prefix is not None  # noqa: S101 - filtered above
            if route.path == version.prefix or route.path.startswith(version.prefix + "/"):
                return version
        return None

    def _add(self, route: Route) -> None:
        node = self.root
        segments: list[str | None] = []
        names: list[str] = []
        for segment in _segments(route.path):
            if segment.startswith("{"):
                names.append(segment[1:-1])
                segments.append(None)
                node.param = node.param or _Node()
                node = node.param
            else:
                segments.append(segment)
                node = node.literal.setdefault(segment, _Node())
        node.entries.append(
            _Entry(
                route,
                tuple(segments),
                tuple(names),
                self._version_of(route),
                _allowed(route.methods),
            )
        )

    def _find(self, parts: list[str]) -> tuple[list[_Entry], list[str]] | None:
        # Depth-first, literal before parameter: the most specific template wins.
        def walk(node: _Node, i: int, values: list[str]) -> tuple[list[_Entry], list[str]] | None:
            if i == len(parts):
                return (node.entries, values) if node.entries else None
            child = node.literal.get(parts[i])
            if child is not None and (found := walk(child, i + 1, values)) is not None:
                return found
            if node.param is not None and parts[i]:
                return walk(node.param, i + 1, [*values, parts[i]])
            return None

        return walk(self.root, 0, [])

    def match(
        self, method: str | None, path: str, raw_path: bytes | None, header_version: str | None
    ) -> RouteMatch:
        """The route for this request, or the refusal (404, 405, 410, 400)."""
        check_canonical(path, raw_path)
        found = self._find(_segments(path))
        if found is None:
            raise NotFoundError(hint="no route in the policy matches this path")
        entries, values = found
        entries = self._select_version(entries, header_version)
        methods = frozenset(m for e in entries for m in e.methods)
        if method is None:  # a CORS preflight asks about the path, not a method
            entry: _Entry | None = entries[0] if entries else None
        else:
            entry = next((e for e in entries if method in e.methods), None)
        if entry is None:
            allowed = sorted(methods)
            raise MethodNotAllowedError(
                headers={"Allow": ", ".join(allowed)},
                hint=f"this route accepts {', '.join(allowed)}",
            )
        version = entry.version
        if version is not None and version.retired:
            headers = {}
            if version.link:
                headers["Link"] = f'<{version.link}>; rel="successor-version"'
            raise GoneError(headers=headers, hint=f"API version {version.label} is retired")
        return RouteMatch(
            entry.route,
            entry.route.path,
            dict(zip(entry.names, values, strict=True)),
            version,
            methods,
        )

    def _select_version(self, entries: list[_Entry], header_version: str | None) -> list[_Entry]:
        if not any(e.route.version is not None for e in entries):
            return entries
        if header_version is None:
            wanted = self.default_version
            if wanted is None:
                raise BadRequestError(
                    code="version_required",
                    hint=f"send the {self.version_header} header to choose an API version",
                )
        else:
            wanted = self.by_header_value.get(header_version)
            if wanted is None:
                raise BadRequestError(
                    code="version_unknown", hint="the requested API version does not exist"
                )
        chosen = [e for e in entries if e.version is wanted or e.route.version is None]
        if not chosen:
            raise NotFoundError(hint="this path does not exist in the requested API version")
        return chosen


def deprecation_headers(version: Version) -> list[tuple[bytes, bytes]]:
    """RFC 9745 ``Deprecation``, RFC 8594 ``Sunset`` and their ``Link`` relations."""
    dep = version.deprecated
    if dep is None:
        return []
    since = (
        int(datetime.combine(dep.since, time(0), tzinfo=UTC).timestamp())
        if dep.since is not None
        else 0  # no date given: "deprecated already" is the safe reading
    )
    headers = [(b"deprecation", f"@{since}".encode())]
    if dep.sunset is not None:
        sunset = datetime.combine(dep.sunset, time(0), tzinfo=UTC)
        headers.append((b"sunset", http_date(sunset).encode()))
    if dep.link:
        headers.append((b"link", f'<{dep.link}>; rel="deprecation"; type="text/html"'.encode()))
    return headers
