"""Signing keys of a token issuer: its JWK Set (RFC 7517 §5), fetched and cached (AUTH 9).

Trust assumption: the keys are whatever the configured issuer publishes at its ``jwks_uri``
(or at the ``jwks_uri`` of its metadata document, RFC 8414 / OpenID Connect Discovery 1.0,
whose ``issuer`` must equal the configured one: AUTH 1). Nothing a token says is used to find
keys: ``jku``, ``x5u``, ``jwk`` and ``x5c`` in a token header are never read (RFC 8725 §3.8).

The cache (``JWKSCache``):

- keeps a set for ``jwks_cache_ttl``, then fetches it again;
- on a ``kid`` it does not know, fetches once more, at most once per ``jwks_refetch_cooldown``
  (key rotation: an issuer publishes a new key and signs with it). Attackers sending random
  ``kid`` values therefore cost one fetch per cooldown, not one per request;
- after a failed fetch keeps the last good set (an issuer's outage must not lock every caller
  out; PyJWT's cache bugs #1051 and #1162 show what happens otherwise) and waits a cooldown
  before trying again;
- coalesces concurrent fetches into one;
- bounds each fetch by ``fetch_timeout`` (whole exchange, not per read), refuses documents over
  a size cap and redirects to another origin.

Only keys whose ``use`` is absent or ``sig`` and whose ``key_ops`` (if any) include ``verify``
are kept; a key is chosen for a token only if its type and curve fit the token's ``alg`` and
its own ``alg``, when it has one, equals the token's (AUTH 3, RFC 8725 §3.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from apishield.errors import HTTPError
from apishield.identity.settings import IssuerSettings
from apishield.pipeline.strictjson import JSONRefused, parse_strict_json
from apishield.policy.addresses import is_loopback_host

logger = logging.getLogger("apishield.identity")

MAX_DOCUMENT_BYTES = 256 * 1024
"""A JWK Set or metadata document larger than this is refused (real ones are a few KiB)."""

MAX_REDIRECTS = 3
MIN_RSA_BITS = 2048  # RFC 7518 §3.3: keys of 2048 bits or larger MUST be used

# The key type (and curves) each asymmetric algorithm needs (RFC 7518 §3, RFC 8037 §3.1).
_KEY_FOR_ALG: dict[str, tuple[str, frozenset[str] | None]] = {
    **{name: ("RSA", None) for name in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
ASYMMETRIC_ALGORITHMS = frozenset(_KEY_FOR_ALG)

# Public members per key type. Anything else in a published key (private parts an issuer
# leaked by mistake, x5c chains, vendor extras) is dropped before import.
_PUBLIC_MEMBERS = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
_META_MEMBERS = ("kid", "alg", "use")


class FetchError(Exception):
    """A document could not be fetched or was unusable. The message is for the gateway log."""


def jwks_unavailable() -> HTTPError:
    """503: no key set was ever fetched for the issuer, so no token of it can be checked."""
    return HTTPError(
        code="jwks_unavailable",
        status=503,
        hint="the issuer's signing keys could not be fetched; see the gateway log",
    )


def key_fits(key: Key, alg: str) -> bool:
    """True when ``key`` may verify a signature made with ``alg`` (AUTH 3)."""
    wanted = _KEY_FOR_ALG.get(alg)
    if wanted is None:
        return False
    kty, curves = wanted
    if key.key_type != kty:
        return False
    if curves is not None and not (isinstance(key, ECKey | OKPKey) and key.curve_name in curves):
        return False
    own_alg = key.get("alg")
    return own_alg is None or own_alg == alg


def parse_jwks(document: Any) -> list[Key]:
    """The signature keys of a JWK Set document; keys that cannot be used are skipped.

    Raises ``FetchError`` when the document is not a JWK Set at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("the document is not a JWK Set (no 'keys' array)")
    keys: list[Key] = []
    for entry in document["keys"]:
        key = _import_public_key(entry)
        if key is not None:
            keys.append(key)
    return keys


