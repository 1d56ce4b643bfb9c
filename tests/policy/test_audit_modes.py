"""`apishield check` flags every stage that only reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from apishield.policy.audit import audit_policy
from apishield.policy.load import load_policy

SPEC = """\
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /health:
    get:
      responses: {"200": {description: ok}}
"""


@pytest.mark.parametrize(
    ("section", "field"),
    [
        pytest.param("limits: {mode: report}\n", ("limits", "mode"), id="limits"),
        pytest.param("inspection: {mode: report}\n", ("inspection", "mode"), id="inspection"),
        pytest.param("content: {mode: report}\n", ("content", "mode"), id="content"),
        pytest.param(
            "openapi: {spec: openapi.yaml, mode: report}\n", ("openapi", "mode"), id="openapi"
        ),
    ],
)
def test_report_mode_is_a_finding(tmp_path: Path, section: str, field: tuple[str, str]) -> None:
    (tmp_path / "openapi.yaml").write_text(SPEC)
    route = "routes:\n  - {path: /health, methods: [GET], allow: public}\n"
    text = "apishield: 1\n" + section + route
    (tmp_path / "p.yaml").write_text(text)
    policy = load_policy(tmp_path / "p.yaml")
    findings = [f for f in audit_policy(policy) if f.code == "stage_report_mode"]
    assert [f.field for f in findings] == [field]
    assert findings[0].severity == "medium"


def test_enforcing_stages_are_not_findings(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(SPEC)
    text = (
        "apishield: 1\nopenapi: {spec: openapi.yaml}\n"
        "routes:\n  - {path: /health, methods: [GET], allow: public}\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    policy = load_policy(tmp_path / "p.yaml")
    assert not [f for f in audit_policy(policy) if f.code == "stage_report_mode"]


@pytest.mark.parametrize(
    ("audience", "flagged"),
    [
        pytest.param("", True, id="unset"),
        pytest.param("    audience: https://api.test\n", False, id="set"),
    ],
)
def test_introspection_without_audience_is_a_finding(
    tmp_path: Path, audience: str, flagged: bool
) -> None:
    text = (
        "apishield: 1\nidentity:\n  introspection:\n"
        "    endpoint: https://idp.test/introspect\n    client_id: gw\n    client_secret: env:S\n"
        + audience
        + "routes:\n  - {path: /health, methods: [GET], allow: public}\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    codes = [f.code for f in audit_policy(load_policy(tmp_path / "p.yaml"))]
    assert ("introspection_audience_unset" in codes) is flagged


@pytest.mark.parametrize(
    ("cache", "workers", "flagged"),
    [
        pytest.param("memory://", 2, True, id="memory-two-workers"),
        pytest.param("memory://", 1, False, id="memory-one-worker"),
        pytest.param("redis://127.0.0.1:6379/0", 4, False, id="redis-four-workers"),
    ],
)
def test_workers_without_a_shared_cache(
    tmp_path: Path, cache: str, workers: int, flagged: bool
) -> None:
    text = (
        f"apishield: 1\nstate: {{cache: '{cache}'}}\n"
        "routes:\n  - {path: /health, methods: [GET], allow: public}\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    findings = audit_policy(load_policy(tmp_path / "p.yaml"), workers=workers)
    shared = [f for f in findings if f.code == "limits_not_shared"]
    assert bool(shared) is flagged
    if flagged:
        assert shared[0].severity == "high"
        assert findings[0].severity == "high"  # most severe first
        assert f"up to {workers} times" in shared[0].message
