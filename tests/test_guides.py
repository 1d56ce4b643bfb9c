"""Every refusal and finding code in the source has a guide that `apishield explain` prints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import apishield
from apishield.guides import read_guide

PACKAGE = Path(apishield.__file__).parent


def codes_in_source() -> set[str]:
    codes: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                        codes.add(str(kw.value.value))
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "Finding" and len(node.args) > 1:
                    arg = node.args[1]
                    if isinstance(arg, ast.Constant):
                        codes.add(str(arg.value))
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == "code":
                        codes.add(str(node.value.value))
    return {c for c in codes if isinstance(c, str) and c.replace("_", "").isalpha()}


CODES = sorted(codes_in_source())


def test_the_scan_finds_codes() -> None:
    assert {"route_not_found", "body_too_large", "tls_off", "cors_wildcard"} <= set(CODES)


@pytest.mark.parametrize("code", CODES)
def test_guide_exists(code: str) -> None:
    text = read_guide(code)
    assert text is not None, f"docs/refusals/{code}.md is missing"
    assert text.startswith(f"# {code}")


def test_every_guide_is_in_the_index() -> None:
    folder = PACKAGE.parent / "docs" / "refusals"
    index = (folder / "README.md").read_text(encoding="utf-8")
    missing = [
        p.name
        for p in sorted(folder.glob("*.md"))
        if p.name != "README.md" and f"({p.name})" not in index
    ]
    assert missing == []
