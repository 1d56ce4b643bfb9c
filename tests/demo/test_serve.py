"""The demo on the wire: the sample API and the gateway on loopback, over real TLS."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield.demo.run import DEMO_REQUESTS, INFO_FILE, DemoInfo, run_demo, serve_demo
from apishield.errors import ConfigError

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


async def start_demo(state_dir: Path, port: int = 0) -> tuple[asyncio.Task[None], DemoInfo]:
    ready: asyncio.Future[DemoInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_demo(
            port=port,
            state_dir=state_dir,
            install_signal_handlers=False,
            on_ready=ready.set_result,
        )
    )
    waiters: list[asyncio.Future[Any]] = [ready, task]
    await asyncio.wait(waiters, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        task.result()  # the reason it did not start
        raise AssertionError("the demo did not start")
    return task, ready.result()


async def stop_demo(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoInfo]:
    task, info = await start_demo(tmp_path / "state")
    try:
        yield info
    finally:
        await stop_demo(task)


def client_for(info: DemoInfo) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(info.ca_cert))
    return httpx.AsyncClient(base_url=info.base_url, verify=context, timeout=10)


async def test_demo_json_says_where_everything_is(demo: DemoInfo, tmp_path: Path) -> None:
    written = json.loads((tmp_path / "state" / INFO_FILE).read_text())
    assert written == {
        "base_url": demo.base_url,
        "ca_cert": str(demo.ca_cert),
        "upstream_url": demo.upstream_url,
    }
    assert demo.base_url.startswith("https://localhost:")
    assert demo.upstream_url.startswith("http://127.0.0.1:")
    assert demo.ca_cert.is_file()
    async with httpx.AsyncClient() as plain:
        upstream = await plain.get(demo.upstream_url + "/health")
    assert upstream.json() == {"status": "ok"}
    assert upstream.headers["server"] == "demo-api/1.0"


async def test_every_guide_request_gets_the_promised_answer(demo: DemoInfo) -> None:
    async with client_for(demo) as client:
        answers = [
            await client.request(
                spec.method,
                spec.path,
                headers=dict(spec.headers),
                content=None if spec.body is None else spec.body.encode(),
            )
            for spec in DEMO_REQUESTS
        ]
    allowed, deprecated, not_found, wrong_method, too_large, wrong_type, crash = answers

    assert allowed.status_code == 200
    assert allowed.json()["name"] == "Ada Lovelace"
    assert "server" not in allowed.headers
    assert "x-powered-by" not in allowed.headers
    assert "deprecation" not in allowed.headers

    assert deprecated.status_code == 200
    assert deprecated.json()[0]["customer_name"] == "Ada Lovelace"
    assert "deprecation" in deprecated.headers
    assert "2027" in deprecated.headers["sunset"]
    assert "migrate-to-v2" in deprecated.headers["link"]

    refusals = [
        (not_found, 404, "route_not_found"),
        (wrong_method, 405, "method_not_allowed"),
        (too_large, 413, "body_too_large"),
        (wrong_type, 415, "unsupported_media_type"),
        (crash, 500, "upstream_error_hidden"),
    ]
    for response, status, code in refusals:
        assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM)
        assert response.json()["code"] == code
        assert "server" not in response.headers
    assert "GET" in wrong_method.headers["allow"]
    assert "Traceback" not in crash.text
    assert "10.0.3.7" not in crash.text


async def test_orders_posted_through_the_gateway_reach_the_api(demo: DemoInfo) -> None:
    async with client_for(demo) as client:
        created = await client.post(
            "/v2/orders", json={"customer_id": 2, "item": "nanosecond wire", "quantity": 3}
        )
        assert created.status_code == 201
        order_path = created.headers["location"]
        assert (await client.get(order_path)).json()["item"] == "nanosecond wire"
        assert (await client.delete(order_path)).status_code == 204
        assert (await client.get(order_path)).status_code == 404


async def test_a_taken_port_is_a_config_error(demo: DemoInfo, tmp_path: Path) -> None:
    port = int(demo.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match="cannot listen"):
        await start_demo(tmp_path / "second", port=port)


def test_run_demo_exits_2_when_the_port_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_demo(port=port, state_dir=tmp_path) == 2
    assert f"apishield demo: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_run_demo_prints_the_guide_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    script = "import sys; from pathlib import Path; from apishield.demo.run import run_demo; "
    script += "sys.exit(run_demo(port=0, state_dir=Path(sys.argv[1])))"
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state_dir / INFO_FILE).exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "demo.json was not written"
            time.sleep(0.05)
        info = json.loads((state_dir / INFO_FILE).read_text())
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.startswith(f"apishield demo: the gateway is on {info['base_url']},")
    assert f"--cacert {info['ca_cert']} {info['base_url']}/v2/customers/1" in out
