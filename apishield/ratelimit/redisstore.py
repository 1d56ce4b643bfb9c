"""``redis://``: counters and bans shared by every gateway process, exact across them.

One round trip per ``apply``: one ``EVALSHA`` per partition, all sent in one write (the
usual request has one partition). Scripts are loaded once and reloaded only when Redis answers
``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``). Commands go through ``RespClient``, a lean
auto-pipelining client (see ``resp.py`` for why not redis-py's asyncio client on this path).

Short timeouts (``timeout``, 100 ms by default): a request must never wait long on a rate
limiter. Every failure is raised as ``StorageUnavailable`` naming only the storage (without
its password) and the kind of failure; the fallback wrapper decides what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import hiredis

from apishield.ratelimit import redis_scripts
from apishield.ratelimit.resp import RespClient, RespError
from apishield.ratelimit.storage import (
    BanRecord,
    Check,
    Outcome,
    Storage,
    StorageUnavailable,
    display_url,
    partitions,
)

logger = logging.getLogger("apishield.ratelimit")
US = 1_000_000
_KIND = {"gcra": b"g", "sliding": b"s", "fixed": b"f", "concurrency": b"c"}
_BANS = "{bans}"


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


_SCRIPTS = {
    name: (text, _sha(text))
    for name, text in (
        ("apply", redis_scripts.APPLY),
        ("refund", redis_scripts.REFUND),
        ("ban_put", redis_scripts.BAN_PUT),
        ("ban_delete", redis_scripts.BAN_DELETE),
        ("ban_load", redis_scripts.BAN_LOAD),
    )
}
Call = tuple[Sequence[str], Sequence[Any]]


class RedisStorage(Storage):
    """Redis storage for ``url`` (``redis://[[user]:password@]host:port/db`` or ``rediss://``).

    Trust assumption: Redis is reachable only by the gateways (a network ACL, a password);
    whoever can write to it can lift any limit or ban.
    """

    def __init__(self, url: str, *, timeout: float = 0.1, key_prefix: str = "apishield:") -> None:
        self.url = display_url(url)
        self.key_prefix = key_prefix
        self._client = RespClient(url, timeout=timeout)

    def _unavailable(self, what: str) -> StorageUnavailable:
        return StorageUnavailable(self.url, what)

    async def _scripts(self, name: str, calls: Sequence[Call]) -> list[Any]:
        """Run script ``name`` once per call, all in one round trip; reload it if needed."""
        text, sha = _SCRIPTS[name]
        commands = [("EVALSHA", sha, len(keys), *keys, *args) for keys, args in calls]
        try:
            replies = await self._client.calls(commands)
            missing = [
                i
                for i, reply in enumerate(replies)
                if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")
            ]
            if missing:
                # A NOSCRIPT call changed nothing, and a partition is in one call only: loading
                # the script and sending just those calls again counts nothing twice.
                load = [("SCRIPT", "LOAD", text)] + [commands[i] for i in missing]
                again = (await self._client.calls(load))[1:]
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except RespError as exc:
            raise self._unavailable(str(exc)) from exc
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                # The server's text may quote our keys: log it for the operator, keep it out
                # of everything a client could see.
                logger.error("Redis refused a rate-limit script: %s", reply)
                raise self._unavailable("script error")
        return replies

    @staticmethod
    def _apply_call(checks: Sequence[Check]) -> Call:
        args: list[Any] = []
        for c in checks:
            args += (_KIND[c.kind], c.a, c.b, c.member, c.cost, 1 if c.dry else 0)
        return [c.key for c in checks], args

    @staticmethod
    def _outcomes(raw: Sequence[int]) -> list[Outcome]:
        return [
            Outcome(
                raw[i] == 1,
                raw[i + 1] == 1,
                raw[i + 2],
                raw[i + 3] / US,
                raw[i + 4] / US,
            )
            for i in range(0, len(raw), 5)
        ]

    async def apply(self, checks: Sequence[Check]) -> list[Outcome]:
        groups = partitions(checks)
        if len(groups) == 1:
            (raw,) = await self._scripts("apply", [self._apply_call(checks)])
            return self._outcomes(raw)
        ordered = list(groups.values())
        results = await self._scripts(
            "apply", [self._apply_call([checks[i] for i in group]) for group in ordered]
        )
        outcomes: list[Outcome | None] = [None] * len(checks)
        for indexes, raw in zip(ordered, results, strict=True):
            for i, outcome in zip(indexes, self._outcomes(raw), strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def refund(self, checks: Sequence[Check]) -> None:
        if not checks:
            return
        calls: list[Call] = []
        for indexes in partitions(checks).values():
            group = [checks[i] for i in indexes]
            args: list[Any] = []
            for c in group:
                args += (_KIND[c.kind], c.a, c.member, c.cost)
            calls.append(([c.key for c in group], args))
        await self._scripts("refund", calls)

    async def ping(self) -> None:
        try:
            reply = await self._client.call("PING")
        except RespError as exc:
            raise self._unavailable(str(exc)) from exc
        if reply != b"PONG":
            raise self._unavailable("unexpected reply to PING")

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- bans ------------------------------------------------------------------------------

    def _ban_keys(self) -> list[str]:
        return [f"{self.key_prefix}{_BANS}", f"{self.key_prefix}{_BANS}:v"]

    async def ban_put(self, record: BanRecord) -> None:
        value = json.dumps(
            {"reason": record.reason, "created": record.created, "expires": record.expires},
            separators=(",", ":"),
        )
        await self._scripts("ban_put", [(self._ban_keys(), [record.subject, value])])

    async def ban_delete(self, subject: str) -> bool:
        (removed,) = await self._scripts("ban_delete", [(self._ban_keys(), [subject])])
        return bool(removed)

    async def ban_version(self) -> int:
        try:
            raw = await self._client.call("GET", self._ban_keys()[1])
        except RespError as exc:
            raise self._unavailable(str(exc)) from exc
        if isinstance(raw, hiredis.ReplyError):
            raise self._unavailable("unexpected reply")
        return int(raw) if raw is not None else 0

    async def ban_load(self) -> tuple[int, list[BanRecord]]:
        (reply,) = await self._scripts("ban_load", [(self._ban_keys(), [])])
        raw_version, server_now, flat = reply
        now = float(server_now)
        records: list[BanRecord] = []
        expired: list[bytes] = []
        for subject, value in zip(flat[::2], flat[1::2], strict=True):
            record = _parse_ban(subject, value)
            if record is None or record.expires <= now:
                expired.append(subject)
            else:
                records.append(record)
        if expired:
            # Purged without moving the counter: an expired ban is already inactive everywhere,
            # since every gateway checks the expiry itself.
            try:
                await self._client.call("HDEL", self._ban_keys()[0], *expired)
            except RespError as exc:
                raise self._unavailable(str(exc)) from exc
        return int(raw_version), records


def _parse_ban(subject: bytes, value: bytes) -> BanRecord | None:
    try:
        data = json.loads(value)
        return BanRecord(
            subject.decode("utf-8"),
            str(data["reason"]),
            float(data["created"]),
            float(data["expires"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        logger.warning("ignoring a malformed ban entry in the shared store")
        return None
