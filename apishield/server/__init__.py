"""Serving: listeners on uvicorn, TLS settings, development certificates, workers."""

from __future__ import annotations

from apishield.server.devcert import DevCertificates, ensure_dev_certificates, trust_instructions
from apishield.server.redirect import HttpsRedirectApp
from apishield.server.serve import GatewayServer, StartupError, serve_policy
from apishield.server.tls import build_server_ssl_context

__all__ = [
    "DevCertificates",
    "GatewayServer",
    "HttpsRedirectApp",
    "StartupError",
    "build_server_ssl_context",
    "ensure_dev_certificates",
    "serve_policy",
    "trust_instructions",
]
