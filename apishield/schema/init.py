"""``apishield init``: a starting policy written from an OpenAPI spec (pure: spec in, text out).

The policy is secure as written: production mode, TLS (a development certificate on loopback
to start with), and every operation a route with no ``allow`` rule, so nobody may call
anything until someone decides who may (deny by default; OWASP API5). Each route carries a
comment with the spec's own security requirement as the suggestion. Operations the policy
cannot express are written commented out with the reason, and listed in ``notes``: an
operation is never dropped silently.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from apishield.errors import ConfigError, PolicyError
from apishield.policy.load import parse_policy
from apishield.policy.models import HTTP_METHODS, Route, Upstream
from apishield.schema.loader import load_openapi
from apishield.schema.spec import OpenAPISpec, Operation

__all__ = ["InitResult", "render_policy", "write_policy"]

_VERSION_SEGMENT = re.compile(r"^v\d+$")
_PARAM = re.compile(r"\{[^}]*\}")
_NAME = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True, slots=True)
class InitResult:
    """The policy text, and what a person must look at (one line per operation not routed)."""

    text: str
    routes: int
    operations: int
    notes: tuple[str, ...] = ()


@dataclass(slots=True)
class _Group:
    methods: list[Operation]
    content_types: tuple[str, ...] | None
    suggestion: str
    remarks: list[str] = field(default_factory=list)


def _q(value: str) -> str:
    # JSON strings (ASCII, escaped) are YAML double-quoted scalars: a path, media type or scope
    # from the spec stays one literal value whatever characters it holds.
    return json.dumps(value)


def _one_line(line: str) -> str:
    """``line`` with every control or line-separator character made a space.

    Text from the spec (a title, an operationId) goes into comments; a line break in it would
    end the comment and let the spec write settings into the policy.
    """
    return "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in line)


def _flow(values: Iterable[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def check_upstream(url: str) -> str:
    """The upstream URL as the policy will hold it; ``ConfigError`` when it cannot be one."""
    try:
        return Upstream.model_validate({"url": url}).url
    except ValidationError as exc:
        message = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"--upstream: {message}") from None


def render_policy(spec: OpenAPISpec, *, upstream: str, spec_path: str) -> InitResult:
    """The starting policy for ``spec``, forwarding to ``upstream``.

    ``spec_path`` is how the policy refers to the spec (relative to the policy file).
    """
    upstream = check_upstream(upstream)
    base = spec.base_path
    notes: list[str] = []
    out: list[str] = [
        f"# apishield policy for {spec.title or 'an API'} {spec.version}".rstrip(),
        f"# written by `apishield init` from {spec_path}.",
        "#",
        "# Every operation of the spec is a route below, closed until you say who may call it",
        "# (deny by default). Fill in each route's `allow` (see the TODO above it), set up",
        "# `identity`, then run `apishield check` to list what is still open.",
        "apishield: 1",
        "mode: production  # refusals tell clients only the code; `development` explains them",
        "listen:",
        "  # To start: loopback with a development certificate from a CA created in state.dir.",
        "  # For real traffic: `address: 0.0.0.0:8443` and",
        "  # `tls: {cert: /etc/apishield/tls.crt, key: /etc/apishield/tls.key}` (PEM files).",
        "  address: 127.0.0.1:8443",
        "  tls: dev",
        "upstream:",
        f"  url: {_q(upstream)}",
    ]
    out += [
        "openapi:  # requests are validated against the spec's schemas",
        f"  spec: {_q(spec_path)}",
        "  mode: enforce  # `report` logs what would be refused, refuses nothing",
    ]
    out += _identity(spec)
    out += _versions(spec, base)
    routes, written = _routes(spec, base, notes)
    out += routes
    return InitResult(
        text="\n".join(_one_line(line) for line in out) + "\n",
        routes=written,
        operations=len(spec.operations),
        notes=tuple(notes),
    )


def write_policy(spec: Path, *, upstream: str, output: Path, force: bool = False) -> InitResult:
    """Load ``spec``, render its starting policy and write it to ``output``.

    An existing ``output`` is kept unless ``force``: a policy someone has filled in must not be
    lost to a repeated command. Raises ``ConfigError`` (``SpecError``, ``PolicyError``).
    """
    loaded = load_openapi(spec)
    spec_path = Path(os.path.relpath(spec.resolve(), output.resolve().parent)).as_posix()
    result = render_policy(loaded, upstream=upstream, spec_path=spec_path)
    try:
        parse_policy(yaml.safe_load(result.text), file=str(output))
    except PolicyError as exc:  # a template this module failed to express: never write it
        raise ConfigError(f"the policy written from {spec} would not load: {exc}") from None
    try:
        with output.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(result.text)
    except FileExistsError:
        raise ConfigError(f"{output} exists: pass --force to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
    return result


# -- identity --------------------------------------------------------------------------------


def _identity(spec: OpenAPISpec) -> list[str]:
    if not spec.security_schemes:
        return [
            "# The spec declares no security schemes. To check credentials, add an `identity`",
            "# section (API keys, your identity provider's tokens): see `apishield explain",
            "# route_closed` and the identity guide.",
        ]
    keys: list[str] = []
    issuers: list[str] = []
    remarks: list[str] = []
    slug = re.sub(r"[^a-z0-9]+", "-", spec.title.lower()).strip("-") or "my-api"
    for name, scheme in spec.security_schemes.items():
        kind = scheme.get("type")
        if (
            kind == "apiKey"
            and scheme.get("in") == "header"
            and isinstance(scheme.get("name"), str)
        ):
            if not keys:
                keys = [
                    f"#   api_keys:  # from the spec's {_q(name)}; issue keys with "
                    "`apishield apikeys create`",
                    f"#     header: {_q(scheme['name'])}",
                ]
        elif kind == "apiKey":
            remarks.append(
                f"# {_q(name)} sends an API key in the {scheme.get('in')}: apishield accepts keys "
                "in one header only (URLs and cookies leak into logs and other sites)."
            )
        elif kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
            issuers += [
                f"#     - issuer: https://login.example.com  # from {_q(name)}: the `iss` of your"
                " tokens",
                "#       discovery: true",
                "#       algorithms: [RS256]",
                f"#       audience: {_q(slug)}",
                "#     # or apishield's own authorization server: - builtin: true",
            ]
        elif kind in ("oauth2", "openIdConnect"):
            issuer = _issuer_guess(scheme)
            issuers += [
                f"#     - issuer: {_q(issuer)}  # from {_q(name)}: check it is your tokens' `iss`",
                "#       discovery: true",
                "#       algorithms: [RS256]",
                f"#       audience: {_q(slug)}",
            ]
        else:
            remarks.append(
                f"# {_q(name)} ({kind}) has no apishield equivalent: use API keys or bearer tokens."
            )
    lines = [
        "# Who the callers are, suggested from the spec's security schemes. Check and uncomment:",
        "# until then the gateway verifies no credential and only `allow: public` routes answer.",
        "# identity:",
        *keys,
    ]
    if issuers:
        lines += ["#   issuers:", *issuers]
    return lines + remarks


def _issuer_guess(scheme: dict[str, Any]) -> str:
    url = scheme.get("openIdConnectUrl")
    if isinstance(url, str):
        return url.split("/.well-known/")[0]
    flows = scheme.get("flows")
    for flow in flows.values() if isinstance(flows, dict) else []:
        for key in ("tokenUrl", "authorizationUrl"):
            value = flow.get(key) if isinstance(flow, dict) else None
            if isinstance(value, str) and value.startswith("https://"):
                for tail in ("/protocol/openid-connect/", "/oauth2/", "/oauth/", "/connect/"):
                    if tail in value:
                        return value.split(tail)[0]
                parts = urlsplit(value)
                return f"https://{parts.netloc}"
    return "https://login.example.com"


# -- versions --------------------------------------------------------------------------------


def _version_of(path: str, base: str) -> str | None:
    rest = path[len(base) :] if base and path.startswith(base + "/") else path
    segment = rest.split("/")[1] if rest.count("/") >= 1 else ""
    return base + "/" + segment if _VERSION_SEGMENT.match(segment) else None


def _versions(spec: OpenAPISpec, base: str) -> list[str]:
    found: dict[str, list[Operation]] = {}
    for op in spec.operations:
        prefix = _version_of(base + op.path, base)
        if prefix is not None:
            found.setdefault(prefix, []).append(op)
    if not found:
        return []
    lines = ["versions:  # detected from the spec's paths"]
    for prefix in sorted(found, key=lambda p: (len(p), p)):
        ops = found[prefix]
        deprecated = [op for op in ops if op.deprecated]
        if deprecated and len(deprecated) == len(ops):
            lines += [
                f"  # every operation under {prefix} is deprecated in the spec: clients get",
                "  # Deprecation headers. Add `sunset: YYYY-MM-DD` and `link: URL` (the",
                "  # successor's documentation).",
                f"  - prefix: {_q(prefix)}",
                "    deprecated: {}",
            ]
        else:
            if deprecated:
                listed = ", ".join(f"{op.method} {op.path}" for op in deprecated)
                lines.append(f"  # deprecated in the spec: {listed} (see the routes below)")
            lines.append(f"  - prefix: {_q(prefix)}")
    return lines


# -- routes ----------------------------------------------------------------------------------


def _suggestion(op: Operation) -> str:
    if op.security is None or {} in op.security:  # `[{}]`: anonymous calls are allowed
        return "the spec needs no credentials here: `allow: public` if anyone may call it"
    with_scopes = [r for r in op.security if any(r.values())]
    if not with_scopes:
        return "allow: {}  (any verified caller) or allow: {scopes: [...]}"
    first = with_scopes[0]
    scopes = sorted({s for scopes in first.values() for s in scopes})
    text = f"allow: {{scopes: {_flow(scopes)}}}"
    others = [", ".join(sorted(r)) or "none" for r in op.security if r is not first]
    if others:
        text += f"  (the spec also accepts: {'; '.join(others)})"
    return text


def _content_types(op: Operation, remarks: list[str]) -> tuple[str, ...] | None:
    if not op.request_body:
        return None
    kept: list[str] = []
    for media in op.request_body:
        value = media.media_type.split(";")[0].strip().lower()
        if _MEDIA_TYPE.match(value) and "*" not in value:
            if value not in kept:
                kept.append(value)
        else:
            remarks.append(
                f"{op.method} accepts {media.media_type!r} in the spec: list the exact media "
                "types it takes in content_types"
            )
    return tuple(kept) if kept else None


def _problem(path: str, method: str) -> str | None:
    """Why ``method path`` cannot be a policy route, or ``None`` when it can."""
    if method not in HTTP_METHODS:
        return f"the policy has no {method} method (it routes {', '.join(HTTP_METHODS)})"
    if not path.isprintable() or " " in path:
        return "the path holds spaces, control or invisible characters"
    for segment in path.split("/"):
        if "{" not in segment and "}" not in segment:
            continue
        if _NAME.fullmatch(segment):
            continue
        if re.fullmatch(r"\{[^{}]*\}", segment):
            return (
                f"the parameter name {segment} is not a policy parameter name "
                "(letters, digits and '_')"
            )
        return (
            f"the segment {segment!r} mixes a parameter with text; a policy parameter fills "
            "a whole path segment"
        )
    try:
        Route.model_validate({"path": path, "methods": [method]})
    except ValidationError as exc:
        return str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
    return None


def _routes(spec: OpenAPISpec, base: str, notes: list[str]) -> tuple[list[str], int]:
    by_path: dict[str, list[Operation]] = {}
    for op in spec.operations:
        by_path.setdefault(op.path, []).append(op)
    seen: dict[tuple[str, str], str] = {}  # (shape, method) -> the path that took it
    live: list[str] = []
    closed: list[str] = []
    for template, ops in by_path.items():
        path = base + template
        shape = _PARAM.sub("{}", path)
        groups: dict[tuple[tuple[str, ...] | None, str], _Group] = {}
        for op in sorted(ops, key=lambda o: _order(o.method)):
            problem = _problem(path, op.method)
            if problem is None and (shape, op.method) in seen:
                problem = f"the same route as {seen[(shape, op.method)]} (only names differ)"
            if problem is not None:
                notes.append(_one_line(f"{op.method} {path}: written commented out: {problem}"))
                closed += _closed(path, op, problem)
                continue
            seen[(shape, op.method)] = path
            remarks: list[str] = []
            types = _content_types(op, remarks)
            key = (types, _suggestion(op))
            group = groups.setdefault(key, _Group([], types, key[1]))
            group.methods.append(op)
            group.remarks += remarks
        for group in groups.values():
            live += _route(path, group)
    written = sum(1 for line in live if line.startswith("  - path:"))
    lines = ["routes:" if written else "routes: []  # no operation of the spec could be routed"]
    lines += live
    if closed:
        lines += [
            "  # Operations the policy cannot express. They are refused (404) until you route",
            "  # them; `apishield check` keeps listing them.",
            *closed,
        ]
    return lines, written


def _order(method: str) -> int:
    return HTTP_METHODS.index(method) if method in HTTP_METHODS else len(HTTP_METHODS)


def _describe(op: Operation) -> str:
    text = op.method
    if op.operation_id:
        text += f" {op.operation_id}"
    if op.summary:
        text += f": {' '.join(op.summary.split())}"
    if op.deprecated:
        text += " (deprecated in the spec)"
    return text


def _route(path: str, group: _Group) -> list[str]:
    lines = [f"  # {_describe(op)}" for op in group.methods]
    lines += [f"  # {remark}" for remark in group.remarks]
    lines += [
        f"  # TODO who may call: {group.suggestion}",
        f"  - path: {_q(path)}",
        f"    methods: [{', '.join(op.method for op in group.methods)}]",
    ]
    if group.content_types is not None:
        lines.append(f"    content_types: {_flow(group.content_types)}")
    return lines


def _closed(path: str, op: Operation, problem: str) -> list[str]:
    return [
        f"  # {_describe(op)}",
        f"  # not routed: {problem}",
        f"  # - path: {_q(path)}",
        f"  #   methods: [{op.method}]",
    ]
