"""``apishield demo``: the sample API on loopback and the gateway in front of it, one event loop.

The sample API listens on a free port of 127.0.0.1 only, so the gateway is the one way in. The
gateway runs the bundled ``policy.yaml`` with ``tls: dev``: a development CA (name-constrained
to localhost) and a certificate are created in the state folder, and the printed curl lines
trust that CA for the one command (``--cacert``), so trying the demo changes no trust store.

The policy requires credentials on every route but ``/health``, and runs the built-in
authorization server. The first start makes an API key, two clients and a user in the store
(``credentials.py``); later starts reuse those that still verify.

``state_dir/demo.json`` (mode 0600: it holds the demo's secrets) tells scripts where
everything is and what to sign in with::

    {"base_url": "https://localhost:8443", "ca_cert": ".../tls/ca.crt",
     "upstream_url": "http://127.0.0.1:40123",
     "credentials": {"api_key": "ask_test_…", "client_id": "demo-service", …},
     "browser_sign_in": {"code_verifier": "…", "state": "…", "authorize_url": "https://…"}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import uvicorn
import yaml

from apishield.authserver.config import TOKEN_PATH
from apishield.demo.api import create_demo_api
from apishield.demo.credentials import BrowserSignIn, DemoCredentials, ensure_credentials
from apishield.demo.store import DemoStore
from apishield.errors import ApiShieldError, ConfigError
from apishield.identity.settings import BuiltinIssuer
from apishield.policy.load import parse_policy
from apishield.policy.models import Policy
from apishield.server.devcert import trust_instructions

DEFAULT_PORT = 8443
DEFAULT_STATE_DIR = Path(".apishield-demo")
INFO_FILE = "demo.json"
DATABASE_FILE = "demo-api.sqlite3"
LOOPBACK = "127.0.0.1"


Credential = Literal["api_key", "token", "bad_token"]
"""What a guide request authenticates with: the demo's API key, the client-credentials token
the guide fetched into ``$TOKEN``, or a token that is not valid."""

TOKEN_VARIABLE = "TOKEN"  # noqa: S105 - a shell variable name
BAD_TOKEN = "not-a-valid-token"  # noqa: S105 - the guide's example of a refused token


class DemoRequestSpec(NamedTuple):
    """One request of the guide: what it shows, and how to send it."""

    title: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: str | None
    credential: Credential | None = None


_JSON = (("Content-Type", "application/json"),)
_ORDER = '{"customer_id": 1, "item": "brass gears", "quantity": 2}'
# 20 000 bytes of item: over the demo route's 16 KiB limit, under the sample API's own 64 KiB.
_OVERSIZED_ORDER = '{"customer_id": 1, "item": "' + "a" * 20_000 + '", "quantity": 1}'

DEMO_REQUESTS: tuple[DemoRequestSpec, ...] = (
    DemoRequestSpec(
        "200 allowed: the API key stands for customer 1 and reads that customer, without the"
        " API's Server and X-Powered-By headers",
        "GET",
        "/v2/customers/1",
        (),
        None,
        "api_key",
    ),
    DemoRequestSpec(
        "200 deprecated version: answered, with Deprecation, Sunset and Link headers",
        "GET",
        "/v1/customers",
        (),
        None,
        "api_key",
    ),
    DemoRequestSpec(
        "401 refused: no credential (only /health is public)", "GET", "/v2/customers/1", (), None
    ),
    DemoRequestSpec(
        "403 refused: customer 2 is not the key's own record (object-level rule)",
        "GET",
        "/v2/customers/2",
        (),
        None,
        "api_key",
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
        "api_key",
    ),
)
"""The guide's requests with the API key or none, in the order it prints them."""

TOKEN_REQUESTS: tuple[DemoRequestSpec, ...] = (
    DemoRequestSpec(
        "200 allowed: the orders, with the client's token", "GET", "/v2/orders", (), None, "token"
    ),
    DemoRequestSpec(
        "403 refused: the client's token lacks the scope customers:read",
        "GET",
        "/v2/customers",
        (),
        None,
        "token",
    ),
    DemoRequestSpec(
        "401 refused: a token that is not valid", "GET", "/v2/orders", (), None, "bad_token"
    ),
)
"""The guide's requests made with a bearer token, after the token request."""


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """Where the running demo is and what to sign in with; written to ``state_dir/demo.json``."""

    base_url: str
    ca_cert: Path
    upstream_url: str
    credentials: DemoCredentials | None = None
    browser_sign_in: BrowserSignIn | None = None
    state_dir: Path | None = None  # where demo.json is; not part of it

    def to_json(self) -> str:
        """The ``demo.json`` text."""
        data: dict[str, Any] = {
            "base_url": self.base_url,
            "ca_cert": str(self.ca_cert),
            "upstream_url": self.upstream_url,
        }
        if self.credentials is not None:
            data["credentials"] = self.credentials.to_json()
        if self.browser_sign_in is not None:
            data["browser_sign_in"] = self.browser_sign_in.to_json()
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


