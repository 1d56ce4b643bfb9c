"""``python -m apishield`` is the ``apishield`` command."""

from __future__ import annotations

from apishield.cli import main

main()
