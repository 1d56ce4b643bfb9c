"""The upstream stage: a keep-alive HTTP/1.1 proxy to the protected API (DESIGN stage 12)."""

from __future__ import annotations

from apishield.errors import RequestTimeoutError
from apishield.proxy.app import UpstreamApp
from apishield.proxy.errors import ClientTooSlowError, UpstreamAbortedError
from apishield.proxy.leaks import looks_like_stack_trace

__all__ = [
    "ClientTooSlowError",
    "RequestTimeoutError",
    "UpstreamAbortedError",
    "UpstreamApp",
    "looks_like_stack_trace",
]
