"""``apishield demo``: the sample API on loopback and the gateway in front of it, one event loop.

The sample API listens on a free port of 127.0.0.1 only, so the gateway is the one way in. The
gateway runs the bundled ``policy.yaml`` with ``tls: dev``: a development CA (name-constrained
to localhost) and a certificate are created in the state folder, and the printed curl lines
trust that CA for the one command (``--cacert``), so trying the demo changes no trust store.

``state_dir/demo.json`` tells scripts where everything is::

    {"base_url": "https://localhost:8443", "ca_cert": ".../tls/ca.crt",
     "upstream_url": "http://127.0.0.1:40123"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import uvicorn
import yaml

from apishield.demo.api import create_demo_api
from apishield.demo.store import DemoStore
from apishield.errors import ApiShieldError, ConfigError
from apishield.policy.load import parse_policy
from apishield.policy.models import Policy
from apishield.server.devcert import trust_instructions

DEFAULT_PORT = 8443
DEFAULT_STATE_DIR = Path(".apishield-demo")
INFO_FILE = "demo.json"
DATABASE_FILE = "demo-api.sqlite3"
LOOPBACK = "127.0.0.1"


class DemoRequestSpec(NamedTuple):
    """One request of the guide: what it shows, and how to send it."""

    title: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: str | None


_JSON = (("Content-Type", "application/json"),)
_ORDER = '{"customer_id": 1, "item": "brass gears", "quantity": 2}'
# 20 000 bytes of item: over the demo route's 16 KiB limit, under the sample API's own 64 KiB.
_OVERSIZED_ORDER = '{"customer_id": 1, "item": "' + "a" * 20_000 + '", "quantity": 1}'

DEMO_REQUESTS: tuple[DemoRequestSpec, ...] = (
    DemoRequestSpec(
        "200 allowed: a customer, without the API's Server and X-Powered-By headers",
        "GET",
        "/v2/customers/1",
        (),
        None,
    ),
    DemoRequestSpec(
        "200 deprecated version: answered, with Deprecation, Sunset and Link headers",
        "GET",
        "/v1/customers",
        (),
        None,
    ),
    DemoRequestSpec("404 refused: a path the policy does not list", "GET", "/v2/nope", (), None),
    DemoRequestSpec(
        "405 refused: a method the route does not allow", "DELETE", "/v2/customers/1", (), None
    ),
    DemoRequestSpec(
        "413 refused: a body over the route's 16 KiB limit",
        "POST",
        "/v2/orders",
        _JSON,
        _OVERSIZED_ORDER,
    ),
    DemoRequestSpec(
        "415 refused: a media type the route does not accept",
        "POST",
        "/v2/orders",
        (("Content-Type", "text/plain"),),
        _ORDER,
    ),
    DemoRequestSpec(
        "500 hidden: the API's stack trace is replaced by the gateway's problem+json",
        "GET",
        "/v2/debug/crash",
        (),
        None,
    ),
)
"""The guide's requests, in the order it prints them."""


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """Where the running demo is; written to ``state_dir/demo.json``."""

    base_url: str
    ca_cert: Path
    upstream_url: str

    def to_json(self) -> str:
        """The ``demo.json`` text."""
        data = asdict(self)
        data["ca_cert"] = str(self.ca_cert)
        return json.dumps(data, indent=2) + "\n"


