"""Redirect URI matching (RFC 9700 §4.1.3, RFC 8252 §7.3; AUTH 15).

A requested redirect URI must equal a registered one character for character: no prefix
match, no wildcard, no normalisation that an attacker could steer (a changed case in the path,
an added query parameter, a trailing slash). The one exception is a native app's loopback
redirect (``http://127.0.0.1/...`` or ``http://[::1]/...``), whose port is chosen by the
operating system at run time: there, and only there, the port may differ. Registration
(``apishield.store.clients.validate_redirect_uri``) already refuses wildcards, fragments and
plain ``http`` elsewhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit


def _loopback_ip(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "localhost" is a name, not a loopback literal (RFC 8252 §8.3)


def _netloc_host(parts: SplitResult) -> str:
    """The host part of the netloc as written (brackets kept for IPv6)."""
    netloc = parts.netloc
    if netloc.startswith("["):
        return netloc[: netloc.index("]") + 1] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def _same_but_port(requested: str, registered: str) -> bool:
    reg, req = urlsplit(registered), urlsplit(requested)
    if reg.scheme != "http" or not _loopback_ip(reg.hostname):
        return False
    if req.scheme != "http" or req.username is not None or req.password is not None:
        return False
    try:
        port = req.port
    except ValueError:
        return False
    if port == 0 or (port is None and ":" in req.netloc.rsplit("]", 1)[-1]):
        return False  # port 0, or an empty port ("127.0.0.1:/cb")
    # Host as written (not only as parsed), path, query and the absence of a fragment must
    # all be identical: only the port varies.
    return (
        _netloc_host(req) == _netloc_host(reg)
        and req.path == reg.path
        and req.query == reg.query
        and not req.fragment
        and "#" not in requested
    )


def match_redirect_uri(requested: str, registered: Iterable[str]) -> str | None:
    """The redirect URI to use: ``requested`` when it is registered (exactly, or as a
    loopback URI with another port), else None."""
    candidates = list(registered)
    if requested in candidates:
        return requested
    if any(_same_but_port(requested, uri) for uri in candidates):
        return requested
    return None
