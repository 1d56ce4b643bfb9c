from __future__ import annotations

from tests.store.backends import (  # noqa: F401 - fixtures
    clock,
    postgres_session_url,
    sqlite_template,
    store,
    store_url,
)
