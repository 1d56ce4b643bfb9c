"""``apishield serve``: the gateway's listeners on uvicorn (uvloop, httptools).

One event loop runs the main listener (HTTPS per ``listen.tls``, or plain when ``tls: off``) and,
when ``listen.redirect_http`` is set, the plain listener that only redirects
(``HttpsRedirectApp``). Settings chosen on purpose:

- TLS comes from ``build_server_ssl_context`` (Mozilla intermediate), never uvicorn's own
  context, which allows CBC suites, every curve and session tickets.
- ``proxy_headers=False``: uvicorn would believe ``X-Forwarded-*`` from the addresses it is
  told to; apishield's transport stage resolves trusted proxies itself from the policy.
- No ``Server`` header (it advertises the stack), ``Date`` kept (RFC 9110 §6.6.1), no uvicorn
  access log (the audit stage writes one redacted event per request), no WebSocket upgrades
  (the pipeline does not inspect WebSocket frames, so it does not accept them).
- Graceful shutdown: on SIGTERM/SIGINT the listeners stop accepting, idle keep-alive
  connections close, and requests in flight get ``graceful_timeout`` seconds to finish.

Exit codes of ``serve_policy``: 0 after a clean stop, 1 when serving failed, 2 for a
configuration problem (policy, certificates, address in use).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import math
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn

from apishield.errors import ApiShieldError, ConfigError, PolicyError
from apishield.observe.auditlog import flush_audit_log, set_spill_dir
from apishield.policy.load import load_policy
from apishield.policy.models import Policy, TLSFiles, is_loopback_host, split_address
from apishield.server.devcert import DevCertificates, ensure_dev_certificates, trust_instructions
from apishield.server.redirect import HttpsRedirectApp
from apishield.server.slowclient import slow_client_protocol
from apishield.server.tls import build_server_ssl_context
from apishield.types import ASGIApp

logger = logging.getLogger("apishield.server")

DEFAULT_APP_FACTORY = "apishield.pipeline.build:build_gateway"
GRACEFUL_TIMEOUT = 30.0
BACKLOG = 2048


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for Windows
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class StartupError(ApiShieldError):
    """The application or a listener failed while starting; details are in the log."""


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """The main listener's TLS: a context (None when ``tls: off``) and how it was obtained."""

    context: ssl.SSLContext | None
    mode: Literal["files", "dev", "off"]
    cert: Path | None = None
    dev: DevCertificates | None = None


def resolve_tls(policy: Policy) -> ServerTLS:
    """Build the main listener's TLS from ``policy.listen.tls``; raises ``ConfigError``.

    ``dev`` creates or reuses the development CA in ``policy.state.dir`` (see ``devcert``).
    """
    tls = policy.listen.tls
    if isinstance(tls, TLSFiles):
        return ServerTLS(build_server_ssl_context(tls.cert, tls.key), "files", cert=tls.cert)
    if tls == "dev":
        dev = ensure_dev_certificates(policy.state.dir)
        return ServerTLS(build_server_ssl_context(dev.cert, dev.key), "dev", cert=dev.cert, dev=dev)
    if policy.listen.redirect_http is not None:
        raise ConfigError(
            "listen.redirect_http needs TLS on the main listener (listen.tls is 'off'); "
            "when a proxy in front terminates TLS, let it redirect"
        )
    return ServerTLS(None, "off")


def bind_listener(address: str, *, inheritable: bool = False) -> list[socket.socket]:
    """Listening TCP sockets for ``HOST:PORT`` (every address the host resolves to).

    With port 0 only the first address is bound, so that there is one port to report. Raises
    ``ConfigError`` (one line) when the address cannot be bound, e.g. already in use.
    """
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {address}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen: set[Any] = set()
    both_families = {info[0] for info in infos} >= {socket.AF_INET, socket.AF_INET6}
    try:
        for family, kind, proto, _, sockaddr in infos:
            if sockaddr in seen or (port == 0 and sockets):
                continue
            seen.add(sockaddr)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if sys.platform != "win32":
                # Rebinding right after a restart must not wait for TIME_WAIT to expire. (On
                # Windows this option would let another process steal the port.)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and both_families:
                # The IPv4 address gets its own socket; a dual-stack one would collide with it.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
            sock.set_inheritable(inheritable)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    return sockets


