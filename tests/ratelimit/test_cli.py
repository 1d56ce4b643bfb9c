"""``apishield bans list|add|remove`` against the real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apishield.ratelimit.cli import bans_app, parse_ttl
from tests.ratelimit.conftest import SHARED_REDIS

runner = CliRunner()


def bans(prefix: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(bans_app, [*args, "--cache", SHARED_REDIS, "--prefix", prefix])
    return result.exit_code, result.stdout, result.stderr


def test_add_list_remove(prefix: str) -> None:
    code, out, _ = bans(prefix, "add", "203.0.113.7", "--ttl", "1h", "--reason", "stuffing")
    assert code == 0 and out.startswith("banned ip:203.0.113.7 until ")
    assert bans(prefix, "add", "principal:apikey|batch", "--ttl", "30m")[0] == 0
    code, out, _ = bans(prefix, "list", "--json")
    rows = json.loads(out)
    assert [r["subject"] for r in rows] == ["principal:apikey|batch", "ip:203.0.113.7"]
    assert rows[1]["reason"] == "stuffing" and 3590 < rows[1]["expires_in_seconds"] <= 3600
    code, out, _ = bans(prefix, "list")
    assert "ip:203.0.113.7  until" in out and "stuffing" in out
    assert bans(prefix, "remove", "203.0.113.7")[:2] == (0, "lifted the ban on 203.0.113.7\n")
    code, _, err = bans(prefix, "remove", "203.0.113.7")
    assert code == 1 and "no ban on 203.0.113.7" in err
    assert bans(prefix, "remove", "principal:apikey|batch")[0] == 0
    assert bans(prefix, "list")[1] == "no bans in force\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(["add", "example.com"], "is not an IP address", id="bad-subject"),
        pytest.param(["add", "203.0.113.7", "--ttl", "soon"], "--ttl:", id="bad-ttl"),
        pytest.param(["add", "203.0.113.7", "--ttl", "400d"], "at most 366 days", id="long-ttl"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(prefix: str, args: list[str], says: str) -> None:
    code, _, err = bans(prefix, *args)
    assert code == 2 and says in err and "Traceback" not in err


def test_memory_cache_is_explained(tmp_path: Path) -> None:
    policy = tmp_path / "apishield.yaml"
    policy.write_text("apishield: 1\nstate: {cache: 'memory://'}\n")
    result = runner.invoke(bans_app, ["list", "-c", str(policy)])
    assert result.exit_code == 2
    assert "each gateway process keeps its own ban list" in result.stderr


def test_unreachable_cache_never_shows_the_password() -> None:
    result = runner.invoke(
        bans_app, ["list", "--cache", "redis://:hunter2@127.0.0.1:1/0", "--prefix", "x:"]
    )
    assert result.exit_code == 1
    assert "cannot reach the cache: redis://127.0.0.1:1/0" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_policy_errors_are_located(tmp_path: Path) -> None:
    policy = tmp_path / "apishield.yaml"
    policy.write_text("apishield: 1\nstate: {cache: 'memcached://x'}\n")
    result = runner.invoke(bans_app, ["list", "-c", str(policy)])
    assert result.exit_code == 2 and "apishield.yaml:2: state.cache" in result.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0), ("7d", 604_800.0), ("1.5d", 129_600.0)],
)
def test_ttls(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds
