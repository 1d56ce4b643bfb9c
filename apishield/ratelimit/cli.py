"""``apishield bans list|add|remove``: the shared ban list, from the command line.

The list lives in the policy's ``state.cache`` (Redis), so a change made here reaches every
gateway within ``limits.ban_refresh`` seconds. With ``memory://`` each gateway process holds its
own list and there is nothing to reach from outside: the command says so and exits 2.

    apishield bans add 203.0.113.7 --ttl 1h --reason "credential stuffing"
    apishield bans add 2001:db8::/48 --ttl 7d
    apishield bans add "principal:apikey|batch-job" --ttl 30m
    apishield bans list [--json]
    apishield bans remove 203.0.113.7
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from apishield.errors import PolicyError
from apishield.policy.units import parse_duration
from apishield.ratelimit.bans import BanList
from apishield.ratelimit.guard import limit_settings
from apishield.ratelimit.storage import BanRecord, StorageUnavailable, display_url, open_storage

T = TypeVar("T")
CLI_TIMEOUT = 5.0  # an operator at a terminal can wait longer than a request

bans_app = typer.Typer(
    name="bans",
    help="List, add and remove bans (IP addresses, networks, principals).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the policy file (for state.cache and limits)")
]
CacheOption = Annotated[
    str | None,
    typer.Option("--cache", help="redis://HOST:PORT/DB instead of the policy's state.cache"),
]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="storage key prefix (default: limits.key_prefix)")
]


def parse_ttl(value: str) -> float:
    """``90s``, ``30m``, ``1h``, ``7d`` → seconds; raises ``ValueError``."""
    text = value.strip()
    if text.endswith("d") and text[:-1].strip().replace(".", "", 1).isdigit():
        seconds = float(text[:-1]) * 86_400
        if seconds <= 0:
            raise ValueError("a duration must be greater than zero")
        return seconds
    return parse_duration(text)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"apishield: {message}", err=True)
    return typer.Exit(code)


def _target(config: Path, cache: str | None, prefix: str | None) -> tuple[str, str]:
    if cache is not None:
        return cache, prefix or limit_settings(None).key_prefix
    from apishield.policy.load import load_policy

    try:
        policy = load_policy(config)
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    return policy.state.cache, prefix or limit_settings(policy).key_prefix


def _run(
    config: Path, cache: str | None, prefix: str | None, work: Callable[[BanList], Awaitable[T]]
) -> T:
    url, key_prefix = _target(config, cache, prefix)
    if url == "memory://":
        raise _fail(
            "state.cache is memory://: each gateway process keeps its own ban list, which "
            "this command cannot reach. Use a shared cache (state.cache: redis://HOST:PORT/DB)"
        )
    if not url.startswith(("redis://", "rediss://")):
        raise _fail(f"{display_url(url)!r}: bans need redis://HOST:PORT/DB")

    async def main() -> T:
        storage = open_storage(url, timeout=CLI_TIMEOUT, key_prefix=key_prefix)
        try:
            return await work(BanList(storage))
        finally:
            await storage.aclose()

    try:
        return asyncio.run(main())
    except StorageUnavailable as exc:
        raise _fail(f"cannot reach the cache: {exc}", 1) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(record: BanRecord, now: float) -> dict[str, object]:
    return {
        "subject": record.subject,
        "reason": record.reason,
        "created": _when(record.created),
        "expires": _when(record.expires),
        "expires_in_seconds": max(0, math.ceil(record.expires - now)),
    }


@bans_app.command("list")
def list_bans(
    config: ConfigOption = Path("apishield.yaml"),
    cache: CacheOption = None,
    prefix: PrefixOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="as JSON")] = False,
) -> None:
    """List the bans in force, soonest to expire first."""

    async def work(bans: BanList) -> list[BanRecord]:
        return await bans.entries()

    records = _run(config, cache, prefix, work)
    now = time.time()
    rows = [_row(r, now) for r in records]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no bans in force")
        return
    for row in rows:
        typer.echo(
            f"{row['subject']}  until {row['expires']} ({row['expires_in_seconds']}s)"
            + (f"  {row['reason']}" if row["reason"] else "")
        )


@bans_app.command("add")
def add_ban(
    subject: Annotated[
        str, typer.Argument(help="an IP address, a network (CIDR) or principal:ISSUER|SUBJECT")
    ],
    ttl: Annotated[str, typer.Option(help="how long: 90s, 30m, 1h, 7d (at most 366d)")] = "1h",
    reason: Annotated[
        str, typer.Option(help="why (kept for operators, never sent to clients)")
    ] = "",
    config: ConfigOption = Path("apishield.yaml"),
    cache: CacheOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Ban a subject on every gateway that shares the cache."""
    try:
        seconds = parse_ttl(ttl)
    except ValueError as exc:
        raise _fail(f"--ttl: {exc}") from None

    async def work(bans: BanList) -> BanRecord:
        return await bans.add(subject, ttl=seconds, reason=reason)

    record = _run(config, cache, prefix, work)
    typer.echo(f"banned {record.subject} until {_when(record.expires)}")


@bans_app.command("remove")
def remove_ban(
    subject: Annotated[str, typer.Argument(help="as given to `bans add`")],
    config: ConfigOption = Path("apishield.yaml"),
    cache: CacheOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Lift a ban; exits 1 when there was none."""

    async def work(bans: BanList) -> bool:
        return await bans.remove(subject)

    if not _run(config, cache, prefix, work):
        raise _fail(f"no ban on {subject}", 1)
    typer.echo(f"lifted the ban on {subject}")
