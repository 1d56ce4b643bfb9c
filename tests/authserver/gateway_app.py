"""One gateway process for the multi-instance tests: ``python -m tests.authserver.gateway_app``.

``APISHIELD_TEST_POLICY`` names the policy file (no ``upstream``: each process answers with an
echoing upstream of its own on loopback); ``APISHIELD_TEST_PORT_FILE`` is where the bound port
is written once the gateway accepts connections. Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from apishield.pipeline.build import build_gateway
from apishield.policy.load import load_policy
from apishield.policy.models import Upstream
from apishield.server import GatewayServer
from apishield.server.serve import run_async
from tests.proxy.upstreams import RawUpstream, echo


async def main() -> None:
    upstream = RawUpstream(echo)
    await upstream.start()
    policy = load_policy(Path(os.environ["APISHIELD_TEST_POLICY"]))
    policy = policy.model_copy(update={"upstream": Upstream(url=upstream.url())})
    server = GatewayServer(policy, build_gateway(policy), announce=False)
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    port_file = Path(os.environ["APISHIELD_TEST_PORT_FILE"])
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(server.bound_port))
    temporary.rename(port_file)  # appears whole or not at all
    try:
        await task
    finally:
        await upstream.close()


if __name__ == "__main__":
    run_async(main())
