"""`apishield init` then `apishield check` and `apishield serve`, as a user runs them."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ORDERS = Path(__file__).parent / "specs" / "orders"
LISTENING = re.compile(r"apishield listening on https://127\.0\.0\.1:(\d+) ")
PROBLEM = "application/problem+json"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apishield", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ORDERS, tmp_path / "api")
    return tmp_path


def init(
    project: Path, *extra: str, upstream: str = "http://127.0.0.1:8000"
) -> subprocess.CompletedProcess[str]:
    return run("init", "--openapi", "api/openapi.yaml", "--upstream", upstream, *extra, cwd=project)


def test_init_writes_the_policy_and_reports_what_it_could_not_route(project: Path) -> None:
    result = init(project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "wrote apishield.yaml: 8 route(s) for 9 operation(s), all closed until you fill in "
        "`allow`; `apishield check` lists what is still open\n"
    )
    assert result.stderr == (
        "apishield: api/openapi.yaml: GET /v2/exports/{name}.csv: written commented out: the "
        "segment '{name}.csv' mixes a parameter with text; a policy parameter fills a whole "
        "path segment\n"
    )
    text = (project / "apishield.yaml").read_text()
    assert 'spec: "api/openapi.yaml"' in text


def test_init_refuses_to_overwrite_without_force(project: Path) -> None:
    (project / "apishield.yaml").write_text("apishield: 1\n")
    result = init(project)
    assert result.returncode == 2
    assert result.stderr == "apishield: apishield.yaml exists: pass --force to overwrite it\n"
    assert (project / "apishield.yaml").read_text() == "apishield: 1\n"
    forced = init(project, "--force", "-o", "apishield.yaml")
    assert forced.returncode == 0, forced.stderr
    assert "routes:" in (project / "apishield.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--upstream", "ftp://x"),
            "apishield: --upstream: 'ftp://x' is not an http:// or https:// URL\n",
            id="bad-upstream",
        ),
        pytest.param(
            ("--openapi", "nope.yaml"),
            "apishield: nope.yaml: no such file\n",
            id="missing-spec",
        ),
    ],
)
def test_init_errors_are_one_line(project: Path, args: tuple[str, ...], message: str) -> None:
    options = {"--openapi": "api/openapi.yaml", "--upstream": "http://127.0.0.1:8000"}
    options[args[0]] = args[1]
    result = run("init", *[part for pair in options.items() for part in pair], cwd=project)
    assert result.returncode == 2
    assert result.stderr == message
    assert not (project / "apishield.yaml").exists()


def test_init_with_a_broken_spec_names_the_spec_line(project: Path) -> None:
    spec = project / "api" / "components" / "schemas.yaml"
    spec.write_text(spec.read_text().replace('$ref: "#/Coupon"', '$ref: "#/Coupons"', 1))
    result = init(project)
    assert result.returncode == 2
    assert result.stderr == (
        "apishield: api/components/schemas.yaml:19: Order.properties.coupon: $ref '#/Coupons': "
        "api/components/schemas.yaml has nothing at #/Coupons\n"
    )


def test_check_lists_what_is_still_open(project: Path) -> None:
    assert init(project).returncode == 0
    result = run("check", "apishield.yaml", "--json", cwd=project)
    assert result.returncode == 0, result.stderr  # nothing high: closed is safe
    rows = json.loads(result.stdout)
    codes = [row["code"] for row in rows]
    assert codes.count("route_closed") == 8
    assert codes.count("operation_not_routed") == 1
    assert "route_not_in_spec" not in codes
    unrouted = next(row for row in rows if row["code"] == "operation_not_routed")
    assert unrouted["severity"] == "low"
    assert unrouted["field"] == "routes"
    plain = run("check", "apishield.yaml", cwd=project)
    assert "LOW    operation_not_routed: routes: GET /v2/exports/{name}.csv (getExport)" in (
        plain.stdout
    )


def test_check_reports_a_broken_spec_in_one_line(project: Path) -> None:
    assert init(project).returncode == 0
    (project / "api" / "openapi.yaml").write_text("swagger: '2.0'\n")
    result = run("check", "apishield.yaml", cwd=project)
    assert result.returncode == 2
    assert result.stderr == (
        f"apishield: {project / 'api' / 'openapi.yaml'}:1: swagger: Swagger 2.0 is not "
        "supported: convert the spec to OpenAPI 3 (3.0 or 3.1) first\n"
    )


# -- serve accepts what init wrote ------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        body = b'{"status": "ok"}'
        self.send_response(200 if self.path == "/health" else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


@pytest.mark.slow
def test_serve_accepts_the_written_policy(project: Path, upstream: str) -> None:
    assert init(project, upstream=upstream).returncode == 0
    policy = project / "apishield.yaml"
    text = policy.read_text()
    # what a user does next: a free port for the test, and one route opened
    text = text.replace("  address: 127.0.0.1:8443\n", "  address: 127.0.0.1:0\n")
    text = text.replace(
        '  - path: "/health"\n    methods: [GET]\n',
        '  - path: "/health"\n    methods: [GET]\n    allow: public\n',
    )
    policy.write_text(text)
    process = subprocess.Popen(
        [sys.executable, "-m", "apishield", "serve", "-c", "apishield.yaml"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")))
    reader.start()
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            port = next((m[1] for line in list(lines) if (m := LISTENING.search(line))), None)
            assert process.poll() is None, "".join(lines)
            time.sleep(0.05)
        assert port is not None, "".join(lines)
        ca = ssl.create_default_context(cafile=str(project / ".apishield" / "tls" / "ca.crt"))
        with httpx.Client(base_url=f"https://localhost:{port}", verify=ca, timeout=30) as client:
            closed = client.get("/v2/orders")
            opened = client.get("/health")
            unknown = client.get("/v3/orders")
    finally:
        process.terminate()
        process.wait(30)
        reader.join(30)
        process.stderr.close()
    assert closed.status_code == 403
    assert closed.headers["content-type"].startswith(PROBLEM)
    assert closed.json()["code"] == "route_not_allowed"
    assert opened.status_code == 200
    assert opened.json() == {"status": "ok"}
    assert opened.headers["strict-transport-security"].startswith("max-age=")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "route_not_found"
