"""Alembic migration scripts of apishield's store (run by ``apishield.store.migrate``)."""
