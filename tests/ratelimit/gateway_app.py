"""One gateway process for the multi-instance tests: ``python -m tests.ratelimit.gateway_app``.

Settings come from the environment: ``APISHIELD_TEST_CACHE`` (the shared Redis),
``APISHIELD_TEST_LIMITS`` (the ``limits:`` section as JSON) and ``APISHIELD_TEST_PORT_FILE``
(where the bound port is written once the server accepts connections). Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from apishield.ratelimit.guard import RateLimitGuard
from apishield.ratelimit.settings import LimitSettings
from apishield.server import GatewayServer
from apishield.server.serve import run_async
from tests.ratelimit.support import compose, policy


async def main() -> None:
    cache = os.environ["APISHIELD_TEST_CACHE"]
    the_policy = policy(cache)
    settings = LimitSettings.model_validate(json.loads(os.environ["APISHIELD_TEST_LIMITS"]))
    guard = RateLimitGuard(settings, cache)
    server = GatewayServer(the_policy, compose(the_policy, guard), announce=False)
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    port_file = Path(os.environ["APISHIELD_TEST_PORT_FILE"])
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(server.bound_port))
    temporary.rename(port_file)  # appears whole or not at all
    await task


if __name__ == "__main__":
    run_async(main())
