from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from apishield.demo.api import MAX_BODY
from apishield.demo.run import (
    DEMO_REQUESTS,
    INFO_FILE,
    DemoInfo,
    DemoRequestSpec,
    curl_command,
    demo_guide,
    shell_body,
    write_demo_info,
)

BASE_URL = "https://localhost:8443"
# A space and a quote: the commands must survive them.
CA_NAME = "it's a dir/ca.crt"

FAKE_CURL = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$CURL_OUT/args"
cat > "$CURL_OUT/stdin"
"""


def run_shell(command: str, tmp_path: Path) -> tuple[list[str], bytes]:
    """Run ``command`` with a stand-in ``curl`` that records its arguments and stdin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    curl = bin_dir / "curl"
    curl.write_text(FAKE_CURL)
    curl.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CURL_OUT": str(tmp_path)}
    subprocess.run(["sh", "-c", command], check=True, env=env, stdin=subprocess.DEVNULL)
    args = (tmp_path / "args").read_bytes().decode().split("\0")[:-1]
    return args, (tmp_path / "stdin").read_bytes()


def parse_curl(args: list[str], stdin: bytes) -> tuple[str, list[tuple[str, str]], bytes | None]:
    """(method, headers, body) as curl would send them; checks the flags every line needs."""
    assert args[:3] == ["-i", "--cacert", CA_NAME]
    method, headers, body = "GET", [], None
    rest = iter(args[3:-1])
    for flag in rest:
        value = next(rest)
        if flag == "-X":
            method = value
        elif flag == "-H":
            name, _, header_value = value.partition(": ")
            headers.append((name, header_value))
        elif flag == "--data-binary":
            body = stdin if value == "@-" else value.encode()
            method = "POST" if method == "GET" else method
        else:
            raise AssertionError(f"unexpected curl flag {flag}")
    return method, headers, body


@pytest.mark.parametrize(
    "spec", [pytest.param(s, id=f"{i}-{s.title[:3]}") for i, s in enumerate(DEMO_REQUESTS)]
)
def test_each_curl_line_sends_its_request(spec: DemoRequestSpec, tmp_path: Path) -> None:
    command = curl_command(spec, BASE_URL, Path(CA_NAME))
    args, stdin = run_shell(command, tmp_path)
    method, headers, body = parse_curl(args, stdin)
    assert args[-1] == BASE_URL + spec.path
    assert method == spec.method
    assert headers == list(spec.headers)
    assert body == (None if spec.body is None else spec.body.encode())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty"),
        pytest.param("""{"name": "O'Brien", "x": "%s %d \\\\ $HOME `id`"}""", id="shell-metachars"),
        pytest.param("a" * 300, id="only-a-run"),
        pytest.param('{"a": "' + "a" * 20_000 + '", "b": "' + "'" * 400 + '"}', id="two-runs"),
        pytest.param("x" + "\n" * 300 + "y", id="newline-run"),
    ],
)
def test_shell_body_writes_the_body_exactly(body: str, tmp_path: Path) -> None:
    output = subprocess.run(
        ["sh", "-c", shell_body(body)], check=True, capture_output=True, stdin=subprocess.DEVNULL
    ).stdout
    assert output == body.encode()


def test_the_oversized_body_stays_a_short_line() -> None:
    (spec,) = [s for s in DEMO_REQUESTS if s.title.startswith("413")]
    assert spec.body is not None
    assert 16 * 1024 < len(spec.body) < MAX_BODY
    assert json.loads(spec.body)["customer_id"] == 1
    command = curl_command(spec, BASE_URL, Path(CA_NAME))
    assert len(command) < 250
    assert "head -c 20000 /dev/zero | tr '\\0' a" in command


def test_the_guide_requests_cover_each_demonstrated_outcome() -> None:
    assert [(s.title[:3], s.method, s.path) for s in DEMO_REQUESTS] == [
        ("200", "GET", "/v2/customers/1"),
        ("200", "GET", "/v1/customers"),
        ("404", "GET", "/v2/nope"),
        ("405", "DELETE", "/v2/customers/1"),
        ("413", "POST", "/v2/orders"),
        ("415", "POST", "/v2/orders"),
        ("500", "GET", "/v2/debug/crash"),
    ]


def test_guide_lists_the_base_url_the_ca_and_every_command() -> None:
    ca = Path("demo state/tls/ca.crt")
    guide = demo_guide(BASE_URL, ca)
    assert guide.startswith(f"apishield demo: the gateway is on {BASE_URL},")
    assert "curl --cacert 'demo state/tls/ca.crt'" in guide
    for spec in DEMO_REQUESTS:
        assert f"# {spec.title}\n{curl_command(spec, BASE_URL, ca)}\n" in guide
    assert guide.endswith("Stop with Ctrl-C.\n")


def test_demo_info_is_written_whole(tmp_path: Path) -> None:
    info = DemoInfo(
        base_url="https://localhost:9443",
        ca_cert=tmp_path / "tls" / "ca.crt",
        upstream_url="http://127.0.0.1:40000",
    )
    path = write_demo_info(tmp_path, info)
    assert path == tmp_path / INFO_FILE
    assert json.loads(path.read_text()) == {
        "base_url": "https://localhost:9443",
        "ca_cert": str(tmp_path / "tls" / "ca.crt"),
        "upstream_url": "http://127.0.0.1:40000",
    }
    assert [p.name for p in tmp_path.iterdir()] == [INFO_FILE]
