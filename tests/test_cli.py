"""The command line: one-line located errors, audit findings, schema, guides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apishield", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


UNSAFE = """\
apishield: 1
mode: development
listen:
  address: 0.0.0.0:8080
  tls: "off"
  hsts: {enabled: false}
trusted_proxies: [0.0.0.0/0]
upstream: {url: http://api.internal.example:8000}
cors: {origins: ["*"]}
content: {mode: report, body_limit: 50MiB}
versions:
  - {prefix: /v1, deprecated: {sunset: 2020-01-01}}
routes:
  - {path: /v1/things, methods: [GET, POST], allow: public}
  - {path: /v1/admin, methods: [GET]}
"""


def test_check_lists_findings_with_lines(tmp_path: Path) -> None:
    (tmp_path / "apishield.yaml").write_text(UNSAFE)
    result = run("check", "apishield.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "apishield.yaml:5: HIGH   tls_off: listen.tls: TLS is off on 0.0.0.0:8080" in lines[0]
    codes = {line.split()[2].rstrip(":") for line in lines[:-1]}
    assert codes == {
        "tls_off",
        "trusted_proxies_any",
        "upstream_plain_http",
        "hsts_off",
        "development_mode",
        "cors_wildcard",
        "stage_report_mode",
        "body_limit_large",
        "route_public_write",
        "route_closed",
        "sunset_passed",
    }
    assert "Traceback" not in result.stderr


def test_check_json_and_clean_policy(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "apishield: 1\nroutes:\n  - {path: /health, methods: [GET], allow: public}\n"
    )
    result = run("check", "p.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "apishield: 1\nroutes:\n  - {path: /x, methods: [FETCH]}\n",
            "p.yaml:3: routes[0].methods: 'FETCH' is not an HTTP method",
            id="invalid",
        ),
        pytest.param(None, "apishield: p.yaml: no such file", id="missing"),
    ],
)
def test_check_invalid_policy_is_one_line(tmp_path: Path, text: str | None, message: str) -> None:
    if text is not None:
        (tmp_path / "p.yaml").write_text(text)
    result = run("check", "p.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_schema_is_json_schema() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "apishield policy"
    assert {"listen", "routes", "versions", "cors", "upstream"} <= set(schema["properties"])
    assert schema["required"] == ["apishield"]


def test_explain_unknown_code() -> None:
    result = run("explain", "../../etc/passwd")
    assert result.returncode == 2
    assert "no guide" in result.stderr


def test_serve_reports_bad_policy_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "apishield.yaml").write_text("apishield: 1\nmode: loud\n")
    result = run("serve", "-c", "apishield.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "apishield.yaml:2: mode: Input should be 'production' or 'development'" in result.stderr
    assert "Traceback" not in result.stderr
