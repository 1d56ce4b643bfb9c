"""Detection and false-positive rates on the committed corpus (bench/corpus/) stay on target.

The corpus holds attack requests built from public payload lists and benign API traffic with
values that naive filters refuse (see bench/corpus/README.md). The same corpus is replayed over
HTTP against apishield and OWASP CRS by bench/inspection_vs_crs.py; this test runs the engine
in-process so that a change to a detector that costs detection or adds false positives fails.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from apishield.inspect import InspectionSettings, Inspector, RequestParts

CORPUS = Path(__file__).parents[2] / "bench" / "corpus"
DETECTION_TARGET = 0.97
FALSE_POSITIVE_TARGET = 0.005


def load() -> list[dict[str, Any]]:
    lines = (CORPUS / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def parts(record: dict[str, Any]) -> RequestParts:
    params = {
        name[1:-1]: value
        for name, value in zip(record["route"].split("/"), record["path"].split("/"), strict=True)
        if name.startswith("{")
    }
    extra: dict[str, Any] = {}
    if record["json"] is not None:
        extra["json"] = record["json"]
    return RequestParts(
        path_params=params,
        query=record["query"].encode(),
        headers=[(k.encode(), v.encode()) for k, v in record["headers"]],
        **extra,
    )


@pytest.fixture(scope="module")
def outcome() -> dict[str, Counter[tuple[str, str]]]:
    policy = yaml.safe_load((CORPUS / "policy.yaml").read_text(encoding="utf-8"))
    inspector = Inspector(InspectionSettings.model_validate(policy["inspection"]))
    total: Counter[tuple[str, str]] = Counter()
    flagged: Counter[tuple[str, str]] = Counter()
    for record in load():
        key = (record["label"], record["category"])
        total[key] += 1
        if inspector.inspect(parts(record), route=record["route"]):
            flagged[key] += 1
    return {"total": total, "flagged": flagged}


def rate(outcome: dict[str, Counter[tuple[str, str]]], label: str) -> float:
    total = sum(n for (lab, _), n in outcome["total"].items() if lab == label)
    flagged = sum(n for (lab, _), n in outcome["flagged"].items() if lab == label)
    return flagged / total


def test_the_corpus_is_large_enough() -> None:
    records = load()
    attacks = Counter(r["category"] for r in records if r["label"] == "attack")
    locations = Counter(r["location"] for r in records if r["label"] == "attack")
    assert sum(attacks.values()) >= 500
    assert len(records) - sum(attacks.values()) >= 500
    assert set(attacks) == {"sqli", "nosqli", "cmdi", "xss", "traversal", "ssti"}
    assert {"query", "body", "header"} <= set(locations)


def test_detection_rate(outcome: dict[str, Counter[tuple[str, str]]]) -> None:
    assert rate(outcome, "attack") >= DETECTION_TARGET


def test_false_positive_rate(outcome: dict[str, Counter[tuple[str, str]]]) -> None:
    assert rate(outcome, "benign") <= FALSE_POSITIVE_TARGET


def test_every_category_meets_the_target(outcome: dict[str, Counter[tuple[str, str]]]) -> None:
    rates = {
        category: outcome["flagged"][(label, category)] / n
        for (label, category), n in outcome["total"].items()
        if label == "attack"
    }
    assert {c: r for c, r in rates.items() if r < DETECTION_TARGET} == {}