def credential_header(spec: DemoRequestSpec, api_key: str | None) -> tuple[str, str] | None:
    """The header ``spec`` authenticates with, as sent (``$TOKEN`` is left to the shell)."""
    if spec.credential == "api_key":
        if api_key is None:
            raise ValueError(f"{spec.title}: the guide needs the demo's API key")
        return ("X-API-Key", api_key)
    if spec.credential == "token":
        return ("Authorization", f"Bearer ${TOKEN_VARIABLE}")
    if spec.credential == "bad_token":
        return ("Authorization", f"Bearer {BAD_TOKEN}")
    return None


def curl_command(
    spec: DemoRequestSpec, base_url: str, ca_cert: Path, *, api_key: str | None = None
) -> str:
    """``spec`` as a curl command line that trusts only the demo CA and shows the headers."""
    words = ["curl", "-i", "--cacert", shlex.quote(str(ca_cert))]
    if spec.method != "GET" and not (spec.method == "POST" and spec.body is not None):
        words += ["-X", spec.method]
    credential = credential_header(spec, api_key)
    if credential is not None:
        name, value = credential
        # Double quotes, so that the shell expands $TOKEN (which holds only base64url and dots).
        words += [
            "-H",
            f'"{name}: {value}"' if spec.credential == "token" else shlex.quote(f"{name}: {value}"),
        ]
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


# The token response is JSON (RFC 6749 §5.1); Python is there wherever the demo runs.
_JSON_FIELD = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"


def token_command(base_url: str, ca_cert: Path, credentials: DemoCredentials) -> str:
    """The client-credentials token request (RFC 6749 §4.4), its token kept in ``$TOKEN``."""
    words = [
        "curl",
        "-s",
        "--cacert",
        shlex.quote(str(ca_cert)),
        "-u",
        shlex.quote(f"{credentials.client_id}:{credentials.client_secret}"),
        "-d",
        "grant_type=client_credentials",
        shlex.quote(base_url + TOKEN_PATH),
    ]
    return f"{TOKEN_VARIABLE}=$({' '.join(words)} | {_JSON_FIELD})"


def exchange_command(
    base_url: str, ca_cert: Path, credentials: DemoCredentials, sign_in: BrowserSignIn
) -> str:
    """The authorization-code exchange (RFC 6749 §4.1.3) with the PKCE verifier (RFC 7636
    §4.5), for the code the reader pastes into ``$CODE``."""
    words = ["curl", "-i", "--cacert", shlex.quote(str(ca_cert))]
    for field, value in (
        ("grant_type", "authorization_code"),
        ("client_id", credentials.browser_client_id),
        ("redirect_uri", credentials.redirect_uri),
        ("code_verifier", sign_in.code_verifier),
    ):
        words += ["--data-urlencode", shlex.quote(f"{field}={value}")]
    words += ["--data-urlencode", '"code=$CODE"', shlex.quote(base_url + TOKEN_PATH)]
    return " ".join(words)


