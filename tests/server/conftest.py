from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apishield.server import DevCertificates, GatewayServer, ensure_dev_certificates

from .server_support import StandInApp, policy_for, serving_in_thread


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def dev_certs(state_dir: Path) -> DevCertificates:
    return ensure_dev_certificates(state_dir)


@pytest.fixture(scope="module")
def threaded_server(state_dir: Path, dev_certs: DevCertificates) -> Iterator[GatewayServer]:
    """One dev-TLS gateway with a redirect listener, shared by a module's blocking clients."""
    policy = policy_for(state_dir, redirect_http="127.0.0.1:0")
    with serving_in_thread(policy, StandInApp()) as server:
        yield server
