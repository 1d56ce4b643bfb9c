"""Errors of the store.

::

    HTTPError
    └── StoreUnavailableError   503 store_unavailable: the database failed; fail closed
    ApiShieldError
    └── StoreError              a stored record cannot be changed as asked
        ├── NotFoundInStoreError    no such client / user / key
        ├── ConflictError           a unique name is taken, a key already rolled
        └── InvalidRecordError      a value that must not be stored (implicit grant, …)

A request that needs the store while it is down is refused, never let through: the gateway
cannot tell a revoked key from a valid one without it (DESIGN "State": fail closed).
"""

from __future__ import annotations

from apishield.errors import ApiShieldError


class StoreError(ApiShieldError):
    """A store operation that cannot be done as asked (the message is safe to print)."""


class NotFoundInStoreError(StoreError):
    """No record with that id or name."""


class ConflictError(StoreError):
    """The change conflicts with what is stored (a unique name, a state)."""


class InvalidRecordError(StoreError):
    """A value that must not be stored (an implicit grant, a wildcard redirect URI…)."""