def _import_public_key(entry: Any) -> Key | None:
    if not isinstance(entry, dict):
        return None
    kty = entry.get("kty")
    if not isinstance(kty, str) or kty not in _PUBLIC_MEMBERS:
        return None  # RFC 7517 §5: skip key types we do not understand (symmetric ones too)
    if entry.get("use", "sig") != "sig":
        return None
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    data = {name: entry[name] for name in _PUBLIC_MEMBERS[kty] + _META_MEMBERS if name in entry}
    if any(not isinstance(value, str) for value in data.values()):
        return None
    try:
        # joserfc warns about weak keys (RSA under 2048 bits); such a key is skipped.
        with warnings.catch_warnings(action="error", category=SecurityWarning):
            key = JWKRegistry.import_key(data)
    except (JoseError, SecurityWarning, ValueError, TypeError):
        return None
    if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
        return None
    return key


def select_key(keys: Iterable[Key], kid: str | None, alg: str) -> Key | None:
    """The key for a token header's ``kid`` and ``alg``, or None.

    Without a ``kid``, the key is used only when it is the one key in the set that fits
    ``alg``: guessing among several would let a token pick its own key.
    """
    if kid is None:
        fitting = [key for key in keys if key_fits(key, alg)]
        return fitting[0] if len(fitting) == 1 else None
    for key in keys:
        if key.kid == kid and key_fits(key, alg):
            return key
    return None


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata lives: OpenID Connect Discovery 1.0 §4, then RFC 8414 §3.1."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return [
        f"{origin}{path}/.well-known/openid-configuration",
        f"{origin}/.well-known/oauth-authorization-server{path}",
    ]


def parse_metadata(document: Any, issuer: str) -> str:
    """The ``jwks_uri`` of an issuer's metadata document, checked (AUTH 1, RFC 8414 §3.3).

    The document's ``issuer`` must equal the configured one exactly: otherwise an attacker
    who can serve a metadata document could point the gateway at keys of their choosing.
    """
    if not isinstance(document, dict):
        raise FetchError("the metadata document is not a JSON object")
    if document.get("issuer") != issuer:
        raise FetchError("the metadata document's 'issuer' differs from the configured issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not _secure_url(jwks_uri):
        raise FetchError("the metadata document has no https 'jwks_uri'")
    return jwks_uri


def _secure_url(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    # Plain http only to this machine (a local identity provider), as the settings allow.
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


async def fetch_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    seconds: float,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    ok_statuses: frozenset[int] = frozenset({200}),
) -> tuple[int, Any]:
    """Status and parsed body of a JSON document at ``url``; raises ``FetchError``.

    ``seconds`` bounds the whole exchange, redirects included, so a server that trickles
    bytes cannot hold a request. GET follows redirects within the same origin only; POST
    follows none (its body may carry credentials). The body is read up to ``max_bytes``.
    """
    try:
        async with asyncio.timeout(seconds):
            for _ in range(MAX_REDIRECTS + 1):
                request = client.build_request(
                    method, url, headers=headers, data=data, timeout=seconds
                )
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    if response.is_redirect and method == "GET":
                        target = urljoin(url, response.headers.get("location", ""))
                        if _origin(target) != _origin(url):
                            raise FetchError("redirect to another origin refused")
                        url = target
                        continue
                    if response.status_code not in ok_statuses:
                        raise FetchError(f"HTTP status {response.status_code}")
                    body = await _read_capped(response, max_bytes)
                finally:
                    await response.aclose()
                return response.status_code, parse_strict_json(body, max_depth=32)
            raise FetchError("too many redirects")
    except TimeoutError as exc:
        raise FetchError("timed out") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"HTTP failure ({type(exc).__name__})") from exc
    except JSONRefused as exc:
        raise FetchError(f"not strict JSON ({exc.code})") from exc


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"document larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"document larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class KeyProvider(ABC):
    """Where a ``JWTVerifier`` gets an issuer's verification keys.

    ``JWKSCache`` fetches an external issuer's JWK Set; ``StaticKeys`` holds a fixed set (the
    built-in authorization server's keys, read from the store, or a pinned set).
    """

    @abstractmethod
    async def get_key(self, kid: str | None, alg: str) -> Key | None:
        """The key for a token's ``kid`` and ``alg``, or None when there is none.

        Raises ``HTTPError`` (503 ``jwks_unavailable``) only when no key set is available.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the provider holds."""


