"""The demo's credentials: an API key, two OAuth clients and a user, made in the store once.

On the first start ``ensure_credentials`` creates, through the same repositories the
``apikeys``, ``clients`` and ``users`` commands use:

- an API key for owner ``1`` (it stands for customer 1, so the object-level rule on
  ``/v2/customers/{customer_id}`` lets it read that customer and no other);
- ``demo-service``, a confidential client for the client-credentials grant;
- ``demo-browser``, a public client (PKCE, no secret) for the authorization-code flow, with
  one exact loopback redirect URI;
- the user ``demo``, with a random password, who signs in on the login page.

Later starts get the previous ``demo.json`` values and keep each one the store still
verifies (the API key through the gateway's own verifier, the secret and the password with
their Argon2id hashes); whatever no longer verifies is replaced. So the demo never prints a
secret that would be refused.

Trust assumption: ``demo.json`` holds these secrets in clear, readable by its owner only
(0600). That is acceptable for a local demo and for nothing else; none of them is logged.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from apishield.authserver.config import AUTHORIZE_PATH
from apishield.authserver.pkce import s256
from apishield.errors import ApiShieldError, HTTPError
from apishield.identity.apikeys import ApiKeyManager, StoreApiKeyVerifier
from apishield.identity.secretkey import load_secret_keys
from apishield.policy.models import Policy
from apishield.store.engine import Store

API_KEY_OWNER = "1"
API_KEY_SCOPES = ("customers:read", "orders:read", "orders:write")
SERVICE_CLIENT = "demo-service"
SERVICE_SCOPES = ("orders:read", "orders:write")
BROWSER_CLIENT = "demo-browser"
BROWSER_SCOPES = ("customers:read", "orders:read")
# Nothing listens here: after signing in, the browser shows the code in its address bar for
# the reader to copy. RFC 8252 §7.3: a loopback IP literal, plain HTTP, any port accepted.
REDIRECT_URI = "http://127.0.0.1:8976/callback"
USERNAME = "demo"


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """The demo's secrets, as ``demo.json`` keeps them (see the module docstring)."""

    api_key: str
    client_id: str
    client_secret: str
    username: str
    password: str
    browser_client_id: str
    redirect_uri: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DemoCredentials | None:
        """The credentials in a ``demo.json`` document, or None if they are not all there."""
        values = data.get("credentials")
        if not isinstance(values, dict):
            return None
        names = cls.__dataclass_fields__
        if set(values) != set(names) or not all(isinstance(v, str) for v in values.values()):
            return None
        return cls(**values)

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BrowserSignIn:
    """One authorization-code + PKCE flow (RFC 7636): a fresh verifier on every start."""

    code_verifier: str
    state: str
    authorize_url: str

    @classmethod
    def start(cls, base_url: str, credentials: DemoCredentials) -> BrowserSignIn:
        verifier = secrets.token_urlsafe(48)  # 64 characters: RFC 7636 §4.1 asks 43-128
        state = secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": credentials.browser_client_id,
                "redirect_uri": credentials.redirect_uri,
                "scope": " ".join(BROWSER_SCOPES),
                "state": state,
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        return cls(verifier, state, f"{base_url}{AUTHORIZE_PATH}?{query}")

    def to_json(self) -> dict[str, str]:
        return asdict(self)


async def ensure_credentials(
    policy: Policy, *, audience: str, previous: DemoCredentials | None
) -> DemoCredentials:
    """Reuse what ``previous`` holds and the store still verifies; create the rest.

    ``audience``: the built-in issuer's audience, registered as the clients' one resource, so
    a token request that names none gets it (RFC 8707 §2).
    """
    if policy.identity is None or policy.identity.api_keys is None:
        raise ApiShieldError("the demo policy must accept API keys (identity.api_keys)")
    prefix = policy.identity.api_keys.prefix
    keys = load_secret_keys(policy.state)
    async with Store.from_policy(policy) as store:
        await store.migrate()
        api_key = await _api_key(store, keys.api_key_pepper, prefix, previous)
        client_secret = await _service_client(store, audience, previous)
        password = await _user(store, previous)
        await _browser_client(store, audience)
    return DemoCredentials(
        api_key=api_key,
        client_id=SERVICE_CLIENT,
        client_secret=client_secret,
        username=USERNAME,
        password=password,
        browser_client_id=BROWSER_CLIENT,
        redirect_uri=REDIRECT_URI,
    )


async def _api_key(
    store: Store, pepper: bytes, prefix: str, previous: DemoCredentials | None
) -> str:
    if previous is not None:
        verifier = StoreApiKeyVerifier(store, pepper=pepper, prefix=prefix, cache_size=0)
        try:
            await verifier.verify_api_key(previous.api_key, client_ip="127.0.0.1")
        except HTTPError:
            pass  # revoked, expired, or made with another secret key: issue a new one
        else:
            return previous.api_key
    manager = ApiKeyManager(store, pepper=pepper, prefix=prefix)
    issued = await manager.create(API_KEY_OWNER, scopes=API_KEY_SCOPES, name="demo")
    return issued.key


async def _service_client(store: Store, audience: str, previous: DemoCredentials | None) -> str:
    if previous is not None and previous.client_id == SERVICE_CLIENT:
        known = await store.clients.authenticate(SERVICE_CLIENT, previous.client_secret)
        if known is not None and audience in known.resources:
            return previous.client_secret
    if await store.clients.get(SERVICE_CLIENT) is not None:
        # Its secret is lost (only a hash is stored): replace the client, revoking its tokens.
        await store.clients.delete(SERVICE_CLIENT)
    _, secret = await store.clients.register(
        name="demo service (client credentials)",
        grant_types=["client_credentials"],
        scopes=SERVICE_SCOPES,
        resources=[audience],
        client_id=SERVICE_CLIENT,
    )
    if secret is None:  # client_secret_basic always gets one
        raise ApiShieldError("the demo service client was registered without a secret")
    return secret


async def _user(store: Store, previous: DemoCredentials | None) -> str:
    if previous is not None and previous.username == USERNAME:
        if await store.users.authenticate(USERNAME, previous.password) is not None:
            return previous.password
    password = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
    user = await store.users.get_by_username(USERNAME)
    if user is None:
        await store.users.create(USERNAME, password)
    else:
        await store.users.set_password(user.id, password)
    return password


async def _browser_client(store: Store, audience: str) -> None:
    known = await store.clients.get(BROWSER_CLIENT)
    if (
        known is not None
        and REDIRECT_URI in known.redirect_uris
        and audience in known.resources
        and not known.disabled
    ):
        return
    if known is not None:
        await store.clients.delete(BROWSER_CLIENT)
    await store.clients.register(
        name="demo browser sign-in (authorization code + PKCE)",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        scopes=BROWSER_SCOPES,
        resources=[audience],
        auth_method="none",
        client_id=BROWSER_CLIENT,
    )
