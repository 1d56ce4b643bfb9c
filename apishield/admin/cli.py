"""``apishield clients|apikeys|users|store …``: manage what the store holds.

Each command reads the policy (``-c/--config``, default ``apishield.yaml``), opens its store,
brings the schema up to date, and does one thing. Secrets (client secrets, API keys) are
printed once, when made, and never again; passwords are read from a hidden prompt or from
standard input, never from the command line, where ``ps`` and shell history would see them.
Every failure is one line on standard error and a non-zero exit: 2 for a policy or
configuration problem, 1 when the store refuses or is unavailable. Never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from apishield.errors import ConfigError, PolicyError, StoreUnavailableError
from apishield.identity.apikeys import ApiKeyManager
from apishield.identity.settings import ApiKeySettings
from apishield.policy.load import load_policy
from apishield.policy.models import Policy
from apishield.store.engine import Store
from apishield.store.errors import StoreError
from apishield.store.records import AUTH_METHODS
from apishield.store.urls import redact_url, store_url

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the policy file", show_default=True)
]
_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _app(name: str, help_text: str) -> typer.Typer:
    return typer.Typer(
        name=name,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


clients_app = _app("clients", "OAuth 2.0 clients of the built-in authorization server.")
apikeys_app = _app("apikeys", "API keys: create, list, roll, revoke.")
users_app = _app("users", "Users who sign in to the built-in authorization server.")
store_app = _app("store", "The store: schema migrations, purging expired grants.")


@store_app.callback()
def _store_group() -> None:
    """The store: schema migrations, purging expired grants."""
    # A callback keeps a one-command app a group: `apishield store migrate`, not `store`.


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message if "\n" in message else f"apishield: {message}", err=True)
    return typer.Exit(code)


def _run(config: Path, action: Callable[[Policy, Store], Awaitable[None]]) -> None:
    """Load the policy, open and migrate its store, run ``action``, close the store; turn
    every expected failure into one line and an exit code."""
    try:
        policy = load_policy(config)
    except PolicyError as exc:
        raise _fail(str(exc), 2) from None

    async def main() -> None:
        store = Store.from_policy(policy, auto_migrate=False)
        try:
            await store.migrate()
            await action(policy, store)
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


def _parse_span(value: str, what: str) -> timedelta:
    if value.strip() == "0":
        return timedelta(0)
    match = _SPAN.match(value)
    if not match:
        raise _fail(f"{what}: {value!r} is not a duration like 30m, 24h, 90d or 2w", 2)
    return timedelta(seconds=int(match.group(1)) * _SPAN_UNITS[match.group(2)])


def _parse_expiry(value: str | None) -> datetime | None:
    """``90d`` from now, or an ISO date/time (UTC when no zone is given)."""
    if value is None:
        return None
    if _SPAN.match(value):
        return datetime.now(UTC) + _parse_span(value, "--expires")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--expires: {value!r} is neither a duration (90d) nor a date", 2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _api_key_settings(policy: Policy) -> ApiKeySettings:
    if policy.identity is not None and policy.identity.api_keys is not None:
        return policy.identity.api_keys
    typer.echo(
        "apishield: note: the policy has no identity.api_keys section, so the gateway does "
        "not accept API keys yet",
        err=True,
    )
    return ApiKeySettings()


def _manager(policy: Policy, store: Store) -> ApiKeyManager:
    from apishield.identity.secretkey import load_secret_keys

    keys = load_secret_keys(policy.state)
    return ApiKeyManager(store, pepper=keys.api_key_pepper, prefix=_api_key_settings(policy).prefix)


# -- clients -----------------------------------------------------------------------------------


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="a name people recognise")],
    grant_type: Annotated[
        list[str] | None,
        typer.Option(
            "--grant-type",
            "-g",
            help="client_credentials, authorization_code, refresh_token (repeat)",
        ),
    ] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", "-s", help="repeat")] = None,
    redirect_uri: Annotated[list[str] | None, typer.Option(help="exact URI (repeat)")] = None,
    resource: Annotated[list[str] | None, typer.Option(help="RFC 8707 resource (repeat)")] = None,
    auth_method: Annotated[
        str, typer.Option(help="token endpoint auth: " + ", ".join(AUTH_METHODS))
    ] = "client_secret_basic",
    jwks_file: Annotated[
        Path | None, typer.Option(help="public JWK set (JSON) for private_key_jwt")
    ] = None,
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Register a client; its secret is printed once."""
    jwks: dict[str, Any] | None = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _fail(
                f"{jwks_file}: not a readable JSON file ({type(exc).__name__})", 2
            ) from None
        if not isinstance(jwks, dict):
            raise _fail(f"{jwks_file}: a JWK set is a JSON object with 'keys'", 2)

    async def action(policy: Policy, store: Store) -> None:
        client, secret = await store.clients.register(
            name=name,
            grant_types=grant_type or ["client_credentials"],
            redirect_uris=redirect_uri or [],
            scopes=scope or [],
            resources=resource or [],
            auth_method=auth_method,
            jwks=jwks,
        )
        typer.echo(f"client_id: {client.id}")
        if secret is not None:
            typer.echo(f"client_secret: {secret}")
            typer.echo("apishield: the secret is shown this once; store it now", err=True)

    _run(config, action)


