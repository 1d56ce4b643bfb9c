"""The guides behind ``apishield explain CODE``: one Markdown file per code in docs/refusals/.

Wheels carry them under ``apishield/_guides``; a source checkout reads ``docs/refusals``.
"""

from __future__ import annotations

import re
from pathlib import Path

_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_PLACES = (
    Path(__file__).parent / "_guides",
    Path(__file__).parent.parent / "docs" / "refusals",
)


def guide_path(code: str) -> Path | None:
    """The guide file for ``code``, or None. ``code`` is validated: no path tricks."""
    if not _CODE.match(code):
        return None
    for place in _PLACES:
        candidate = place / f"{code}.md"
        if candidate.is_file():
            return candidate
    return None


def read_guide(code: str) -> str | None:
    path = guide_path(code)
    return path.read_text(encoding="utf-8") if path is not None else None
