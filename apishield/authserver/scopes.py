"""Scopes (RFC 6749 §3.3) and resource indicators (RFC 8707) of a token request (AUTH 18).

Pure decisions: what was asked, what is allowed, what is granted. A request can only narrow
what the client registered (or, on refresh, what the grant holds, RFC 6749 §6): asking for
anything more is refused rather than silently trimmed, so a client notices its mistake.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from apishield.authserver.errors import invalid_request, invalid_scope, invalid_target

_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3 scope-token
MAX_RESOURCES = 8


def parse_scope(value: str | None) -> tuple[str, ...] | None:
    """The scope tokens of a ``scope`` parameter in order, duplicates dropped; None when
    absent. ``invalid_scope`` for text that is not space-separated scope tokens."""
    if value is None:
        return None
    tokens = value.split(" ")
    if any(not _SCOPE_TOKEN.match(token) for token in tokens):
        raise invalid_scope("scope_malformed", "scope is a space-separated list of scope tokens")
    return tuple(dict.fromkeys(tokens))


def grant_scope(requested: str | None, allowed: Sequence[str]) -> tuple[str, ...]:
    """The scopes granted for ``requested`` out of ``allowed`` (all of them when absent)."""
    wanted = parse_scope(requested)
    if wanted is None:
        return tuple(allowed)
    extra = [s for s in wanted if s not in allowed]
    if extra:
        raise invalid_scope(
            "scope_not_allowed", "a requested scope is not registered for the client or grant"
        )
    return wanted


def grant_resource(requested: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """The resources (token audiences) for ``requested`` out of ``allowed``, RFC 8707 §2:
    each requested one must be registered; none requested means every registered one.
    A token needs an audience, so a client without registered resources gets none."""
    if len(requested) > MAX_RESOURCES:
        raise invalid_request("too_many_resources", f"at most {MAX_RESOURCES} resource values")
    if not requested:
        if not allowed:
            raise invalid_target(
                "no_resource_registered", "the client has no registered resource (audience)"
            )
        return tuple(allowed)
    if any(r not in allowed for r in requested):
        raise invalid_target("resource_not_allowed", "a requested resource is not registered")
    return tuple(dict.fromkeys(requested))
