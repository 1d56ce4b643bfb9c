"""Refusals of the authorization server, and how they are answered and logged.

Two shapes, because two kinds of caller:

- The token, revocation and introspection endpoints answer OAuth clients, which parse the
  RFC 6749 §5.2 JSON error ``{"error": "invalid_grant"}``; that is what they get (never
  problem+json). ``error_description`` is added only in development mode, like the gateway's
  ``hint``. ``invalid_client`` is a 401 with ``WWW-Authenticate: Basic`` (RFC 6749 §5.2).
- The authorization endpoint and the login page answer a browser: errors that can safely go
  back to the client are redirects with ``error`` (RFC 6749 §4.1.2.1); those that cannot (an
  unknown client, a redirect URI that is not registered) are an HTML page, never a redirect.

Logging: every refusal is one line on the ``apishield.authserver`` logger with the OAuth
``error`` as its code and a finer ``reason`` (``code_replayed``, ``refresh_reused``,
``pkce_mismatch``…; see ``docs/refusals/<error>.md``), the client id and the fingerprint of
the presented credential at most. The error is also the request's audit ``code``. Code and
refresh-token replays are logged as warnings: they mean a credential has leaked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from apishield.errors import HTTPError

if TYPE_CHECKING:
    from apishield.authserver.http import Params, Request

OAuthErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "unsupported_response_type",
]

BASIC_CHALLENGE = 'Basic realm="apishield", charset="UTF-8"'


class OAuthError(HTTPError):
    """An OAuth 2.0 error (RFC 6749 §4.1.2.1, §5.2; RFC 8707 §2 for ``invalid_target``).

    ``code`` is the OAuth ``error`` value; ``reason`` says which check failed, for the log
    and the guide, and is never sent to the client; ``hint`` is the development-only
    ``error_description``.
    """

    status = 400
    title = "Bad Request"

    def __init__(
        self,
        *,
        code: OAuthErrorCode,
        reason: str,
        hint: str | None = None,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code=code, status=status, hint=hint, headers=headers)
        self.reason = reason

    def document(self, *, development: bool) -> dict[str, str]:
        """The JSON error body (RFC 6749 §5.2)."""
        body = {"error": self.code}
        if development and self.hint:
            body["error_description"] = self.hint
        return body


def invalid_request(reason: str, hint: str) -> OAuthError:
    return OAuthError(code="invalid_request", reason=reason, hint=hint)


def oauth_form(request: Request) -> Params:
    """The request's form parameters; ``invalid_request`` when malformed or repeated (RFC
    6749 §3.2: parameters MUST NOT be included more than once)."""
    try:
        return request.form()
    except ValueError as exc:
        reason = "parameter_repeated" if "repeated" in str(exc) else "form_malformed"
        raise invalid_request(reason, "parameters are sent once each, form-urlencoded") from None


def invalid_client(reason: str, hint: str = "client authentication failed") -> OAuthError:
    """401 ``invalid_client`` with a Basic challenge (RFC 6749 §5.2)."""
    return OAuthError(
        code="invalid_client",
        reason=reason,
        hint=hint,
        status=401,
        headers={"WWW-Authenticate": BASIC_CHALLENGE},
    )


def invalid_grant(reason: str, hint: str) -> OAuthError:
    return OAuthError(code="invalid_grant", reason=reason, hint=hint)


def invalid_scope(reason: str, hint: str) -> OAuthError:
    return OAuthError(code="invalid_scope", reason=reason, hint=hint)


def invalid_target(reason: str, hint: str) -> OAuthError:
    return OAuthError(code="invalid_target", reason=reason, hint=hint)


def unauthorized_client(reason: str, hint: str) -> OAuthError:
    return OAuthError(code="unauthorized_client", reason=reason, hint=hint)


def unsupported_grant_type(reason: str, hint: str) -> OAuthError:
    return OAuthError(code="unsupported_grant_type", reason=reason, hint=hint)


class PageError(HTTPError):
    """A browser-facing refusal that must not redirect (RFC 6749 §4.1.2.1: an invalid
    ``client_id`` or ``redirect_uri`` is told to the user, never sent to the URI)."""

    def __init__(self, *, code: str, reason: str, message: str, status: int = 400) -> None:
        super().__init__(code=code, status=status, hint=message)
        self.reason = reason
        self.message = message


def unknown_client_page(reason: str) -> PageError:
    return PageError(
        code="invalid_client",
        reason=reason,
        message="This application is not registered with the authorization server.",
    )


def redirect_mismatch_page(reason: str) -> PageError:
    return PageError(
        code="redirect_uri_mismatch",
        reason=reason,
        message="The application asked to return to an address it has not registered.",
    )


def csrf_page(reason: str) -> PageError:
    return PageError(
        code="csrf_invalid",
        reason=reason,
        message="This sign-in form has expired or was not sent by this site. Start again "
        "from the application.",
    )