def demo_policy(*, upstream_url: str, state_dir: Path, port: int = DEFAULT_PORT) -> Policy:
    """The bundled demo policy, pointed at ``upstream_url``, listening on loopback ``port``."""
    text = resources.files("apishield.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    data["upstream"]["url"] = upstream_url
    data["listen"]["address"] = f"{LOOPBACK}:{port}"
    data["state"]["dir"] = str(state_dir.resolve())
    return parse_policy(data, file="demo policy")


_RUN = re.compile(r"(.)\1{255,}", re.DOTALL)


def shell_body(body: str) -> str:
    """A POSIX shell command that writes ``body`` to stdout.

    A long run of one character is generated with ``head -c N /dev/zero | tr``, so a 20 KB body
    stays a one-line command a reader can copy.
    """
    run = _RUN.search(body)
    if run is None:
        return "printf '%s' " + shlex.quote(body)
    char = run.group(1)
    filler = f"head -c {len(run.group(0))} /dev/zero | tr '\\0' {shlex.quote(char)}"
    parts = [
        "printf '%s' " + shlex.quote(body[: run.start()]),
        filler,
        shell_body(body[run.end() :]),
    ]
    return "{ " + "; ".join(parts) + "; }"


def curl_command(spec: DemoRequestSpec, base_url: str, ca_cert: Path) -> str:
    """``spec`` as a curl command line that trusts only the demo CA and shows the headers."""
    words = ["curl", "-i", "--cacert", shlex.quote(str(ca_cert))]
    if spec.method != "GET" and not (spec.method == "POST" and spec.body is not None):
        words += ["-X", spec.method]
    for name, value in spec.headers:
        words += ["-H", shlex.quote(f"{name}: {value}")]
    prefix = ""
    if spec.body is not None:
        if _RUN.search(spec.body) is None:
            words += ["--data-binary", shlex.quote(spec.body)]
        else:
            prefix = shell_body(spec.body) + " | "
            words += ["--data-binary", "@-"]
    words.append(shlex.quote(base_url + spec.path))
    return prefix + " ".join(words)


def demo_guide(base_url: str, ca_cert: Path) -> str:
    """The text ``apishield demo`` prints once the gateway is up."""
    lines = [
        f"apishield demo: the gateway is on {base_url}, in front of the sample API.",
        "",
        trust_instructions(ca_cert),
        "",
        "Try these (-i shows the headers; refusals are problem+json with a hint, because the",
        "demo policy runs in development mode):",
    ]
    for spec in DEMO_REQUESTS:
        lines += ["", f"# {spec.title}", curl_command(spec, base_url, ca_cert)]
    lines += ["", "Stop with Ctrl-C."]
    return "\n".join(lines) + "\n"


def write_demo_info(state_dir: Path, info: DemoInfo) -> Path:
    """Write ``demo.json`` atomically (a script polling for it never reads half a file)."""
    path = state_dir / INFO_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(info.to_json(), encoding="utf-8")
    partial.replace(path)
    return path


class _UpstreamServer(uvicorn.Server):
    """uvicorn for the sample API; signals are left to the gateway that shares the loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # uvicorn would re-raise a captured signal after shutdown, ending the process

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


def _bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
    except OSError:
        sock.close()
        raise
    return sock


async def _start_upstream(database: Path) -> tuple[_UpstreamServer, asyncio.Task[None], str]:
    sock = _bind_loopback()
    config = uvicorn.Config(
        create_demo_api(database),
        lifespan="on",
        log_config=None,  # logging belongs to the application, not to uvicorn
        log_level="warning",
        access_log=False,
        server_header=False,  # the sample API sends its own, for the gateway to remove
    )
    server = _UpstreamServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.ensure_future(server.ready.wait())
    try:
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
        await asyncio.gather(ready, return_exceptions=True)
    if not server.ready.is_set():
        sock.close()
        await task  # raises why it stopped, when it says
        raise ApiShieldError("the sample API stopped while starting")
    return server, task, f"http://{LOOPBACK}:{sock.getsockname()[1]}"


def _prepare(state_dir: Path) -> tuple[Path, Path]:
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    database = state_dir / DATABASE_FILE
    # A database problem surfaces here as an error, not as uvicorn exiting the process when
    # the sample API's lifespan startup fails.
    DemoStore(database).ensure_ready()
    return state_dir, database


def _print_guide(info: DemoInfo) -> None:
    print(demo_guide(info.base_url, info.ca_cert), flush=True)


async def serve_demo(
    *,
    port: int = DEFAULT_PORT,
    state_dir: Path = DEFAULT_STATE_DIR,
    install_signal_handlers: bool = True,
    on_ready: Callable[[DemoInfo], None] = _print_guide,
) -> None:
    """Run the sample API and the gateway until the gateway stops.

    The gateway stops on SIGINT/SIGTERM (with ``install_signal_handlers``) or when this
    coroutine is cancelled; either way requests in flight finish, then the sample API stops.
    ``on_ready`` is called once both listen and ``demo.json`` is written. Raises
    ``ConfigError`` (e.g. the port is taken) and ``StartupError`` from the gateway.
    """
    from apishield.pipeline.build import build_gateway
    from apishield.server.serve import GatewayServer, StartupError, resolve_tls

    state_dir, database = await asyncio.to_thread(_prepare, state_dir)
    upstream, upstream_task, upstream_url = await _start_upstream(database)
    try:
        policy = demo_policy(upstream_url=upstream_url, state_dir=state_dir, port=port)
        # Creating the dev CA generates keys: keep that off the event loop.
        tls = await asyncio.to_thread(resolve_tls, policy)
        if tls.dev is None:
            raise ApiShieldError("the demo policy must use 'tls: dev'")
        # The guide replaces the server's start lines, which say the same.
        gateway = GatewayServer(policy, build_gateway(policy), tls=tls, announce=False)
        gateway_task = asyncio.create_task(
            gateway.serve(install_signal_handlers=install_signal_handlers)
        )
        try:
            try:
                await gateway.wait_started()
            except StartupError:
                await gateway_task  # raises the reason (a taken port) when there is one
                raise
            info = DemoInfo(
                base_url=f"https://localhost:{gateway.bound_port}",
                ca_cert=tls.dev.ca_cert,
                upstream_url=upstream_url,
            )
            await asyncio.to_thread(write_demo_info, state_dir, info)
            on_ready(info)
            # Shielded: cancelling the demo must stop the gateway gracefully (below), not
            # cancel it mid-request.
            await asyncio.shield(gateway_task)
        finally:
            gateway.should_exit = True
            await asyncio.gather(gateway_task, return_exceptions=True)
    finally:
        upstream.should_exit = True
        await upstream_task


def run_demo(*, port: int = DEFAULT_PORT, state_dir: Path | None = None) -> int:
    """``apishield demo [--port N] [--state-dir DIR]``; returns the exit code.

    Serves until SIGINT/SIGTERM: 0 after a clean stop, 1 when serving failed, 2 for a
    configuration problem (the port is taken, the state dir cannot be written), 130 when
    interrupted while starting.
    """
    from apishield.server.serve import configure_logging, run_async

    configure_logging()
    try:
        run_async(serve_demo(port=port, state_dir=state_dir or DEFAULT_STATE_DIR))
    except (ConfigError, OSError) as exc:
        print(f"apishield demo: {exc}", file=sys.stderr)
        return 2
    except ApiShieldError as exc:
        print(f"apishield demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the gateway's own signal handling is in place
        return 130
    return 0
