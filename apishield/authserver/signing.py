"""Signing keys of the built-in issuer: creation, rotation, the JWK Set, signing (AUTH 19, 23).

Keys are ES256 (P-256), one algorithm each, their ``kid`` the RFC 7638 thumbprint (unique by
construction); the private half is stored sealed with the secret key's AES-GCM subkey, bound
to the ``kid``. A key's life (``apishield.store.signingkeys``):

``next``      published in the JWK Set, not signing, until its ``not_before``;
``active``    signing (the newest active key whose ``not_before`` has come);
``retiring``  no longer signing, published until ``retire_after`` = the moment it stopped
              signing + the access-token lifetime + leeway, i.e. until its last token expired;
``retired``   gone from the JWK Set.

``rotate_signing_keys`` starts a rotation: a ``next`` key, published ``publish_lead`` seconds
before it may sign, so that every verifier's JWKS cache knows it first (RFC 7517 §5 leaves
this to the issuer; 600 s is twice the default cache TTL of ``IssuerSettings``). The switch
itself needs no scheduler: ``settle_signing_keys`` (run before every signature and by the
CLI) promotes a due ``next`` key and retires what has expired. ``emergency=True`` (a leaked
key) retires every key at once and signs with a new one immediately: tokens signed before
stop verifying as soon as verifiers reload the keys.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from apishield.store.records import SigningKeyRecord

if TYPE_CHECKING:
    from apishield.identity.secretkey import SecretKeys
    from apishield.store.engine import Store

logger = logging.getLogger("apishield.authserver")

ALGORITHM = "ES256"
CURVE = "P-256"
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - RFC 9068 §2.1 media type


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One state change ``settle`` or ``rotate`` decided (pure data, applied by the caller)."""

    kid: str
    state: Literal["active", "retiring", "retired"]
    retire_after: datetime | None = None


def plan_settle(
    keys: Sequence[SigningKeyRecord], *, now: datetime, retire_delay: timedelta
) -> list[KeyChange]:
    """What to change at ``now``: promote the newest due ``next`` key (and demote the active
    ones to ``retiring``), retire keys past ``retire_after``. No I/O."""
    changes: list[KeyChange] = []
    due = sorted(
        (k for k in keys if k.state == "next" and k.not_before <= now),
        key=lambda k: (k.not_before, k.created_at),
    )
    if due:
        newest = due[-1]
        changes.append(KeyChange(newest.kid, "active"))
        for key in due[:-1]:  # older next keys never signed: gone at once
            changes.append(KeyChange(key.kid, "retired", now))
        for key in keys:
            if key.state == "active":
                changes.append(KeyChange(key.kid, "retiring", now + retire_delay))
    for key in keys:
        if key.state == "retiring" and key.retire_after is not None and key.retire_after <= now:
            changes.append(KeyChange(key.kid, "retired"))
    return changes


def choose_signing_key(
    keys: Sequence[SigningKeyRecord], changes: Sequence[KeyChange], *, now: datetime
) -> str | None:
    """The kid that signs at ``now`` once ``changes`` are applied (newest ``not_before``)."""
    state = {k.kid: k.state for k in keys}
    state.update({c.kid: c.state for c in changes})
    active = [k for k in keys if state[k.kid] == "active" and k.not_before <= now]
    if not active:
        return None
    return max(active, key=lambda k: (k.not_before, k.created_at)).kid


def public_jwk(key: ECKey) -> dict[str, Any]:
    """The published form of a key: public members, ``kid``, ``alg``, ``use``."""
    document = dict(key.as_dict(private=False))
    document.update({"kid": key.thumbprint(), "alg": ALGORITHM, "use": "sig"})
    return document


async def create_signing_key(
    store: Store,
    secret_keys: SecretKeys,
    *,
    state: Literal["next", "active"],
    not_before: datetime,
) -> SigningKeyRecord:
    """Generate a P-256 key and store it with its private half sealed."""
    key = ECKey.generate_key(CURVE, private=True)
    kid = key.thumbprint()
    der = key.as_bytes(private=True, encoding="DER")
    sealed = secret_keys.seal(der, associated=kid.encode())
    record = await store.signing_keys.add(
        kid=kid,
        alg=ALGORITHM,
        sealed_private_key=sealed,
        public_jwk=public_jwk(key),
        state=state,
        not_before=not_before,
    )
    logger.info("signing key created kid=%s state=%s not_before=%s", kid, state, not_before)
    return record


async def _apply(store: Store, changes: Sequence[KeyChange]) -> None:
    for change in changes:
        await store.signing_keys.set_state(
            change.kid, change.state, retire_after=change.retire_after
        )
        logger.info(
            "signing key %s kid=%s%s",
            change.state,
            change.kid,
            f" published until {change.retire_after}" if change.state == "retiring" else "",
        )