@clients_app.command("list")
def clients_list(config: ConfigOption = Path("apishield.yaml")) -> None:
    """List the clients (never their secrets)."""

    async def action(policy: Policy, store: Store) -> None:
        rows = [
            (
                c.id,
                c.name,
                ",".join(c.grant_types),
                " ".join(c.scopes) or "-",
                c.token_endpoint_auth_method,
                _when(c.created_at),
                "disabled" if c.disabled else "enabled",
            )
            for c in await store.clients.all()
        ]
        _table(("ID", "NAME", "GRANTS", "SCOPES", "AUTH", "CREATED", "STATE"), rows)

    _run(config, action)


@clients_app.command("delete")
def clients_delete(
    client_id: Annotated[str, typer.Argument(help="the client's id")],
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Delete a client and revoke every grant and token it holds."""

    async def action(policy: Policy, store: Store) -> None:
        await store.clients.delete(client_id)
        typer.echo(f"deleted client {client_id}; its grants and tokens are revoked")

    _run(config, action)


# -- API keys ----------------------------------------------------------------------------------


@apikeys_app.command("create")
def apikeys_create(
    owner: Annotated[str, typer.Option(help="who the key stands for (the principal)")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="repeat; none: public routes only")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="90d, 12h… or an ISO date")] = None,
    allow_ip: Annotated[
        list[str] | None, typer.Option(help="CIDR the key may be used from (repeat)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a label")] = None,
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    expires_at = _parse_expiry(expires)

    async def action(policy: Policy, store: Store) -> None:
        issued = await _manager(policy, store).create(
            owner, scopes=scope or [], expires_at=expires_at, ip_allowlist=allow_ip or [], name=name
        )
        typer.echo(f"key_id: {issued.record.id}")
        typer.echo(f"api_key: {issued.key}")
        typer.echo("apishield: the key is shown this once; store it now", err=True)

    _run(config, action)


@apikeys_app.command("list")
def apikeys_list(
    owner: Annotated[str | None, typer.Option(help="only this owner's keys")] = None,
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """List keys: id, owner, masked key, scopes, expiry, last use, state."""

    async def action(policy: Policy, store: Store) -> None:
        now = store.now()
        rows = [
            (
                k.id,
                k.owner,
                k.masked,
                " ".join(k.scopes) or "-",
                _when(k.effective_expiry()),
                _when(k.last_used_at),
                k.state(now),
            )
            for k in await store.api_keys.all(owner=owner)
        ]
        _table(("ID", "OWNER", "KEY", "SCOPES", "EXPIRES", "LAST USED", "STATE"), rows)

    _run(config, action)


@apikeys_app.command("roll")
def apikeys_roll(
    key_id: Annotated[str, typer.Argument(help="the key's id (from 'apikeys list')")],
    grace: Annotated[str, typer.Option(help="how long the old key keeps working; 0: not")] = "24h",
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Replace a key: the new one is printed once; the old one works for the grace period."""
    period = _parse_span(grace, "--grace")

    async def action(policy: Policy, store: Store) -> None:
        issued = await _manager(policy, store).roll(key_id, grace=period)
        typer.echo(f"key_id: {issued.record.id}")
        typer.echo(f"api_key: {issued.key}")
        typer.echo(
            f"apishield: the key is shown this once; {key_id} stops working "
            + (f"in {grace}" if period else "now"),
            err=True,
        )

    _run(config, action)


@apikeys_app.command("revoke")
def apikeys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id")],
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Revoke a key (running gateways notice within 5 seconds)."""

    async def action(policy: Policy, store: Store) -> None:
        await store.api_keys.revoke(key_id)
        typer.echo(f"revoked {key_id}")

    _run(config, action)


# -- users -------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        typed = line[:-1] if line.endswith("\n") else line
        if not typed:
            raise _fail("--password-stdin: no password on standard input", 2)
        return typed
    prompted: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return prompted


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="the sign-in name")],
    role: Annotated[list[str] | None, typer.Option("--role", "-r", help="repeat")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Create a user (the password is asked for, hidden)."""
    password = _read_password(password_stdin)

    async def action(policy: Policy, store: Store) -> None:
        user = await store.users.create(username, password, roles=role or [])
        typer.echo(f"created user {user.username} ({user.id})")

    _run(config, action)


@users_app.command("disable")
def users_disable(
    username: Annotated[str, typer.Argument(help="the sign-in name")],
    config: ConfigOption = Path("apishield.yaml"),
) -> None:
    """Disable a user and revoke every grant and token they hold."""

    async def action(policy: Policy, store: Store) -> None:
        await store.users.disable(username)
        typer.echo(f"disabled {username}; their grants and tokens are revoked")

    _run(config, action)


# -- store -------------------------------------------------------------------------------------


@store_app.command("migrate")
def store_migrate(config: ConfigOption = Path("apishield.yaml")) -> None:
    """Bring the store's schema up to date (commands and the gateway also do it on start)."""

    async def action(policy: Policy, store: Store) -> None:
        from apishield.store.migrate import current_revision

        typer.echo(f"store at revision {await current_revision(store.url)}")

    _run(config, action)


@store_app.command("purge")
def store_purge(config: ConfigOption = Path("apishield.yaml")) -> None:
    """Delete expired access tokens, codes and refresh-token families now (a gateway with the
    built-in server also does it every 10 minutes; this is for cron)."""

    async def action(policy: Policy, store: Store) -> None:
        from apishield.store.grants import purge_expired

        removed = await purge_expired(store)
        if removed is None:
            typer.echo("another instance is purging right now; nothing to do")
        else:
            typer.echo(f"removed {removed} expired rows")

    _run(config, action)
