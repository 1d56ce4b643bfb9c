"""CPU cost of verifying a bearer JWT, uncached and from the cache of verified tokens.

Calls the verifiers directly, in one event loop, with keys held in memory (``StaticKeys``: no
JWKS fetch is measured), and reports process CPU time (``time.process_time``) per
verification:

- ``uncached``: ``JWTVerifier.verify_bearer`` every time: header checks, key choice, joserfc
  signature check, claims registry, principal;
- ``cached``: ``BearerDispatcher.verify_bearer`` on a token already in its ``TokenCache``:
  size check, SHA-256 of the token, LRU lookup, ``exp`` check.

    python bench/jwt_micro.py [--rounds 3] [--uncached 3000] [--cached 100000]

Each figure is the best of ``--rounds`` runs (the least disturbed by other work on the
machine). DESIGN's budget puts an ES256 verification at about 150 µs and a cache hit at a
few µs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import joserfc
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from apishield.identity.bearer import BearerDispatcher
from apishield.identity.jwks import StaticKeys
from apishield.identity.jwt import JWTVerifier
from apishield.identity.principal import Principal
from apishield.identity.tokencache import TokenCache

ISSUER = "https://login.example.com/realms/main"


def _token(key: Key, alg: str) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-42",
        "aud": "orders-api",
        "iat": now,
        "exp": now + 3600,
        "jti": "bench-1",
        "client_id": "web-app",
        "scope": "orders:read orders:write",
    }
    header = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    # joserfc flags the name EdDSA as deprecated (RFC 9864); issuers still publish it.
    with warnings.catch_warnings(action="ignore", category=SecurityWarning):
        return jwt.encode(header, claims, key, algorithms=[alg], default_type=None)


def _keys() -> dict[str, Key]:
    return {
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "es", "alg": "ES256"}),
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "rs", "alg": "RS256"}),
        "EdDSA": OKPKey.generate_key("Ed25519", parameters={"kid": "ed", "alg": "EdDSA"}),
    }


async def _cpu_per_call(call: Callable[[], Awaitable[Principal]], count: int) -> float:
    for _ in range(min(count, 200)):  # warm up: imports, caches, branch predictors
        await call()
    start = time.process_time()
    for _ in range(count):
        await call()
    return (time.process_time() - start) / count * 1e6


async def main(rounds: int, uncached: int, cached: int) -> None:
    keys = _keys()
    verifier = JWTVerifier(
        issuer=ISSUER,
        keys=StaticKeys(keys.values()),
        algorithms=list(keys),
        audience="orders-api",
    )
    dispatcher = BearerDispatcher([verifier], cache=TokenCache(10_000))
    rows: list[tuple[str, float]] = []
    for alg, key in keys.items():
        token = _token(key, alg)
        assert (await verifier.verify_bearer(token)).subject == "user-42"  # noqa: S101

        def once(token: str = token) -> Awaitable[Principal]:
            return verifier.verify_bearer(token)

        best = min([await _cpu_per_call(once, uncached) for _ in range(rounds)])
        rows.append((f"{alg} uncached (JWTVerifier)", best))
    token = _token(keys["ES256"], "ES256")
    await dispatcher.verify_bearer(token)
    best = min(
        [
            await _cpu_per_call(lambda: dispatcher.verify_bearer(token), cached)
            for _ in range(rounds)
        ]
    )
    rows.append(("ES256 cached (BearerDispatcher hit)", best))
    await dispatcher.aclose()

    print(
        f"python {platform.python_version()}, joserfc {joserfc.__version__}, {platform.machine()}"
    )
    print(f"{'what':<40} {'CPU µs/verification':>20}")
    for name, micros in rows:
        print(f"{name:<40} {micros:>20.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uncached", type=int, default=3000)
    parser.add_argument("--cached", type=int, default=100_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.uncached, arguments.cached))
