"""The server-rendered pages of the authorization endpoint: the login form and the error page.

Plain HTML forms, no JavaScript. Every value shown is HTML-escaped. The one stylesheet is
inline and allowed by its hash, so the Content-Security-Policy can forbid everything else:

``default-src 'none'; style-src 'sha256-…'; frame-ancestors 'none'; form-action 'self' …;
base-uri 'none'``

``frame-ancestors 'none'`` stops clickjacking of the form (AUTH 22). ``form-action`` names
the page's own origin and, for the login form, the client's redirect origin: browsers apply
``form-action`` to the redirects that follow a form submission too (CSP Level 3 §6.4.1), and
after signing in the browser is sent to the client. ``Referrer-Policy: no-referrer`` keeps
the authorization URL out of other sites' logs.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from urllib.parse import urlsplit

from apishield.authserver.http import NO_STORE, Response
from apishield.types import Headers

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;"
    "color:#1d1d1f}h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}"
    "input{width:100%;padding:.5rem;box-sizing:border-box;font-size:1rem}"
    "button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem}"
    ".error{color:#b00020;font-weight:600}.muted{color:#555;font-size:.9rem}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

MESSAGES = {
    "failed": "Wrong username or password.",  # AUTH 22: one message for both cases
    "throttled": "Too many sign-in attempts. Wait a minute, then try again.",
}


def _origin(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def page_headers(*, form_targets: Sequence[str] = ()) -> Headers:
    """The security headers of every page (AUTH 22)."""
    origins = [o for o in (_origin(t) for t in form_targets) if o is not None]
    form_action = " ".join(["'self'", *dict.fromkeys(origins)])
    csp = (
        f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; frame-ancestors 'none'; "
        f"form-action {form_action}; base-uri 'none'"
    )
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-security-policy", csp.encode("ascii")),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        *NO_STORE,
    ]


def _document(title: str, body: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


def login_page(
    *,
    action: str,
    transaction_token: str,
    client_name: str,
    scope: Sequence[str],
    redirect_uri: str,
    message: str | None = None,
    status: int = 200,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """The sign-in form. Consent is implied: clients are registered by the operator."""
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    scopes = (
        f'<p class="muted">Access requested: {html.escape(" ".join(scope))}</p>' if scope else ""
    )
    body = (
        f"<h1>Sign in to {html.escape(client_name)}</h1>{scopes}{error}"
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="txn" value="{html.escape(transaction_token)}">'
        '<label for="username">Username</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    headers = [*page_headers(form_targets=[redirect_uri]), *extra_headers]
    return Response(status, headers, _document("Sign in", body))


def error_page(message: str, *, status: int = 400, code: str | None = None) -> Response:
    """An error the browser shows and never leaves (no redirect to an unchecked URI)."""
    body = f"<h1>Sign-in is not possible</h1><p>{html.escape(message)}</p>"
    if code is not None:
        body += f'<p class="muted">Error code: {html.escape(code)}</p>'
    return Response(status, page_headers(), _document("Sign-in error", body), code=code)
