"""Per-request state shared by the stages, kept in ``scope["apishield"]``.

The transport stage fills the client address and scheme (trusting forwarding headers only from
configured proxies); routing fills the route and version; later stages read, never guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apishield.types import Scope

if TYPE_CHECKING:
    from apishield.pipeline.router import RouteMatch

SCOPE_KEY = "apishield"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    client_ip: str = ""
    scheme: str = "http"  # as the client used it, after trusted-proxy resolution
    host: str = ""  # Host as the client sent it (or X-Forwarded-Host from a trusted proxy)
    route: RouteMatch | None = None
    status: int | None = None
    code: str | None = None  # refusal code, when refused
    reported: list[str] = field(default_factory=list)  # codes a report-mode stage would refuse
    principal: Any = None
    # Headers every response to this request carries, refusals included (HSTS, CORS,
    # Deprecation): stages add them here and the errors stage sends them, so one wrapper of
    # ``send`` serves all stages.
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def get_context(scope: Scope) -> RequestContext:
    """The request's context; raises ``KeyError`` when the pipeline did not set one."""
    ctx: RequestContext = scope[SCOPE_KEY]
    return ctx
