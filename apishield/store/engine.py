"""The ``Store``: one async engine, its repositories, and the fail-closed error boundary.

Every query goes through ``Store.begin()`` or ``Store.connect()``, which turn any driver or
pool failure into ``StoreUnavailableError`` (503). A caller therefore cannot mistake "the
database is down" for "no such key": the request is refused, never allowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from apishield.errors import StoreUnavailableError
from apishield.store.apikeys import ApiKeyRepository
from apishield.store.clients import ClientRepository
from apishield.store.grants import (
    AccessTokenRepository,
    AuthorizationCodeRepository,
    RefreshTokenRepository,
)
from apishield.store.migrate import install_sqlite_hooks, migrate
from apishield.store.signingkeys import SigningKeyRepository
from apishield.store.urls import parse_store_url, store_url
from apishield.store.users import UserRepository

if TYPE_CHECKING:
    from apishield.policy.models import Policy

logger = logging.getLogger("apishield.store")


def utcnow() -> datetime:
    """The current time, aware, in UTC (the only kind of time the store takes)."""
    return datetime.now(UTC)


class Store:
    """apishield's persistent state (clients, users, API keys, grants, signing keys).

    ``url`` is ``sqlite:///PATH`` or ``postgresql://…`` (see ``apishield.store.urls``). With
    ``auto_migrate`` the schema is brought up to date before the first query, so the embedded
    default needs no setup step. Close with ``aclose()`` (or ``async with``).
    """

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        pool_size: int = 5,
        connect_timeout: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.url = url
        self.location = parse_store_url(url, connect_timeout=connect_timeout)
        self.engine = create_async_engine(
            self.location.url,
            connect_args=self.location.connect_args,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=connect_timeout,
            pool_pre_ping=True,  # a restarted database must cost one retry, not a 503 per conn
            hide_parameters=True,  # parameters are digests and hashes: keep them out of errors
        )
        if self.location.backend == "sqlite":
            install_sqlite_hooks(self.engine)
        self.clock = clock
        self._migrated = not auto_migrate
        self._lock = asyncio.Lock()
        self.clients = ClientRepository(self)
        self.users = UserRepository(self)
        self.api_keys = ApiKeyRepository(self)
        self.codes = AuthorizationCodeRepository(self)
        self.refresh_tokens = RefreshTokenRepository(self)
        self.access_tokens = AccessTokenRepository(self)
        self.signing_keys = SigningKeyRepository(self)

    @classmethod
    def from_policy(cls, policy: Policy, *, auto_migrate: bool = True) -> Store:
        """The store the policy names (``state.store``, default SQLite in ``state.dir``)."""
        return cls(store_url(policy.state), auto_migrate=auto_migrate)

    def now(self) -> datetime:
        """The store's idea of now (aware UTC; settable in tests through ``clock``)."""
        return self.clock()

    def redacted_url(self) -> str:
        """The store's URL with any password replaced by ``***``."""
        return self.location.redacted()

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision (idempotent)."""
        async with self._lock:
            await migrate(self.url, connect_timeout=float(self.location.connect_args["timeout"]))
            self._migrated = True

    async def _ready(self) -> None:
        if not self._migrated:
            async with self._lock:
                if not self._migrated:
                    await migrate(self.url)
                    self._migrated = True

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without an error."""
        await self._ready()
        try:
            async with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise  # a constraint said no: the repositories turn it into ConflictError
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        except SQLAlchemyError as exc:  # pool timeout, a closed engine
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads; whatever it began is rolled back at the end."""
        await self._ready()
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        # The class name is enough to start from; the message could quote stored values.
        cause = type(getattr(exc, "orig", None) or exc).__name__
        logger.error("store unavailable at %s: %s", self.redacted_url(), cause)
        return StoreUnavailableError()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
