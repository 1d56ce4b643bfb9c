"""GatewayServer and ``serve_policy`` on real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from apishield.errors import ConfigError
from apishield.pipeline.build import build_pipeline
from apishield.policy.models import Policy
from apishield.server import DevCertificates, GatewayServer, StartupError, serve_policy
from apishield.server.serve import ServerTLS, announce
from apishield.types import ASGIApp

from .server_support import StandInApp, policy_for


def _verify(dev: DevCertificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(dev.ca_cert))


class Running:
    """A GatewayServer serving in the test's event loop."""

    def __init__(self, server: GatewayServer, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    @property
    def url(self) -> str:
        scheme = "http" if self.server.ssl_context is None else "https"
        return f"{scheme}://localhost:{self.server.bound_port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30)


Starter = Callable[[Policy, ASGIApp], Awaitable[Running]]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    running: list[Running] = []

    async def starter(policy: Policy, app: ASGIApp) -> Running:
        server = GatewayServer(policy, app)
        task = asyncio.create_task(server.serve(install_signal_handlers=False))
        run = Running(server, task)
        running.append(run)
        await asyncio.wait_for(server.wait_started(), 30)
        return run

    yield starter
    for run in running:
        if not run.task.done():
            await run.stop()


async def test_https_end_to_end(
    start: Starter, state_dir: Path, dev_certs: DevCertificates
) -> None:
    run = await start(policy_for(state_dir), StandInApp())
    async with httpx.AsyncClient(verify=_verify(dev_certs)) as client:
        response = await client.get(
            run.url + "/hello",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"},
        )
    assert response.status_code == 200
    # proxy_headers is off: the app sees the real peer and scheme, not the client's claims
    assert response.json() == {
        "pid": os.getpid(),
        "scheme": "https",
        "client": "127.0.0.1",
        "path": "/hello",
    }
    assert "server" not in response.headers
    assert "date" in response.headers


async def test_tls_files_mode(start: Starter, tmp_path: Path, dev_certs: DevCertificates) -> None:
    policy = policy_for(tmp_path, tls={"cert": str(dev_certs.cert), "key": str(dev_certs.key)})
    run = await start(policy, StandInApp())
    assert not (tmp_path / "tls").exists()  # no dev CA made when files are given
    async with httpx.AsyncClient(verify=_verify(dev_certs)) as client:
        response = await client.get(run.url + "/")
    assert response.status_code == 200


async def test_tls_off_serves_plain_http(start: Starter, tmp_path: Path) -> None:
    run = await start(policy_for(tmp_path, tls="off"), StandInApp())
    assert run.server.ssl_context is None
    async with httpx.AsyncClient() as client:
        response = await client.get(run.url + "/")
    assert response.json()["scheme"] == "http"


async def test_hsts_on_https_through_the_pipeline(
    start: Starter, state_dir: Path, dev_certs: DevCertificates
) -> None:
    route = {"path": "/hello", "methods": ["GET"], "allow": "public"}
    policy = policy_for(state_dir, routes=[route], redirect_http="127.0.0.1:0")
    run = await start(policy, build_pipeline(policy, StandInApp()))
    async with httpx.AsyncClient(verify=_verify(dev_certs)) as client:
        secure = await client.get(run.url + "/hello")
        plain = await client.get(f"http://localhost:{run.server.redirect_port}/hello")
    assert secure.status_code == 200
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert plain.status_code == 301
    assert "strict-transport-security" not in plain.headers


async def test_graceful_shutdown_finishes_requests_in_flight(
    start: Starter, state_dir: Path, dev_certs: DevCertificates
) -> None:
    app = StandInApp(slow_seconds=1.0)
    run = await start(policy_for(state_dir), app)
    async with httpx.AsyncClient(verify=_verify(dev_certs)) as client:
        slow = asyncio.create_task(client.get(run.url + "/slow"))
        await asyncio.wait_for(app.entered.wait(), 10)
        run.server.should_exit = True
        response = await asyncio.wait_for(slow, 30)
    assert response.status_code == 200
    assert response.json()["path"] == "/slow"
    await asyncio.wait_for(run.task, 30)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", run.server.bound_port)


async def test_sigterm_stops_gracefully_and_restores_handlers(
    state_dir: Path, dev_certs: DevCertificates
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    app = StandInApp(slow_seconds=0.5)
    server = GatewayServer(policy_for(state_dir), app)
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.wait_started(), 30)
    async with httpx.AsyncClient(verify=_verify(dev_certs)) as client:
        slow = asyncio.create_task(client.get(f"https://localhost:{server.bound_port}/slow"))
        await asyncio.wait_for(app.entered.wait(), 10)
        os.kill(os.getpid(), signal.SIGTERM)
        response = await asyncio.wait_for(slow, 30)
    await asyncio.wait_for(task, 30)
    assert response.status_code == 200
    assert signal.getsignal(signal.SIGTERM) == before


async def test_start_line_logged(
    start: Starter, state_dir: Path, dev_certs: DevCertificates, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="apishield.server"):
        run = await start(policy_for(state_dir, redirect_http="127.0.0.1:0"), StandInApp())
    lines = [r.getMessage() for r in caplog.records if r.name == "apishield.server"]
    assert lines[0] == (
        f"apishield listening on https://127.0.0.1:{run.server.bound_port} (TLS 1.2+ Mozilla "
        f"intermediate, development CA {dev_certs.ca_cert}); redirecting "
        f"http://127.0.0.1:{run.server.redirect_port} to HTTPS"
    )
    assert f"curl --cacert {dev_certs.ca_cert}" in lines[1]


@pytest.mark.parametrize(
    ("address", "warned"),
    [
        pytest.param("0.0.0.0:8080", True, id="any-address"),
        pytest.param("192.0.2.10:8080", True, id="public-address"),
        pytest.param("127.0.0.1:8080", False, id="loopback"),
        pytest.param("localhost:8080", False, id="localhost"),
        pytest.param("[::1]:8080", False, id="ipv6-loopback"),
    ],
)
def test_tls_off_warns_off_loopback(
    address: str, warned: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = policy_for(tmp_path, tls="off", address=address)
    with caplog.at_level(logging.INFO, logger="apishield.server"):
        announce(policy, ServerTLS(None, "off"), [], [])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) is warned
    if warned:
        assert "cleartext" in warnings[0].getMessage()


def test_redirect_without_tls_is_a_config_error(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, tls="off", redirect_http="127.0.0.1:0")
    with pytest.raises(ConfigError, match="redirect_http needs TLS"):
        GatewayServer(policy, StandInApp())


async def test_address_in_use_is_a_config_error(state_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = GatewayServer(policy_for(state_dir, address=f"127.0.0.1:{port}"), StandInApp())
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.serve(install_signal_handlers=False)
    with pytest.raises(StartupError):
        await server.wait_started()


async def test_failed_app_startup_is_a_startup_error(state_dir: Path) -> None:
    server = GatewayServer(policy_for(state_dir), StandInApp(fail_startup=True))
    task = asyncio.create_task(server.serve(install_signal_handlers=False))
    with pytest.raises(StartupError):
        await asyncio.wait_for(server.wait_started(), 30)
    with pytest.raises(StartupError, match="failed to start"):
        await asyncio.wait_for(task, 30)


async def test_serve_runs_once(start: Starter, state_dir: Path) -> None:
    run = await start(policy_for(state_dir), StandInApp())
    with pytest.raises(RuntimeError):
        await run.server.serve(install_signal_handlers=False)


# --- serve_policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "{path}: no such file", id="missing"),
        pytest.param(
            "apishield: 1\nlisten:\n  adress: 127.0.0.1:1\n",
            "{path}:3: listen.adress:",
            id="unknown-key",
        ),
        pytest.param("apishield: 1\nmode: [\n", "{path}:", id="bad-yaml"),
        pytest.param(
            "apishield: 1\nopenapi: spec.yaml\n",
            "{dir}/spec.yaml:",
            id="missing-openapi-spec",
        ),
        pytest.param(
            "apishield: 1\nlisten:\n  address: 127.0.0.1:0\n"
            "  tls: {cert: nope.crt, key: nope.key}\n",
            "TLS certificate {dir}/nope.crt: no such file",
            id="missing-certificate",
        ),
    ],
)
def test_serve_policy_reports_one_line(
    content: str | None, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "apishield.yaml"
    if content is not None:
        path.write_text(content)
    code = serve_policy(path, app_factory=f"{StandInApp.__module__}:build_app")
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(expected.format(path=path, dir=tmp_path))
    assert "Traceback" not in err


def test_serve_policy_refuses_zero_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_policy(tmp_path / "x.yaml", workers=0) == 2
    assert "--workers" in capsys.readouterr().err
