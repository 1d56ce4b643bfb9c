from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from apishield.authserver.pkce import s256
from apishield.demo.api import MAX_BODY
from apishield.demo.credentials import BrowserSignIn, DemoCredentials
from apishield.demo.run import (
    BAD_TOKEN,
    DEMO_REQUESTS,
    INFO_FILE,
    TOKEN_REQUESTS,
    DemoInfo,
    DemoRequestSpec,
    curl_command,
    demo_guide,
    exchange_command,
    read_demo_credentials,
    shell_body,
    token_command,
    write_demo_info,
)

BASE_URL = "https://localhost:8443"
# A space and a quote: the commands must survive them.
CA_NAME = "it's a dir/ca.crt"
API_KEY = "ask_test_0123456789abcdefghijABCDEFGHIJ0123456789"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
CREDENTIALS = DemoCredentials(
    api_key=API_KEY,
    client_id="demo-service",
    client_secret="s3cret-with-'quote",
    username="demo",
    password="a password here",
    browser_client_id="demo-browser",
    redirect_uri="http://127.0.0.1:8976/callback",
)

FAKE_CURL = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$CURL_OUT/args"
cat > "$CURL_OUT/stdin"
printf '%s' "$CURL_REPLY"
"""


def run_shell(
    command: str, tmp_path: Path, reply: str = "", **env_vars: str
) -> tuple[list[str], bytes, str]:
    """Run ``command`` with a stand-in ``curl`` that records its arguments and stdin and
    prints ``reply``; returns them and the command's output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    curl = bin_dir / "curl"
    curl.write_text(FAKE_CURL)
    curl.chmod(0o755)
    path = f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {
        **os.environ,
        "PATH": path,
        "CURL_OUT": str(tmp_path),
        "CURL_REPLY": reply,
        **env_vars,
    }
    done = subprocess.run(
        ["sh", "-c", command],
        check=True,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    args = (tmp_path / "args").read_bytes().decode().split("\0")[:-1]
    return args, (tmp_path / "stdin").read_bytes(), done.stdout


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


SENT_CREDENTIAL = {
    None: [],
    "api_key": [("X-API-Key", API_KEY)],
    "token": [("Authorization", f"Bearer {TOKEN}")],
    "bad_token": [("Authorization", f"Bearer {BAD_TOKEN}")],
}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(s, id=f"{i}-{s.title[:3]}")
        for i, s in enumerate((*DEMO_REQUESTS, *TOKEN_REQUESTS))
    ],
)
def test_each_curl_line_sends_its_request(spec: DemoRequestSpec, tmp_path: Path) -> None:
    command = curl_command(spec, BASE_URL, Path(CA_NAME), api_key=API_KEY)
    args, stdin, _ = run_shell(command, tmp_path, TOKEN=TOKEN)  # as the token line leaves it
    method, headers, body = parse_curl(args, stdin)
    assert args[-1] == BASE_URL + spec.path
    assert method == spec.method
    assert headers == SENT_CREDENTIAL[spec.credential] + list(spec.headers)
    assert body == (None if spec.body is None else spec.body.encode())


def test_the_token_line_requests_a_token_and_keeps_it(tmp_path: Path) -> None:
    """The client-credentials request (RFC 6749 §4.4.2), and $TOKEN set from the JSON reply."""
    command = token_command(BASE_URL, Path(CA_NAME), CREDENTIALS) + '; printf %s "$TOKEN"'
    reply = json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 600})
    args, _, out = run_shell(command, tmp_path, reply)
    assert args == [
        "-s",
        "--cacert",
        CA_NAME,
        "-u",
        "demo-service:s3cret-with-'quote",
        "-d",
        "grant_type=client_credentials",
        BASE_URL + "/oauth2/token",
    ]
    assert out == TOKEN


def test_the_exchange_line_sends_the_code_and_the_verifier(tmp_path: Path) -> None:
    sign_in = BrowserSignIn.start(BASE_URL, CREDENTIALS)
    command = exchange_command(BASE_URL, Path(CA_NAME), CREDENTIALS, sign_in)
    args, _, _ = run_shell(command, tmp_path, CODE="code-from-the-address-bar")
    assert args[:3] == ["-i", "--cacert", CA_NAME]
    assert args[-1] == BASE_URL + "/oauth2/token"
    fields = args[3:-1]
    assert fields[::2] == ["--data-urlencode"] * 5
    assert dict(f.split("=", 1) for f in fields[1::2]) == {
        "grant_type": "authorization_code",
        "client_id": "demo-browser",
        "redirect_uri": "http://127.0.0.1:8976/callback",
        "code_verifier": sign_in.code_verifier,
        "code": "code-from-the-address-bar",
    }


