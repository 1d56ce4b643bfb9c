from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from apishield.store import Store


@dataclass
class Admin:
    """Runs admin commands against one policy file, off the test's event loop (each command
    runs its own loop, as it does from a shell)."""

    config: Path

    async def __call__(self, app: typer.Typer, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, app, [*args, "-c", str(self.config)], input=input
        )


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """A policy with the default store: SQLite in its state directory."""
    path = tmp_path / "apishield.yaml"
    path.write_text(
        "apishield: 1\n"
        "state: {dir: state}\n"
        "identity:\n"
        "  api_keys: {header: X-API-Key, prefix: ask_test}\n"
    )
    return path


@pytest.fixture
def admin(policy_file: Path) -> Admin:
    return Admin(policy_file)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """The store the commands use, opened beside them to check what they did."""
    opened = Store(f"sqlite:///{tmp_path}/state/apishield.db")
    yield opened
    await opened.aclose()
