from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apishield.demo.store import SAMPLE_CUSTOMERS, SAMPLE_ORDERS, DemoStore, escape_like


@pytest.mark.parametrize(
    ("term", "escaped"),
    [
        pytest.param("ada", "ada", id="plain"),
        pytest.param("100%", "100\\%", id="percent"),
        pytest.param("a_b", "a\\_b", id="underscore"),
        pytest.param("a\\%", "a\\\\\\%", id="backslash-first"),
        pytest.param("O'Brien", "O'Brien", id="quote-is-left-to-binding"),
    ],
)
def test_escape_like(term: str, escaped: str) -> None:
    assert escape_like(term) == escaped


def test_seeding_happens_once_even_when_stores_start_together(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "db.sqlite3"
    stores = [DemoStore(path) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(DemoStore.ensure_ready, stores))
    assert len(stores[0].list_customers(limit=100)) == len(SAMPLE_CUSTOMERS)
    assert len(stores[0].list_orders(limit=100)) == len(SAMPLE_ORDERS)


def test_orders_of_an_unknown_customer_are_not_created(tmp_path: Path) -> None:
    store = DemoStore(tmp_path / "db.sqlite3")
    assert store.create_order(customer_id=42, item="x", quantity=1) is None
    assert len(store.list_orders(limit=100)) == len(SAMPLE_ORDERS)