async def apply_due_changes(
    store: Store, *, retire_delay: timedelta
) -> tuple[list[SigningKeyRecord], list[KeyChange]]:
    """Apply due promotions and retirements; returns the keys as read and the changes."""
    keys = await store.signing_keys.all()
    changes = plan_settle(keys, now=store.now(), retire_delay=retire_delay)
    if changes:
        await _apply(store, changes)
    return keys, changes


async def settle_signing_keys(
    store: Store, secret_keys: SecretKeys, *, retire_delay: timedelta
) -> str:
    """Apply due promotions and retirements; create a first key when none can sign.
    Returns the kid that signs now."""
    keys, changes = await apply_due_changes(store, retire_delay=retire_delay)
    now = store.now()
    kid = choose_signing_key(keys, changes, now=now)
    if kid is None:
        # A new store (or every key retired): nothing signed by this key exists yet, so
        # there is nothing for verifiers to learn ahead of it.
        kid = (await create_signing_key(store, secret_keys, state="active", not_before=now)).kid
    return kid


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What ``rotate_signing_keys`` did."""

    created: SigningKeyRecord | None  # None: a rotation was already pending
    pending: SigningKeyRecord | None  # the key that will sign next
    retired: tuple[str, ...]  # kids retired at once (emergency)


async def rotate_signing_keys(
    store: Store,
    secret_keys: SecretKeys,
    *,
    emergency: bool = False,
    publish_lead: float = 600.0,
    access_token_ttl: float = 600.0,
    leeway: float = 60.0,
) -> RotationResult:
    """Start a key rotation (AUTH 23).

    Normal: a ``next`` key, published now, signing after ``publish_lead`` seconds; the key it
    replaces stays published until its last token expires. Idempotent while a rotation is
    pending. ``emergency``: every key is retired now and a new one signs at once.
    """
    retire_delay = timedelta(seconds=access_token_ttl + leeway)
    now = store.now()
    if emergency:
        keys = await store.signing_keys.all()
        live = [k for k in keys if k.state != "retired"]
        await _apply(store, [KeyChange(k.kid, "retired", now) for k in live])
        new = await create_signing_key(store, secret_keys, state="active", not_before=now)
        logger.warning(
            "emergency signing key rotation: %d key(s) retired, kid=%s signs now",
            len(live),
            new.kid,
        )
        return RotationResult(new, new, tuple(k.kid for k in live))
    keys, changes = await apply_due_changes(store, retire_delay=retire_delay)
    if changes:
        keys = await store.signing_keys.all()
    pending = [k for k in keys if k.state == "next"]
    if pending:
        return RotationResult(None, max(pending, key=lambda k: k.not_before), ())
    if choose_signing_key(keys, (), now=now) is None:
        # Nothing signs yet (a new store): the first key may sign at once.
        first = await create_signing_key(store, secret_keys, state="active", not_before=now)
        return RotationResult(first, first, ())
    new = await create_signing_key(
        store, secret_keys, state="next", not_before=now + timedelta(seconds=publish_lead)
    )
    return RotationResult(new, new, ())


async def jwks_document(store: Store) -> dict[str, Any]:
    """The JWK Set (RFC 7517 §5): next, active and retiring keys still within their time."""
    return {"keys": [dict(k.public_jwk) for k in await store.signing_keys.published()]}


class Signer:
    """Signs access tokens with the store's current key; unsealed keys are kept by kid."""

    def __init__(self, store: Store, secret_keys: SecretKeys, *, retire_delay: timedelta) -> None:
        self.store = store
        self.secret_keys = secret_keys
        self.retire_delay = retire_delay
        self._keys: dict[str, ECKey] = {}

    async def _private_key(self, kid: str) -> ECKey:
        key = self._keys.get(kid)
        if key is None:
            record = await self.store.signing_keys.get(kid)
            if record is None or record.alg != ALGORITHM:
                raise LookupError(f"signing key {kid} is not an {ALGORITHM} key in the store")
            der = self.secret_keys.unseal(record.private_key, associated=kid.encode())
            key = ECKey.import_key(der)
            self._keys[kid] = key
        return key

    async def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims``: ``{"alg": "ES256", "typ": "at+jwt", "kid": …}``."""
        kid = await settle_signing_keys(
            self.store, self.secret_keys, retire_delay=self.retire_delay
        )
        key = await self._private_key(kid)
        header = {"alg": ALGORITHM, "typ": ACCESS_TOKEN_TYP, "kid": kid}
        return jose_jwt.encode(header, claims, key, algorithms=[ALGORITHM])