class StaticKeys(KeyProvider):
    """A fixed key set; ``replace`` swaps it atomically (for a store that rotates keys)."""

    def __init__(self, keys: Iterable[Key] | Mapping[str, Any] = ()) -> None:
        self._keys: list[Key] = []
        self.replace(keys)

    def replace(self, keys: Iterable[Key] | Mapping[str, Any]) -> None:
        """Use ``keys`` from now on (joserfc keys or a JWK Set); private parts are dropped."""
        if isinstance(keys, Mapping):
            self._keys = parse_jwks(dict(keys))
        else:
            # Keep public parts only, through the same filter as a fetched set.
            self._keys = parse_jwks({"keys": [key.as_dict(private=False) for key in keys]})

    async def get_key(self, kid: str | None, alg: str) -> Key | None:
        return select_key(self._keys, kid, alg)


class JWKSCache(KeyProvider):
    """One issuer's JWK Set, fetched over HTTPS and cached (AUTH 1, 3, 9).

    ``client`` is shared and closed by its owner; without one the cache makes its own and
    closes it in ``aclose``. ``clock`` is monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        settings: IssuerSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = settings.issuer
        self.ttl = settings.jwks_cache_ttl
        self.cooldown = settings.jwks_refetch_cooldown
        self.timeout = settings.fetch_timeout
        self._discovery = settings.discovery
        self._jwks_uri = settings.jwks_uri
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self._clock = clock
        self._keys: list[Key] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0  # completed fetch attempts, for metrics and tests

    @property
    def keys(self) -> list[Key] | None:
        """The last good key set, or None before the first successful fetch."""
        return self._keys

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.cooldown

    async def get_key(self, kid: str | None, alg: str) -> Key | None:
        now = self._clock()
        if self._inflight is not None:
            # A fetch is under way (the cooldown already counts it): wait for its result
            # rather than answering 503 from an empty set or with a stale one.
            await self.refresh()
        elif (self._keys is None or now - self._fetched_at >= self.ttl) and self._may_fetch(now):
            await self.refresh()
        if self._keys is None:
            raise jwks_unavailable()
        key = select_key(self._keys, kid, alg)
        known = kid is not None and any(k.kid == kid for k in self._keys)
        if (
            key is None
            and kid is not None
            and not known
            and (self._inflight is not None or self._may_fetch(self._clock()))
        ):
            # An unknown kid may be a key the issuer has just rotated in: look once more.
            await self.refresh()
            key = select_key(self._keys, kid, alg)
        return key

    async def refresh(self) -> None:
        """Fetch the set now, joining a fetch already under way; never raises on failure.

        The fetch runs in its own task, shielded: a caller that goes away (its client
        disconnected) does not cancel the fetch that other callers are waiting for.
        """
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch())
        await asyncio.shield(self._inflight)

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        try:
            jwks_uri = self._jwks_uri
            if self._discovery:
                jwks_uri = await self._discover()
            assert jwks_uri is not None  # noqa: S101 - settings require one source
            _, document = await fetch_json(self._client, "GET", jwks_uri, seconds=self.timeout)
            keys = parse_jwks(document)
            if not keys:
                raise FetchError("the JWK Set has no usable signature key")
        except FetchError as exc:
            logger.warning(
                "JWKS fetch failed for issuer %s: %s; %s",
                self.issuer,
                exc,
                "keeping the last good key set" if self._keys is not None else "no key set yet",
            )
        except Exception:
            # Whatever went wrong, the last good set stays and the waiters are not failed
            # by it; the traceback is for the operator.
            logger.exception("JWKS fetch failed for issuer %s", self.issuer)
        else:
            self._keys = keys
            self._fetched_at = self._clock()
        finally:
            self.fetches += 1
            self._inflight = None

    async def _discover(self) -> str:
        last: FetchError | None = None
        for url in metadata_urls(self.issuer):
            try:
                _, document = await fetch_json(self._client, "GET", url, seconds=self.timeout)
            except FetchError as exc:
                last = exc
                continue
            return parse_metadata(document, self.issuer)
        raise FetchError(f"no metadata document ({last})")

    async def aclose(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owns_client:
            await self._client.aclose()
