"""``apishield signing-keys rotate|list``: the built-in issuer's signing keys (AUTH 23).

``rotate`` publishes a new key that signs once every verifier has had time to fetch it (the
key it replaces stays published until its last token expires); ``rotate --emergency`` retires
every key at once and signs with a new one immediately, for a key that may have leaked.
``list`` shows each key's state. Every failure is one line on standard error: exit 2 for a
policy or configuration problem, 1 when the store refuses or is unavailable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from apishield.authserver.config import DEFAULT_LEEWAY, DEFAULT_PUBLISH_LEAD
from apishield.authserver.signing import apply_due_changes, rotate_signing_keys
from apishield.errors import ConfigError, PolicyError, StoreUnavailableError
from apishield.identity.secretkey import SecretKeys, load_secret_keys
from apishield.identity.settings import BuiltinIssuer
from apishield.policy.load import load_policy
from apishield.policy.models import Policy
from apishield.store.engine import Store
from apishield.store.errors import StoreError
from apishield.store.urls import redact_url, store_url

signing_keys_app = typer.Typer(
    name="signing-keys",
    help="Signing keys of the built-in authorization server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the policy file", show_default=True)
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"apishield: {message}", err=True)
    return typer.Exit(code)


def _builtin(policy: Policy) -> BuiltinIssuer:
    issuers = policy.identity.issuers if policy.identity is not None else []
    for entry in issuers:
        if isinstance(entry, BuiltinIssuer):
            return entry
    raise _fail("the policy has no 'builtin: true' entry in identity.issuers", 2)


def _run(
    config: Path, action: Callable[[BuiltinIssuer, Store, SecretKeys], Awaitable[None]]
) -> None:
    try:
        policy = load_policy(config)
    except PolicyError as exc:
        raise _fail(str(exc), 2) from None
    settings = _builtin(policy)

    async def main() -> None:
        keys = load_secret_keys(policy.state)
        store = Store.from_policy(policy, auto_migrate=False)
        try:
            await store.migrate()
            await action(settings, store, keys)
        finally:
            await store.aclose()

    try:
        asyncio.run(main())
    except StoreUnavailableError:
        raise _fail(f"the store at {redact_url(store_url(policy.state))} is unavailable") from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "-"


@signing_keys_app.command("rotate")
def rotate(
    emergency: Annotated[
        bool, typer.Option("--emergency", help="retire every key now and sign with a new one")
    ] = False,
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Start a signing-key rotation (or, with --emergency, replace every key at once)."""

    async def action(settings: BuiltinIssuer, store: Store, keys: SecretKeys) -> None:
        result = await rotate_signing_keys(
            store,
            keys,
            emergency=emergency,
            publish_lead=DEFAULT_PUBLISH_LEAD,
            access_token_ttl=settings.access_token_ttl,
            leeway=DEFAULT_LEEWAY,
        )
        pending = result.pending
        if emergency and pending is not None:
            typer.echo(
                f"retired {len(result.retired)} key(s); {pending.kid} signs from now on. "
                "Tokens signed with the retired keys no longer verify."
            )
        elif result.created is not None and result.created.state == "active":
            typer.echo(f"created the first signing key {result.created.kid}; it signs now")
        elif result.created is not None:
            typer.echo(
                f"published {result.created.kid}; it signs from "
                f"{_when(result.created.not_before)}. The key it replaces stays published "
                "until its last token expires."
            )
        elif pending is not None:
            typer.echo(
                f"a rotation is already pending: {pending.kid} signs from "
                f"{_when(pending.not_before)}"
            )

    _run(config, action)


@signing_keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="as JSON")] = False,
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """List the signing keys and their states (next, active, retiring, retired)."""

    async def action(settings: BuiltinIssuer, store: Store, keys: SecretKeys) -> None:
        delay = timedelta(seconds=settings.access_token_ttl + DEFAULT_LEEWAY)
        await apply_due_changes(store, retire_delay=delay)
        records = await store.signing_keys.all()
        rows = [
            {
                "kid": r.kid,
                "alg": r.alg,
                "state": r.state,
                "created": _when(r.created_at),
                "signs_from": _when(r.not_before),
                "published_until": _when(r.retire_after),
            }
            for r in records
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        header = ["KID", "ALG", "STATE", "CREATED", "SIGNS FROM", "PUBLISHED UNTIL"]
        table = [header, *([str(v) for v in row.values()] for row in rows)]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    _run(config, action)
