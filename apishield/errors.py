"""The apishield error tree.

::

    ApiShieldError
    ├── ConfigError                 bad settings, raised at start-up (never at request time)
    │   └── PolicyError             a policy file problem, with file, line and field
    └── HTTPError                   a refusal: status, stable code, safe detail, extra headers
        ├── BadRequestError         400  malformed or ambiguous requests
        ├── UnauthorizedError       401  missing or invalid credentials
        ├── ForbiddenError          403  refused by policy
        ├── NotFoundError           404  no route in the policy
        ├── MethodNotAllowedError   405  route known, method not (carries ``Allow``)
        ├── GoneError               410  retired API version
        ├── PayloadTooLargeError    413  body over the route's limit
        ├── RequestTimeoutError     408  the client sent its request too slowly
        ├── UnsupportedMediaTypeError 415
        ├── SchemaViolationError    400/422 the request does not match the OpenAPI description
        ├── TooManyRequestsError    429  a rate limit, quota or concurrency cap
        ├── StoreUnavailableError   503  the store did not answer (fail closed)
        └── UpstreamError           502/504 the upstream failed; never says how

Every ``HTTPError`` is rendered as RFC 9457 problem+json by the errors stage. ``detail`` is what
the client may know in production; ``hint`` is the why-and-how-to-fix that only
``mode: development`` shows. Neither ever carries a secret or an internal message: library
errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

PROBLEM_TYPE_BASE = "urn:apishield:problem:"


class ApiShieldError(Exception):
    """Root of every error apishield raises on purpose."""


class ConfigError(ApiShieldError):
    """A setting that cannot work; raised at start-up, never while serving."""


class PolicyError(ConfigError):
    """A policy file problem, located: ``apishield.yaml:14: routes[2].methods: ...``."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, field: str = ""):
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.location_message())

    def location_message(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class HTTPError(ApiShieldError):
    """A refusal. ``code`` is stable and documented in ``docs/refusals/CODE.md``."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.detail = detail
        self.hint = hint
        self.headers = dict(headers or {})
        super().__init__(f"{self.status} {self.code}")


class BadRequestError(HTTPError):
    status = 400
    code = "bad_request"
    title = "Bad Request"


class UnauthorizedError(HTTPError):
    status = 401
    code = "authentication_required"
    title = "Unauthorized"


class ForbiddenError(HTTPError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFoundError(HTTPError):
    status = 404
    code = "route_not_found"
    title = "Not Found"


class MethodNotAllowedError(HTTPError):
    status = 405
    code = "method_not_allowed"
    title = "Method Not Allowed"


class GoneError(HTTPError):
    status = 410
    code = "version_retired"
    title = "Gone"


class PayloadTooLargeError(HTTPError):
    status = 413
    code = "body_too_large"
    title = "Content Too Large"


class UnsupportedMediaTypeError(HTTPError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported Media Type"


class SchemaViolationError(HTTPError):
    """400 or 422: the request does not match the API's OpenAPI description.

    ``errors`` lists each failing field as ``{location, field, message}``; only
    ``mode: development`` shows it, and its messages never quote the submitted value.
    """

    status = 400
    code = "schema_violation"
    title = "Bad Request"

    def __init__(
        self, errors: list[dict[str, str]], *, status: int = 400, hint: str | None = None
    ) -> None:
        super().__init__(
            "the request does not match the API description", status=status, hint=hint
        )
        self.errors = errors


class RequestTimeoutError(HTTPError):
    """408 (RFC 9110 §15.5.9): the client did not send its request in time.

    Raised with ``Connection: close``: the rest of the request may never come.
    """

    status = 408
    code = "request_timeout"
    title = "Request Timeout"


class TooManyRequestsError(HTTPError):
    """429 (RFC 6585 §4): a limit, a quota or a concurrency cap was reached."""

    status = 429
    code = "rate_limited"
    title = "Too Many Requests"


class StoreUnavailableError(HTTPError):
    """503: the store could not be reached or failed mid-query. The client sees only the code."""

    status = 503
    code = "store_unavailable"
    title = "Service Unavailable"

    def __init__(self, hint: str | None = None) -> None:
        super().__init__(
            hint=hint or "the gateway's store did not answer; the request was refused",
            headers={"Retry-After": "5"},
        )


class UpstreamError(HTTPError):
    status = 502
    code = "upstream_unavailable"
    title = "Bad Gateway"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"
    title = "Gateway Timeout"


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