def _url(scheme: str, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def describe_listeners(
    tls: ServerTLS, main: Sequence[socket.socket], redirect: Sequence[socket.socket]
) -> str:
    """The one start line: where apishield listens and how TLS is set up."""
    scheme = "http" if tls.context is None else "https"
    where = ", ".join(_url(scheme, s) for s in main)
    if tls.mode == "files":
        how = f"TLS 1.2+ Mozilla intermediate, certificate {tls.cert}"
    elif tls.mode == "dev" and tls.dev is not None:
        how = f"TLS 1.2+ Mozilla intermediate, development CA {tls.dev.ca_cert}"
    else:
        how = "TLS off"
    line = f"apishield listening on {where} ({how})"
    if redirect:
        line += "; redirecting " + ", ".join(_url("http", s) for s in redirect) + " to HTTPS"
    return line


def announce(
    policy: Policy, tls: ServerTLS, main: Sequence[socket.socket], redirect: Sequence[socket.socket]
) -> None:
    """Log the start line, the dev CA's trust instructions, and the cleartext warning."""
    logger.info("%s", describe_listeners(tls, main, redirect))
    if tls.dev is not None:
        logger.info("%s", trust_instructions(tls.dev.ca_cert))
    host, _ = split_address(policy.listen.address)
    if tls.context is None and not is_loopback_host(host):
        logger.warning(
            "TLS is off on %s, which is not a loopback address: credentials and data cross "
            "the network in cleartext unless a proxy in front terminates TLS",
            policy.listen.address,
        )


class _Config(uvicorn.Config):
    """uvicorn's config with our own ``SSLContext`` in place of the one it would build."""

    def __init__(self, app: ASGIApp, *, ssl_context: ssl.SSLContext | None, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._apishield_ssl = ssl_context

    def load(self) -> None:
        super().load()
        self.ssl = self._apishield_ssl


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling (``GatewayServer`` owns the signals)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # uvicorn would re-raise the signal after shutdown, killing the caller

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


class GatewayServer:
    """The gateway's listeners for ``policy``, serving ``app`` (an ASGI 3 application).

    ``sockets`` and ``redirect_sockets`` are already listening sockets (workers inherit them
    from the parent); without them ``serve`` binds ``listen.address`` and
    ``listen.redirect_http``. ``tls`` is ``resolve_tls(policy)`` when already computed. After
    ``wait_started``, ``bound_port`` and ``redirect_port`` are
    the actual ports (useful with port 0). Set ``should_exit`` to stop gracefully.

    Trust assumption: ``app`` is the apishield pipeline (or a trusted app in tests); the
    server adds no request checks of its own beyond HTTP parsing and TLS.
    """

    def __init__(
        self,
        policy: Policy,
        app: ASGIApp,
        *,
        sockets: Sequence[socket.socket] | None = None,
        redirect_sockets: Sequence[socket.socket] | None = None,
        tls: ServerTLS | None = None,
        graceful_timeout: float = GRACEFUL_TIMEOUT,
        announce: bool = True,
    ) -> None:
        self.policy = policy
        self.app = app
        self.tls = tls if tls is not None else resolve_tls(policy)
        self.graceful_timeout = graceful_timeout
        self.bound_port: int | None = None
        self.redirect_port: int | None = None
        self._given = (list(sockets) if sockets else None, list(redirect_sockets or []))
        self._announce = announce
        self._servers: list[_Server] = []
        self._ran = False
        self._should_exit = False
        self._signals = 0
        self._started = asyncio.Event()
        self._finished = asyncio.Event()

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        for server in self._servers:
            server.should_exit = value

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The context the main listener serves with (None when ``tls: off``)."""
        return self.tls.context

    async def wait_started(self) -> None:
        """Return once every listener accepts connections; ``StartupError`` if serving ended."""
        waiters = [
            asyncio.ensure_future(self._started.wait()),
            asyncio.ensure_future(self._finished.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if not self._started.is_set():
            raise StartupError("the server stopped before it started; see the log")

    async def serve(self, *, install_signal_handlers: bool = True) -> None:
        """Run the listeners until ``should_exit`` (or SIGTERM/SIGINT) and a graceful stop.

        A second signal skips the wait for requests in flight. Raises ``ConfigError`` when an
        address cannot be bound and ``StartupError`` when the application fails to start.
        """
        if self._ran:
            raise RuntimeError("GatewayServer.serve() runs once")
        self._ran = True
        try:
            main, redirect = self._bind()
            try:
                https_port = main[0].getsockname()[1]
                self.bound_port = https_port
                self.redirect_port = redirect[0].getsockname()[1] if redirect else None
                self._servers = [_Server(self._config(self.app, self.tls.context))]
                if redirect:
                    redirect_app = HttpsRedirectApp(https_port=https_port)
                    self._servers.append(_Server(self._config(redirect_app, None)))
                self.should_exit = self._should_exit  # a stop asked for before serve() began
                # Everything imported and built so far lives as long as the process: move it
                # out of the collector's sight. Measured: a full collection over the ~100k
                # objects of a built gateway took ~50 ms, the whole of its p99 latency.
                gc.collect()
                gc.freeze()
                with self._signal_handlers(install_signal_handlers):
                    await self._run(main, redirect)
            finally:
                for sock in (*main, *redirect):
                    sock.close()
        finally:
            # The events of the last requests, still in this loop turn's batch, go out before
            # the process can exit (audit events are never dropped).
            flush_audit_log()
            self._finished.set()

    def _bind(self) -> tuple[list[socket.socket], list[socket.socket]]:
        given_main, given_redirect = self._given
        if given_main is not None:
            return given_main, given_redirect
        listen = self.policy.listen
        main = bind_listener(listen.address)
        try:
            redirect = bind_listener(listen.redirect_http) if listen.redirect_http else []
        except BaseException:
            for sock in main:
                sock.close()
            raise
        return main, redirect

    def _config(self, app: ASGIApp, context: ssl.SSLContext | None) -> _Config:
        return _Config(
            app,
            ssl_context=context,
            loop="uvloop" if _uvloop_factory() is not None else "asyncio",
            http=slow_client_protocol(self.policy.listen.client_timeouts),
            ws="none",
            lifespan="on",
            log_config=None,  # logging belongs to the application, not to uvicorn
            access_log=False,
            server_header=False,
            date_header=True,
            proxy_headers=False,
            timeout_graceful_shutdown=math.ceil(self.graceful_timeout),
            backlog=BACKLOG,
        )

    async def _run(self, main: list[socket.socket], redirect: list[socket.socket]) -> None:
        servers = self._servers
        tasks = [
            asyncio.create_task(self._serve_one(server, socks))
            for server, socks in zip(servers, (main, redirect), strict=False)
        ]
        ready = asyncio.ensure_future(asyncio.gather(*(s.ready.wait() for s in servers)))
        try:
            first: list[asyncio.Future[Any]] = [ready, *tasks]
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if ready.done() and not self._should_exit:
                self._started.set()
                if self._announce:
                    announce(self.policy, self.tls, main, redirect)
            # When one listener ends (stop requested, or it failed), stop the others too.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self.should_exit = True
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @staticmethod
    async def _serve_one(server: _Server, sockets: list[socket.socket]) -> None:
        try:
            await server.serve(sockets=sockets)
        except SystemExit:
            # uvicorn exits the process when the app's lifespan startup fails; a task must not.
            server.should_exit = True
            raise StartupError(
                "the application failed to start (lifespan startup); see the log"
            ) from None

    @contextlib.contextmanager
    def _signal_handlers(self, install: bool) -> Iterator[None]:
        if not install or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        try:
            for sig in handled:
                loop.add_signal_handler(sig, self._on_signal)
        except NotImplementedError:  # pragma: no cover - Windows event loops
            previous = {sig: signal.signal(sig, lambda *_: self._on_signal()) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            return
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("apishield stopping: finishing requests in flight")
            self.should_exit = True
        else:
            logger.warning("apishield stopping now: requests in flight are abandoned")
            for server in self._servers:
                server.force_exit = True


def load_app_factory(spec: str) -> Callable[[Policy], ASGIApp]:
    """The ``module:attribute`` callable that builds the ASGI app from a policy."""
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the application factory {spec!r}: {exc}") from None
    if not callable(factory):
        raise ConfigError(f"the application factory {spec!r} is not callable")
    result: Callable[[Policy], ASGIApp] = factory
    return result


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on a new uvloop event loop (asyncio's where uvloop is unavailable)."""
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        runner.run(main)


def configure_logging() -> None:
    """JSON-line logs on stderr (``observe/logs.py``), unless the host program set up its own."""
    from apishield.observe.logs import configure_logging as json_logs

    if not logging.getLogger().handlers and not logging.getLogger("apishield").handlers:
        json_logs()


def serve_policy(
    policy_path: Path, *, workers: int = 1, app_factory: str = DEFAULT_APP_FACTORY
) -> int:
    """The ``apishield serve -c FILE [--workers N]`` command; returns the exit code.

    Loads the policy (a problem is printed to stderr as one located line, exit 2), builds the
    gateway with ``app_factory`` (``module:callable`` taking the ``Policy``; the default is
    the standalone gateway) and serves until SIGTERM/SIGINT. ``workers > 1`` runs that many
    processes on the same listening sockets (``apishield.server.workers``).
    """
    if workers < 1:
        print("apishield: --workers must be 1 or more", file=sys.stderr)
        return 2
    configure_logging()
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from apishield.policy.audit import log_findings
    from apishield.schema.loader import SpecError, load_openapi

    set_spill_dir(policy.state.dir)
    try:
        spec = load_openapi(policy.openapi.spec) if policy.openapi is not None else None
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    log_findings(policy, str(policy_path), spec=spec, workers=workers)
    if workers > 1:
        from apishield.server.workers import run_workers

        return run_workers(policy_path, policy, workers=workers, app_factory=app_factory)
    try:
        tls = resolve_tls(policy)  # certificate problems first: they need no app to report
        app = load_app_factory(app_factory)(policy)
        server = GatewayServer(policy, app, tls=tls)
        run_async(server.serve())
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"apishield: {exc}", file=sys.stderr)
        return 1
    return 0
