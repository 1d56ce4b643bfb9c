"""The bundled sample API and ``apishield demo``: the gateway in front of it on localhost.

``create_demo_api`` is a small customers-and-orders API over SQLite, used by the demo and by
the tests as an upstream with an ordinary API's habits (PII in responses, a deprecated version,
a ``Server`` header, a route that leaks a stack trace). ``run_demo`` starts it and the gateway,
with credentials the demo makes in the store on its first start (an API key, a
client-credentials client, a user and a PKCE client for the browser sign-in).
"""

from __future__ import annotations

from apishield.demo.api import create_demo_api
from apishield.demo.run import (
    DEMO_REQUESTS,
    TOKEN_REQUESTS,
    DemoRequestSpec,
    demo_guide,
    demo_policy,
    run_demo,
)

__all__ = [
    "DEMO_REQUESTS",
    "DemoRequestSpec",
    "TOKEN_REQUESTS",
    "create_demo_api",
    "demo_guide",
    "demo_policy",
    "run_demo",
]
