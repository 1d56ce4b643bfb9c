"""apishield: a security gateway for HTTP APIs, from one policy file.

Use it as a standalone gateway (``apishield serve -c apishield.yaml``) or wrap a Python ASGI
app in-process with :func:`protect`.
"""

from __future__ import annotations

from apishield.errors import ApiShieldError, ConfigError, HTTPError, PolicyError
from apishield.policy import Policy, load_policy
from apishield.protect import protect

__all__ = [
    "ApiShieldError",
    "ConfigError",
    "HTTPError",
    "Policy",
    "PolicyError",
    "load_policy",
    "protect",
]
__version__ = "0.1.0"