def demo_guide(info: DemoInfo) -> str:
    """The text ``apishield demo`` prints once the gateway is up."""
    base_url, ca_cert = info.base_url, info.ca_cert
    credentials, sign_in = info.credentials, info.browser_sign_in
    lines = [
        f"apishield demo: the gateway is on {base_url}, in front of the sample API.",
        "",
        trust_instructions(ca_cert),
    ]
    if credentials is None or sign_in is None:
        raise ValueError("the guide needs the demo's credentials")
    lines += [
        "",
        "Every route but /health needs credentials. The demo made these in its store and keeps",
        f"them in {(info.state_dir or Path('.')) / INFO_FILE} (readable by you only). They are",
        "a demo's secrets, printed so you can try them: never handle real ones this way.",
        f"  API key (header X-API-Key, stands for customer 1): {credentials.api_key}",
        f"  client for client credentials: {credentials.client_id} / {credentials.client_secret}",
        f"  user for the browser sign-in:  {credentials.username} / {credentials.password}",
        "",
        "Try these (-i shows the headers; refusals are problem+json with a hint, because the",
        "demo policy runs in development mode):",
    ]
    for spec in DEMO_REQUESTS:
        command = curl_command(spec, base_url, ca_cert, api_key=credentials.api_key)
        lines += ["", f"# {spec.title}", command]
    lines += [
        "",
        "# A token for the client (client credentials grant), kept in $TOKEN for the next lines",
        token_command(base_url, ca_cert, credentials),
    ]
    for spec in TOKEN_REQUESTS:
        lines += ["", f"# {spec.title}", curl_command(spec, base_url, ca_cert)]
    lines += [
        "",
        "Browser sign-in (authorization code with PKCE):",
        f"1. Open this URL (in a browser that trusts the CA), sign in as {credentials.username}:",
        f"   {sign_in.authorize_url}",
        f"2. The browser is then sent to {credentials.redirect_uri}?code=…, a page that does not",
        "   load (nothing listens there). Copy the code from the address bar:",
        "CODE='paste the code here'",
        "3. Within 60 seconds, exchange it for tokens. The PKCE code_verifier below is the one",
        "   behind this start's URL; demo.json keeps it too (browser_sign_in.code_verifier):",
        exchange_command(base_url, ca_cert, credentials, sign_in),
        "",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines) + "\n"


def write_demo_info(state_dir: Path, info: DemoInfo) -> Path:
    """Write ``demo.json`` atomically (a script polling for it never reads half a file),
    readable by its owner only: it holds the demo's secrets."""
    path = state_dir / INFO_FILE
    partial = path.with_suffix(".json.partial")
    partial.unlink(missing_ok=True)  # a leftover may have another mode
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(info.to_json())
    partial.replace(path)
    return path


def read_demo_credentials(state_dir: Path) -> DemoCredentials | None:
    """The credentials a previous start wrote to ``demo.json``, or None."""
    try:
        data = json.loads((state_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return DemoCredentials.from_json(data) if isinstance(data, dict) else None


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
    print(demo_guide(info), flush=True)


def _audience(policy: Policy, issuer: str) -> str:
    """The built-in issuer's audience: what the demo's clients register as their resource."""
    issuers = policy.identity.issuers if policy.identity is not None else []
    builtin = next((i for i in issuers if isinstance(i, BuiltinIssuer)), None)
    if builtin is None:
        raise ApiShieldError("the demo policy must run the built-in issuer")
    audience = builtin.audience or issuer
    return audience if isinstance(audience, str) else audience[0]


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
    from apishield.authserver.config import default_issuer
    from apishield.pipeline.build import build_gateway
    from apishield.server.serve import GatewayServer, StartupError, bind_listener, resolve_tls

    state_dir, database = await asyncio.to_thread(_prepare, state_dir)
    # Bound first: the built-in issuer's URL (`iss`, the login form's address) names the
    # actual port, which `--port 0` leaves to the kernel.
    sockets = bind_listener(f"{LOOPBACK}:{port}")
    try:
        upstream, upstream_task, upstream_url = await _start_upstream(database)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    try:
        bound = sockets[0].getsockname()[1]
        try:
            policy = demo_policy(upstream_url=upstream_url, state_dir=state_dir, port=bound)
            # Creating the dev CA generates keys: keep that off the event loop.
            tls = await asyncio.to_thread(resolve_tls, policy)
            if tls.dev is None:
                raise ApiShieldError("the demo policy must use 'tls: dev'")
            base_url = f"https://localhost:{bound}"
            credentials = await ensure_credentials(
                policy,
                audience=_audience(policy, default_issuer(policy.listen.address)),
                previous=await asyncio.to_thread(read_demo_credentials, state_dir),
            )
            # The guide replaces the server's start lines, which say the same.
            gateway = GatewayServer(
                policy, build_gateway(policy), sockets=sockets, tls=tls, announce=False
            )
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
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
                base_url=base_url,
                ca_cert=tls.dev.ca_cert,
                upstream_url=upstream_url,
                credentials=credentials,
                browser_sign_in=BrowserSignIn.start(base_url, credentials),
                state_dir=state_dir,
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
