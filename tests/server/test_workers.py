"""``serve_policy`` as ``apishield serve`` runs it: a real process, one or several workers."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .server_support import PID_DIR_ENV

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LISTENING = re.compile(
    r"apishield listening on https://127\.0\.0\.1:(\d+) .*redirecting http://127\.0\.0\.1:(\d+)"
)
SCRIPT = (
    "import sys; from pathlib import Path; from apishield.server import serve_policy; "
    "sys.exit(serve_policy(Path(sys.argv[1]), workers=int(sys.argv[2]), "
    "app_factory='server_support:' + sys.argv[3]))"
)
POLICY = """\
apishield: 1
listen:
  address: 127.0.0.1:0
  tls: dev
  redirect_http: 127.0.0.1:0
state:
  dir: state
"""

pytestmark = pytest.mark.slow


class Gateway:
    """``serve_policy`` in a child process; its stderr is collected line by line."""

    def __init__(self, tmp_path: Path, workers: int, factory: str = "build_app") -> None:
        self.pid_dir = tmp_path / "pids"
        self.pid_dir.mkdir()
        policy = tmp_path / "apishield.yaml"
        policy.write_text(POLICY)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
        env[PID_DIR_ENV] = str(self.pid_dir)
        self.process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(policy), str(workers), factory],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read)
        self._reader.start()
        self.ca = tmp_path / "state" / "tls" / "ca.crt"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_ports(self, timeout: float = 30) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := LISTENING.search(line):
                    return int(match[1]), int(match[2])
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError("no start line:\n" + "".join(self.lines))

    def wait_for_workers(self, count: int, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [int(p.name) for p in self.pid_dir.iterdir() if p.name.isdigit()]
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"workers did not start:\n{''.join(self.lines)}")

    def client(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), timeout=30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._reader.join(30)
        assert self.process.stderr is not None
        self.process.stderr.close()


StartGateway = Callable[..., Gateway]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StartGateway]:
    gateways: list[Gateway] = []

    def start(workers: int, factory: str = "build_app") -> Gateway:
        gateways.append(Gateway(tmp_path, workers, factory))
        return gateways[-1]

    yield start
    for gw in gateways:
        gw.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"  # a zombie is finished, only not yet reaped by its new parent


def _wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.mark.parametrize(
    "workers", [pytest.param(1, id="one-process"), pytest.param(2, id="two-workers")]
)
def test_serves_and_stops_on_sigterm(gateway: StartGateway, workers: int) -> None:
    gw = gateway(workers)
    https_port, http_port = gw.wait_for_ports()
    pids = gw.wait_for_workers(workers)
    if workers == 1:
        assert pids == [gw.process.pid]
    else:
        assert gw.process.pid not in pids
    with gw.client() as client:
        for _ in range(4):
            response = client.get(f"https://localhost:{https_port}/hello")
            assert response.status_code == 200
            assert response.json()["pid"] in pids
        redirect = client.get(f"http://127.0.0.1:{http_port}/hello?x=1")
        assert redirect.status_code == 301
        assert redirect.headers["location"] == f"https://127.0.0.1:{https_port}/hello?x=1"

        # a request in flight when SIGTERM arrives still gets its answer
        answers: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: answers.append(client.get(f"https://localhost:{https_port}/slow"))
        )
        slow.start()
        deadline = time.monotonic() + 30
        while not (gw.pid_dir / "slow-entered").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        gw.process.send_signal(signal.SIGTERM)
        slow.join(30)
    assert answers and answers[0].status_code == 200
    assert gw.process.wait(45) == 0
    assert _wait_gone(pids) == []
    assert "Traceback" not in "".join(gw.lines)


def test_workers_leave_when_the_parent_is_killed(gateway: StartGateway) -> None:
    gw = gateway(2)
    gw.wait_for_ports()
    pids = gw.wait_for_workers(2)
    gw.process.kill()
    gw.process.wait(30)
    assert _wait_gone(pids, timeout=20) == []


@pytest.mark.parametrize(
    "workers", [pytest.param(1, id="one-process"), pytest.param(2, id="two-workers")]
)
def test_app_that_cannot_be_built_exits_2_in_one_line(gateway: StartGateway, workers: int) -> None:
    gw = gateway(workers, "build_failing_app")
    assert gw.process.wait(45) == 2
    gw.close()
    errors = [line for line in gw.lines if "stand-in" in line]
    assert errors and all(
        line == "stand-in: upstream.url is unreachable by design\n" for line in errors
    )
    assert "Traceback" not in "".join(gw.lines)
