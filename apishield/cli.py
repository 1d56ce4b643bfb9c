"""The ``apishield`` command.

Every failure a user can cause ends in a one-line message naming the file, line and field, and
a non-zero exit: never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from apishield.admin.cli import apikeys_app, clients_app, store_app, users_app
from apishield.authserver.cli import signing_keys_app
from apishield.errors import ApiShieldError, PolicyError
from apishield.ratelimit.cli import bans_app

app = typer.Typer(
    name="apishield",
    help="A security gateway for HTTP APIs, from one policy file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(clients_app, name="clients")
app.add_typer(apikeys_app, name="apikeys")
app.add_typer(users_app, name="users")
app.add_typer(bans_app, name="bans")
app.add_typer(store_app, name="store")
app.add_typer(signing_keys_app, name="signing-keys")

PolicyOption = Annotated[
    Path, typer.Option("--config", "-c", help="the policy file", show_default=True)
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"apishield: {message}" if "\n" not in message else message, err=True)
    return typer.Exit(code)


@app.command()
def serve(
    config: PolicyOption = Path("apishield.yaml"),
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
) -> None:
    """Run the gateway in front of the policy's upstream."""
    from apishield.server.serve import serve_policy

    raise typer.Exit(serve_policy(config, workers=workers))


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="the policy file")] = Path("apishield.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="findings as JSON")] = False,
) -> None:
    """List the insecure settings of a policy; exit 1 when any is high."""
    from apishield.policy.audit import audit_policy
    from apishield.policy.load import field_name, line_of, load_policy_with_lines
    from apishield.schema.loader import SpecError, load_openapi

    try:
        policy, lines = load_policy_with_lines(config)
        spec = load_openapi(policy.openapi.spec) if policy.openapi is not None else None
    except (PolicyError, SpecError) as exc:
        raise _fail(str(exc)) from None
    findings = audit_policy(policy, spec=spec)
    rows: list[dict[str, str | int | None]] = [
        {
            "severity": f.severity,
            "code": f.code,
            "file": str(config),
            "line": line_of(f.field, lines),
            "field": field_name(f.field),
            "message": f.message,
        }
        for f in findings
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo(f"{config}: no findings")
    else:
        for row in rows:
            where = f"{row['file']}:{row['line']}" if row["line"] else row["file"]
            typer.echo(
                f"{where}: {str(row['severity']).upper():6} {row['code']}: {row['field']}: "
                f"{row['message']}"
            )
        typer.echo(f"apishield explain CODE tells more. {len(rows)} finding(s).")
    if any(f.severity == "high" for f in findings):
        raise typer.Exit(1)


@app.command()
def init(
    openapi: Annotated[Path, typer.Option("--openapi", help="the OpenAPI 3.0 or 3.1 spec")],
    upstream: Annotated[
        str, typer.Option("--upstream", help="the API's URL, e.g. http://127.0.0.1:8000")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="the policy file to write")] = Path(
        "apishield.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a starting policy from an OpenAPI spec: every operation a closed route."""
    from apishield.schema.init import write_policy

    try:
        result = write_policy(openapi, upstream=upstream, output=output, force=force)
    except ApiShieldError as exc:
        raise _fail(str(exc)) from None
    for note in result.notes:
        typer.echo(f"apishield: {openapi}: {note}", err=True)
    typer.echo(
        f"wrote {output}: {result.routes} route(s) for {result.operations} operation(s), all "
        "closed until you fill in `allow`; `apishield check` lists what is still open"
    )


@app.command()
def schema() -> None:
    """Print the policy file's JSON Schema (for editor completion and validation)."""
    from apishield.policy.models import Policy

    document = Policy.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "apishield policy"
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


@app.command()
def explain(code: Annotated[str, typer.Argument(help="a refusal or finding code")]) -> None:
    """Print the guide for a refusal or finding code."""
    from apishield.guides import read_guide

    text = read_guide(code)
    if text is None:
        raise _fail(f"no guide for {code!r} (codes look like 'body_too_large')")
    typer.echo(text)


@app.command()
def demo(
    port: Annotated[int, typer.Option(min=0, max=65535, help="gateway port (0: any)")] = 8443,
    state_dir: Annotated[
        Path | None, typer.Option(help="where the demo keeps its files and demo.json")
    ] = None,
) -> None:
    """Run the sample API behind the gateway on https://localhost:8443."""
    from apishield.demo.run import run_demo

    raise typer.Exit(run_demo(port=port, state_dir=state_dir))


@app.command()
def version() -> None:
    """Print apishield's version."""
    from apishield import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point: the command, with every user error turned into a one-line message."""
    try:
        app()
    except ApiShieldError as exc:
        typer.echo(f"apishield: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
