"""The upstream stage's own branches of the error tree (``apishield.errors``).

::

    HTTPError
    ├── UpstreamError
    │   └── UpstreamAbortedError   the upstream failed after the response started
    ├── RequestTimeoutError        408  the client stalled its own request body
    └── ClientTooSlowError         the client did not read the response in time

The two "after the response started" errors are never rendered: the status line is already
with the client, so the server drops the connection and the code reaches the audit log only.
"""

from __future__ import annotations

from apishield.errors import HTTPError, UpstreamError


class UpstreamAbortedError(UpstreamError):
    """The upstream failed after the response had started.

    The status line is already with the client, so no error response can follow; the server
    must drop the connection (uvicorn does, for any exception raised after the start), which the
    client sees as a truncated message.
    """

    code = "upstream_aborted"


class ClientTooSlowError(HTTPError):
    """The client did not take the response within ``upstream.timeouts.total``.

    Raised only after the response has started, like :class:`UpstreamAbortedError`: the
    server drops the connection and the code reaches the audit log only.
    """

    status = 408
    code = "client_too_slow"
    title = "Request Timeout"
