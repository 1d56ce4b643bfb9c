"""The ban list: addresses, networks and principals refused outright, each for a while.

Bans live in the same storage as the limits (``state.cache``), so a ban added on one gateway,
or with ``apishield bans add``, applies on all of them. The request path never waits on the
storage: each process keeps a local copy and checks it with a dictionary lookup (a network scan
only when network bans exist); the copy is refreshed in the background at most every
``refresh`` seconds, and only reloaded when the shared change counter moved. A ban therefore
reaches every gateway within ``refresh`` seconds, and expires everywhere at its own time, since
every copy checks the expiry itself.

When the storage is unreachable the last copy stays in force (a ban is never lifted because
Redis is down); the first request of a process waits for the first load, so a fresh process
does not start with an empty list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from apishield.ratelimit.storage import BanRecord, BanStorage, StorageUnavailable

logger = logging.getLogger("apishield.ratelimit")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REASON = 200
MAX_TTL = 366 * 86_400.0
MAX_RESOLVED = 100_000


def parse_subject(value: str) -> str:
    """A ban subject in its stored form; raises ``ValueError`` with what is accepted.

    ``203.0.113.7`` → ``ip:203.0.113.7``; ``2001:db8::/48`` → ``ip:2001:db8::/48``;
    ``principal:ISSUER|SUBJECT`` is kept as given (a principal's ``key``).
    """
    text = value.strip()
    if text.startswith("principal:"):
        key = text[len("principal:") :]
        if not key or "|" not in key or any(ord(c) < 0x20 for c in key) or len(key) > 512:
            raise ValueError(f"{value!r}: write a principal as principal:ISSUER|SUBJECT")
        return f"principal:{key}"
    if text.startswith("ip:"):
        text = text[3:]
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            if network.num_addresses == 1:
                return f"ip:{network.network_address}"
            return f"ip:{network}"
        return f"ip:{ipaddress.ip_address(text)}"
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address, a network (203.0.113.0/24) "
            "or principal:ISSUER|SUBJECT"
        ) from None


@dataclass(frozen=True, slots=True)
class BanHit:
    """The ban that matched a request (the reason is for the operator, not the client)."""

    subject: str
    reason: str
    expires: float


class BanList:
    """The local copy of the shared ban list, and the way to change it.

    Trust assumption: whoever can write to the storage can ban or unban; the gateway trusts
    its content but not its shape (malformed entries are skipped, never crash a request).
    """

    def __init__(
        self,
        storage: BanStorage,
        *,
        refresh: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.refresh = refresh
        self.clock = clock
        self._addresses: dict[str, BanRecord] = {}
        self._networks: list[tuple[Network, BanRecord]] = []
        self._principals: dict[str, BanRecord] = {}
        self._resolved: dict[str, BanRecord | None] = {}
        self._version: int | None = None
        self._checked = 0.0
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._addresses) + len(self._networks) + len(self._principals)

    # -- the request path ------------------------------------------------------------------

    async def ready(self) -> None:
        """Load the list once, then keep it fresh in the background; never raises."""
        if self._version is None:
            if self._first is None:
                self._first = asyncio.ensure_future(self._refresh(force=True))
            await asyncio.shield(self._first)
            return
        if self._task is None and self.clock() - self._checked >= self.refresh:
            self._task = asyncio.get_running_loop().create_task(self._background())

    def check_ip(self, client_ip: str) -> BanHit | None:
        """The ban on ``client_ip`` (or on a network holding it), if any is in force."""
        if not self._addresses and not self._networks:
            return None
        record = self._addresses.get(client_ip)
        if record is None and (self._networks or ":" in client_ip):
            # Parsing and scanning networks costs a few µs: remember the answer per address
            # until the list changes (bounded, so a flood of addresses cannot grow it).
            if client_ip in self._resolved:
                record = self._resolved[client_ip]
            else:
                record = self._resolve(client_ip)
                if len(self._resolved) >= MAX_RESOLVED:
                    self._resolved.clear()
                self._resolved[client_ip] = record
        return _hit(record, self.clock())

    def _resolve(self, client_ip: str) -> BanRecord | None:
        try:
            address = ipaddress.ip_address(client_ip.strip("[]"))
        except ValueError:
            return None
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        record = self._addresses.get(f"ip:{address}")
        if record is None:
            for network, candidate in self._networks:
                if address.version == network.version and address in network:
                    return candidate
        return record

    def check_principal(self, key: str) -> BanHit | None:
        """The ban on the principal whose ``Principal.key`` is ``key``, if any is in force."""
        if not self._principals:
            return None
        return _hit(self._principals.get(key), self.clock())

    # -- changes ---------------------------------------------------------------------------

    async def add(self, subject: str, *, ttl: float, reason: str) -> BanRecord:
        """Ban ``subject`` (see ``parse_subject``) for ``ttl`` seconds; replaces an older ban."""
        if not 0 < ttl <= MAX_TTL:
            raise ValueError("a ban lasts more than 0 seconds and at most 366 days")
        reason = " ".join(reason.split())[:MAX_REASON]
        now = self.clock()
        record = BanRecord(parse_subject(subject), reason, now, now + ttl)
        await self.storage.ban_put(record)
        await self._refresh(force=True)
        return record

    async def remove(self, subject: str) -> bool:
        """Lift the ban on ``subject``; False when there was none."""
        removed = await self.storage.ban_delete(parse_subject(subject))
        await self._refresh(force=True)
        return removed

    async def entries(self) -> list[BanRecord]:
        """Every ban in force, from the storage, soonest to expire first."""
        _, records = await self.storage.ban_load()
        now = self.clock()
        return sorted((r for r in records if r.expires > now), key=lambda r: r.expires)

    # -- refreshing ------------------------------------------------------------------------

    async def _background(self) -> None:
        try:
            await self._refresh(force=False)
        finally:
            self._task = None

    async def _refresh(self, *, force: bool) -> None:
        self._checked = self.clock()
        try:
            if not force and self._version is not None:
                if await self.storage.ban_version() == self._version:
                    return
            version, records = await self.storage.ban_load()
        except StorageUnavailable as exc:
            if self._version is None:
                self._version = -1  # serve without waiting again; retry on the next refresh
            logger.warning("ban list not refreshed (%s); keeping the last copy", exc)
            return
        self._install(version, records)

    def _install(self, version: int, records: Iterable[BanRecord]) -> None:
        addresses: dict[str, BanRecord] = {}
        networks: list[tuple[Network, BanRecord]] = []
        principals: dict[str, BanRecord] = {}
        for record in records:
            kind, _, value = record.subject.partition(":")
            if kind == "principal":
                principals[value] = record
            elif kind == "ip" and "/" in value:
                try:
                    networks.append((ipaddress.ip_network(value), record))
                except ValueError:
                    continue
            elif kind == "ip":
                addresses[value] = record
                addresses[record.subject] = record  # normalised lookups use the prefixed form
        self._addresses, self._networks, self._principals = addresses, networks, principals
        self._resolved = {}
        self._version = version

    async def aclose(self) -> None:
        for task in (self._task, self._first):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass


def _hit(record: BanRecord | None, now: float) -> BanHit | None:
    if record is None or record.expires <= now:
        return None
    return BanHit(record.subject, record.reason, record.expires)
