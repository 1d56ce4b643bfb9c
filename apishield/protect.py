"""In-process mode: the same pipeline as ASGI middleware around a Python app, no network hop."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apishield.pipeline.build import build_protected
from apishield.policy.load import coerce_policy
from apishield.policy.models import Policy
from apishield.types import ASGIApp


def protect(app: ASGIApp, policy: Policy | Mapping[str, Any] | str | Path) -> ASGIApp:
    """Return ``app`` wrapped in every stage ``policy`` asks for.

    ``policy`` is a ``Policy``, a mapping in the policy file's shape, or the path of a policy
    file. The policy's ``upstream`` is ignored: ``app`` is the upstream. Raises ``PolicyError``
    with the located problem when the policy is invalid.

    With ``identity.issuers: [{builtin: true}]`` the built-in authorization server answers
    ``/oauth2/*`` and its RFC 8414 metadata in front of ``app``, exactly as in the gateway.
    ``app``'s own lifespan events still reach it; the store and the server are closed when
    the lifespan shuts down (or when the event loop ends, under a host without lifespan).
    """
    loaded = coerce_policy(policy)
    return build_protected(loaded, app)
