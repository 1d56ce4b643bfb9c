"""The sample API's data: customers and orders in one SQLite file (standard library ``sqlite3``).

Every query is a constant string with bound parameters; user input never becomes SQL text, so
the injection-looking requests the demo sends come back as data, not as extra rows. A
connection is opened per call: SQLite connections must not cross threads, and the API runs each
call in a worker thread so a slow disk never stalls the event loop the gateway shares.

The customers carry PII on purpose (e-mail, phone, card number), so later stages of the gateway
have something to mask. The card numbers are the card networks' published test numbers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Row = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    card_number TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    item TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    created_at TEXT NOT NULL
);
"""

SAMPLE_CUSTOMERS: tuple[tuple[int, str, str, str, str], ...] = (
    (1, "Ada Lovelace", "ada@example.com", "+1-202-555-0101", "4111111111111111"),
    (2, "Grace Hopper", "grace.hopper@example.org", "+1-202-555-0102", "5555555555554444"),
    (3, "Alan Turing", "alan.turing@example.net", "+44 20 7946 0103", "378282246310005"),
    (4, "Seán O'Brien", "sean.obrien@example.com", "+353 1 555 0104", "6011111111111117"),
    (5, "Katherine Johnson", "kj@example.org", "+1-202-555-0105", "4012888888881881"),
)
"""``(id, name, email, phone, card_number)``: the seeded customers, the same on every start."""

SAMPLE_ORDERS: tuple[tuple[int, int, str, int], ...] = (
    (1, 1, "analytical engine punch cards", 250),
    (2, 1, "brass gears", 12),
    (3, 2, "COBOL manual", 3),
    (4, 3, "enigma rotor", 5),
    (5, 4, "pint glasses", 6),
    (6, 5, "slide rule", 1),
)
"""``(id, customer_id, item, quantity)``: the seeded orders."""

_SEEDED_AT = "2026-01-15T09:00:00+00:00"


def escape_like(value: str) -> str:
    """Escape ``value`` for use inside a ``LIKE ... ESCAPE '\\'`` pattern.

    Without this, ``%`` and ``_`` in a search term act as wildcards: ``?name=%`` would list
    every customer even though no name contains a percent sign.
    """
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class DemoStore:
    """Customers and orders in the SQLite file ``path``, created and seeded on first use.

    Methods are blocking; call them from a worker thread. They are safe to call from several
    threads at once (one connection per call; SQLite serialises the writers).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._ready_lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.ensure_ready()
        with closing(self._open()) as conn, conn:
            yield conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def ensure_ready(self) -> None:
        """Create the tables and seed the sample data unless already there. Idempotent."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._open()) as conn:
                conn.isolation_level = None  # transactions below are explicit
                conn.executescript(_SCHEMA)
                # IMMEDIATE takes the write lock first, so two processes starting together
                # cannot both see an empty table and seed it twice.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("SELECT 1 FROM customers LIMIT 1").fetchone() is None:
                        conn.executemany(
                            "INSERT INTO customers (id, name, email, phone, card_number,"
                            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                            [(*c, _SEEDED_AT) for c in SAMPLE_CUSTOMERS],
                        )
                        conn.executemany(
                            "INSERT INTO orders (id, customer_id, item, quantity, created_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            [(*o, _SEEDED_AT) for o in SAMPLE_ORDERS],
                        )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            self._ready = True

    def list_customers(self, *, limit: int, name: str | None = None) -> list[Row]:
        """Customers by id; ``name`` keeps those whose name contains it (case-insensitive)."""
        with self._connect() as conn:
            if name:
                rows = conn.execute(
                    "SELECT id, name, email, phone, card_number, created_at FROM customers"
                    " WHERE name LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
                    (f"%{escape_like(name)}%", limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, name, email, phone, card_number, created_at FROM customers"
                    " ORDER BY id LIMIT ?",
                    (limit,),
                ).fetchall()
        return [dict(r) for r in rows]

    def get_customer(self, customer_id: int) -> Row | None:
        """One customer, or ``None``."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, name, email, phone, card_number, created_at FROM customers"
                " WHERE id = ?",
                (customer_id,),
            ).fetchone()
        return None if row is None else dict(row)

    def list_orders(self, *, limit: int, customer_id: int | None = None) -> list[Row]:
        """Orders by id, optionally only one customer's."""
        with self._connect() as conn:
            if customer_id is not None:
                rows = conn.execute(
                    "SELECT id, customer_id, item, quantity, created_at FROM orders"
                    " WHERE customer_id = ? ORDER BY id LIMIT ?",
                    (customer_id, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, customer_id, item, quantity, created_at FROM orders"
                    " ORDER BY id LIMIT ?",
                    (limit,),
                ).fetchall()
        return [dict(r) for r in rows]

    def get_order(self, order_id: int) -> Row | None:
        """One order, or ``None``."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, customer_id, item, quantity, created_at FROM orders WHERE id = ?",
                (order_id,),
            ).fetchone()
        return None if row is None else dict(row)

    def create_order(self, *, customer_id: int, item: str, quantity: int) -> Row | None:
        """Insert an order; ``None`` when the customer does not exist."""
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as conn:
            known = conn.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,))
            if known.fetchone() is None:
                return None
            cursor = conn.execute(
                "INSERT INTO orders (customer_id, item, quantity, created_at) VALUES (?, ?, ?, ?)",
                (customer_id, item, quantity, created_at),
            )
            order_id = cursor.lastrowid
        return {
            "id": order_id,
            "customer_id": customer_id,
            "item": item,
            "quantity": quantity,
            "created_at": created_at,
        }

    def delete_order(self, order_id: int) -> bool:
        """Delete an order; ``False`` when there was none."""
        with self._connect() as conn:
            cursor = conn.execute("DELETE FROM orders WHERE id = ?", (order_id,))
        return cursor.rowcount > 0