def test_the_sign_in_url_carries_a_real_s256_challenge() -> None:
    """AUTH 14: the printed URL's challenge is S256 of the printed verifier."""
    sign_in = BrowserSignIn.start(BASE_URL, CREDENTIALS)
    url = urlsplit(sign_in.authorize_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == BASE_URL + "/oauth2/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query == {
        "response_type": "code",
        "client_id": "demo-browser",
        "redirect_uri": "http://127.0.0.1:8976/callback",
        "scope": "customers:read orders:read",
        "state": sign_in.state,
        "code_challenge": s256(sign_in.code_verifier),
        "code_challenge_method": "S256",
    }
    assert 43 <= len(sign_in.code_verifier) <= 128  # RFC 7636 §4.1
    assert BrowserSignIn.start(BASE_URL, CREDENTIALS).code_verifier != sign_in.code_verifier


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
    assert [(s.title[:3], s.method, s.path, s.credential) for s in DEMO_REQUESTS] == [
        ("200", "GET", "/v2/customers/1", "api_key"),
        ("200", "GET", "/v1/customers", "api_key"),
        ("401", "GET", "/v2/customers/1", None),
        ("403", "GET", "/v2/customers/2", "api_key"),
        ("404", "GET", "/v2/nope", None),
        ("405", "DELETE", "/v2/customers/1", None),
        ("413", "POST", "/v2/orders", None),
        ("415", "POST", "/v2/orders", None),
        ("500", "GET", "/v2/debug/crash", "api_key"),
    ]
    assert [(s.title[:3], s.method, s.path, s.credential) for s in TOKEN_REQUESTS] == [
        ("200", "GET", "/v2/orders", "token"),
        ("403", "GET", "/v2/customers", "token"),
        ("401", "GET", "/v2/orders", "bad_token"),
    ]


def guide_info(state_dir: Path) -> DemoInfo:
    return DemoInfo(
        base_url=BASE_URL,
        ca_cert=state_dir / "tls" / "ca.crt",
        upstream_url="http://127.0.0.1:40000",
        credentials=CREDENTIALS,
        browser_sign_in=BrowserSignIn.start(BASE_URL, CREDENTIALS),
        state_dir=state_dir,
    )


def test_guide_lists_the_base_url_the_ca_the_credentials_and_every_command() -> None:
    info = guide_info(Path("demo state"))
    assert info.browser_sign_in is not None
    ca = info.ca_cert
    guide = demo_guide(info)
    assert guide.startswith(f"apishield demo: the gateway is on {BASE_URL},")
    assert "curl --cacert 'demo state/tls/ca.crt'" in guide
    assert "demo state/demo.json (readable by you only)" in guide
    for spec in DEMO_REQUESTS:
        assert f"# {spec.title}\n{curl_command(spec, BASE_URL, ca, api_key=API_KEY)}\n" in guide
    assert f"\n{token_command(BASE_URL, ca, CREDENTIALS)}\n" in guide
    for spec in TOKEN_REQUESTS:
        assert f"# {spec.title}\n{curl_command(spec, BASE_URL, ca)}\n" in guide
    assert f"   {info.browser_sign_in.authorize_url}\n" in guide
    assert f"\n{exchange_command(BASE_URL, ca, CREDENTIALS, info.browser_sign_in)}\n" in guide
    for secret in (API_KEY, "demo-service / s3cret-with-'quote", "demo / a password here"):
        assert secret in guide
    assert guide.endswith("Stop with Ctrl-C.\n")


def test_demo_info_is_written_whole_and_private(tmp_path: Path) -> None:
    info = guide_info(tmp_path)
    assert info.browser_sign_in is not None
    path = write_demo_info(tmp_path, info)
    assert path == tmp_path / INFO_FILE
    assert json.loads(path.read_text()) == {
        "base_url": BASE_URL,
        "ca_cert": str(tmp_path / "tls" / "ca.crt"),
        "upstream_url": "http://127.0.0.1:40000",
        "credentials": {
            "api_key": API_KEY,
            "client_id": "demo-service",
            "client_secret": "s3cret-with-'quote",
            "username": "demo",
            "password": "a password here",
            "browser_client_id": "demo-browser",
            "redirect_uri": "http://127.0.0.1:8976/callback",
        },
        "browser_sign_in": {
            "code_verifier": info.browser_sign_in.code_verifier,
            "state": info.browser_sign_in.state,
            "authorize_url": info.browser_sign_in.authorize_url,
        },
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the demo's secrets
    assert [p.name for p in tmp_path.iterdir()] == [INFO_FILE]
    assert read_demo_credentials(tmp_path) == CREDENTIALS


def test_rewriting_demo_info_keeps_it_private(tmp_path: Path) -> None:
    (tmp_path / INFO_FILE).write_text("{}")
    (tmp_path / INFO_FILE).chmod(0o644)
    (tmp_path / "demo.json.partial").write_text("left over")
    path = write_demo_info(tmp_path, guide_info(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_demo_credentials(tmp_path) == CREDENTIALS


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(None, id="absent"),
        pytest.param("not json", id="not-json"),
        pytest.param('["a list"]', id="not-an-object"),
        pytest.param('{"base_url": "https://localhost:8443"}', id="before-credentials"),
        pytest.param('{"credentials": {"api_key": "k"}}', id="some-missing"),
        pytest.param(
            json.dumps({"credentials": {**CREDENTIALS.to_json(), "password": 1}}), id="not-text"
        ),
    ],
)
def test_unusable_demo_json_gives_no_credentials(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        (tmp_path / INFO_FILE).write_text(text)
    assert read_demo_credentials(tmp_path) is None


@pytest.mark.parametrize("name", [INFO_FILE, "demo.json.partial"])
def test_demo_info_never_writes_through_a_planted_symlink(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / name).symlink_to(victim)
    path = write_demo_info(state, guide_info(state))
    assert victim.read_text() == "keep me"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_demo_credentials(state) == CREDENTIALS
