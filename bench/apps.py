"""The ASGI applications the benchmark serves, and the command that serves one of them.

``python bench/apps.py FACTORY POLICY_FILE`` serves ``FACTORY(policy)`` exactly as
``apishield serve -c POLICY_FILE`` serves the gateway: same listener, same uvicorn settings
(uvloop, httptools, no access log, no ``Server`` header), same logging. Both rows of the
benchmark go through it, so the passthrough and the gateway differ only by the pipeline.

- ``passthrough``: the upstream proxy (stage 12) alone, no stage in front of it: the floor
  under every policy.
- ``gateway``: ``build_gateway(policy)``, what ``apishield serve`` runs: every stage the
  policy turns on, in front of the same proxy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from apishield.errors import ConfigError
from apishield.pipeline.build import build_gateway
from apishield.policy.models import Policy
from apishield.types import ASGIApp


def passthrough(policy: Policy) -> ASGIApp:
    """The upstream proxy of ``policy`` with no stage in front of it."""
    if policy.upstream is None:
        raise ConfigError("the benchmark policy has no 'upstream'")
    from apishield.proxy import UpstreamApp

    return UpstreamApp(policy.upstream)


def gateway(policy: Policy) -> ASGIApp:
    """The standalone gateway, as ``apishield serve`` builds it."""
    return build_gateway(policy)


FACTORIES: dict[str, Callable[[Policy], ASGIApp]] = {
    "passthrough": passthrough,
    "gateway": gateway,
}


def stage_names(app: object) -> list[str]:
    """The classes of a built pipeline, outermost first (each stage keeps its inner ``app``)."""
    names: list[str] = []
    current: object | None = app
    while current is not None and len(names) < 64:
        names.append(type(current).__name__)
        current = getattr(current, "app", None)
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in FACTORIES:
        print(f"usage: apps.py {{{','.join(FACTORIES)}}} POLICY_FILE", file=sys.stderr)
        return 2
    from apishield.server.serve import serve_policy

    # `serve_policy` imports the factory by name; when this file runs as a script its module
    # is `__main__`.
    return serve_policy(Path(argv[1]), app_factory=f"{__name__}:{argv[0]}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
