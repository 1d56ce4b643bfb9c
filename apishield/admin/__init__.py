"""Administration: command-line sub-apps for clients, API keys, users and the store."""

from __future__ import annotations
