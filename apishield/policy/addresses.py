"""Listener addresses and loopback checks, shared by the policy models and their users."""

from __future__ import annotations

import ipaddress


def split_address(value: str) -> tuple[str, int]:
    """``127.0.0.1:8443`` → (``127.0.0.1``, 8443); ``[::1]:8443`` → (``::1``, 8443)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: traffic that never leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
