"""The deadlines of one proxied exchange, on the client's side as well as the upstream's.

A connection's own checks (:meth:`UpstreamConnection.check_timeouts`) only see the upstream:
they cannot end a request that is stuck waiting for its client, to send more of its body or
to take the response. Without a bound there, a few clients that start an upload and go
silent, or ask for a large answer and never read it, hold every upstream connection of the
pool and the gateway answers everyone else with 503 (OWASP API Security Top 10 2023, API4
Unrestricted Resource Consumption; CWE-400).

An :class:`Exchange` is one request from its first byte in the upstream stage to its last
byte sent: the pool's ticker checks it with the connections, and cancels its task when
``upstream.timeouts.total`` has passed, or when the client has sent nothing of its body for
``upstream.timeouts.read``. The task turns the cancellation into the error of the phase it
was in (see ``UpstreamApp``). Like the connections' timeouts, these fire up to two ticks late
and cost a request no timer of its own.

Trust assumption: the client is not trusted to send or read at any pace; only the time it
takes is bounded here, what it sends is checked elsewhere.
"""

from __future__ import annotations

import asyncio

from apishield.errors import HTTPError, RequestTimeoutError, UpstreamTimeoutError
from apishield.proxy.connection import TIMEOUT
from apishield.proxy.errors import ClientTooSlowError, UpstreamAbortedError


class Exchange:
    """The client-side state of one request that the pool's ticker watches.

    The request sets ``receiving`` while it waits for the client's body (``activity`` with
    it, so that the idle time counts from there) and ``sending`` while it waits for the
    client to take a part of the response; ``started`` once the response has started. When a
    limit passes, :meth:`check` answers ``True``, ``expired`` says which (``"total"`` or
    ``"idle"``), and the pool cancels ``task``.
    """

    __slots__ = (
        "task",
        "receiving",
        "sending",
        "started",
        "activity",
        "expired",
        "_deadline",
        "_last_active",
    )

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.receiving = False
        self.sending = False
        self.started = False
        self.activity = False
        self.expired: str | None = None
        self._deadline = 0.0
        self._last_active = 0.0

    def check(self, now: float, read_timeout: float, total_timeout: float) -> bool:
        """Whether a limit has passed at ``now``; sets ``expired`` when one has.

        The total deadline starts at the first tick that sees the exchange. The idle limit
        counts only while the request waits for the client's body, from the last piece of it.
        """
        if self._deadline == 0.0:
            self._deadline = now + total_timeout
            self._last_active = now
        elif now >= self._deadline:
            self.expired = "total"
            return True
        if self.activity or not self.receiving:
            self.activity = False
            self._last_active = now
        elif now - self._last_active >= read_timeout:
            self.expired = "idle"
            return True
        return False

    def timeout_error(self) -> HTTPError:
        """The error for the task to raise once :meth:`check` has expired the exchange, from
        the phase it was in: waiting for the client's body (408 ``request_timeout``, with
        ``Connection: close`` as RFC 9110 §15.5.9 asks), for the client to read
        (``client_too_slow``), for the upstream after the start (``upstream_aborted``), or
        for the upstream before it (504 ``upstream_timeout``)."""
        if self.receiving:
            return RequestTimeoutError(
                "The request body did not arrive in time.", headers={"Connection": "close"}
            )
        if self.sending:
            return ClientTooSlowError("The response was not read in time.")
        if self.started:
            error = UpstreamAbortedError("The upstream service failed mid-response.")
            error.__cause__ = UpstreamTimeoutError(TIMEOUT)
            return error
        return UpstreamTimeoutError(TIMEOUT)
