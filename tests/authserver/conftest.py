"""A harness for the authorization server: a store on each backend (SQLite, PostgreSQL) with a
settable clock, the server behind an in-process HTTP client, and the gateway's verifier of its
tokens (the seam ``build_bearer_verifier`` uses), all on that one clock."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from apishield.authserver import AuthorizationServer, ServerConfig, StoreKeys, builtin_verifier
from apishield.authserver.pkce import s256
from apishield.errors import HTTPError
from apishield.identity.bearer import BearerDispatcher, build_bearer_verifier
from apishield.identity.principal import Principal
from apishield.identity.secretkey import SecretKeys
from apishield.identity.settings import BuiltinIssuer, IdentitySettings
from apishield.store import RevocationList, Store
from apishield.store.records import ClientRecord, UserRecord
from tests.store.backends import (  # noqa: F401 - fixtures
    Clock,
    clock,
    postgres_session_url,
    sqlite_template,
    store,
    store_url,
)

ISSUER = "https://as.example.com"
API = "https://api.example.com"
OTHER_API = "https://billing.example.com"
REDIRECT = "https://app.example.com/cb"
PASSWORD = "correct horse battery staple"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Client:
    record: ClientRecord
    secret: str | None

    @property
    def id(self) -> str:
        return self.record.id

    def auth(self) -> dict[str, str]:
        assert self.secret is not None
        return basic(self.id, self.secret)


@dataclass
class Harness:
    store: Store
    clock: Clock
    keys: SecretKeys
    config: ServerConfig
    server: AuthorizationServer
    http: httpx.AsyncClient
    revocations: RevocationList
    bearer: BearerDispatcher
    secrets_seen: list[str] = field(default_factory=list)  # for the log test

    def unix(self) -> float:
        return self.clock.now.timestamp()

    async def client(
        self,
        *,
        grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
        scopes: Sequence[str] = ("orders:read", "orders:write"),
        resources: Sequence[str] = (API,),
        redirect_uris: Sequence[str] = (REDIRECT,),
        auth_method: str = "client_secret_basic",
        jwks: dict[str, Any] | None = None,
        name: str = "Orders app",
    ) -> Client:
        record, secret = await self.store.clients.register(
            name=name,
            grant_types=list(grant_types),
            redirect_uris=list(redirect_uris) if "authorization_code" in grant_types else [],
            scopes=list(scopes),
            resources=list(resources),
            auth_method=auth_method,
            jwks=jwks,
        )
        if secret is not None:
            self.secrets_seen.append(secret)
        return Client(record, secret)

    async def machine(self, **kwargs: Any) -> Client:
        return await self.client(grant_types=("client_credentials",), **kwargs)

    async def user(self, name: str = "ada", roles: Sequence[str] = ()) -> UserRecord:
        self.secrets_seen.append(PASSWORD)
        return await self.store.users.create(name, PASSWORD, roles=roles)

    async def post(
        self, path: str, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(path, data=data, headers=headers)

    async def token(
        self, client: Client, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        auth = client.auth() if client.secret is not None else {}
        body = dict(data)
        if client.secret is None:
            body["client_id"] = client.id
        response = await self.post("/oauth2/token", body, headers={**auth, **(headers or {})})
        if response.status_code == 200:
            for name in ("access_token", "refresh_token"):
                if name in response.json():
                    self.secrets_seen.append(response.json()[name])
        return response

    async def login_form(self, client: Client, **params: str) -> httpx.Response:
        query = {
            "response_type": "code",
            "client_id": client.id,
            "redirect_uri": REDIRECT,
            "code_challenge_method": "S256",
            "state": "st-123",
            **params,
        }
        return await self.http.get("/oauth2/authorize", params=query)

    async def sign_in(
        self,
        client: Client,
        *,
        username: str = "ada",
        password: str = PASSWORD,
        verifier: str | None = None,
        **params: str,
    ) -> httpx.Response:
        """Open the login form and submit it; returns the answer to the POST."""
        verifier = verifier or new_verifier()
        self.secrets_seen.append(verifier)
        page = await self.login_form(client, code_challenge=s256(verifier), **params)
        assert page.status_code == 200, page.text
        return await self.http.post(
            "/oauth2/login",
            data={"txn": form_token(page.text), "username": username, "password": password},
            headers={"sec-fetch-site": "same-origin"},
        )

    async def code(self, client: Client, **params: str) -> tuple[str, str]:
        """A fresh authorization code and its verifier."""
        verifier = new_verifier()
        answer = await self.sign_in(client, verifier=verifier, **params)
        assert answer.status_code == 303, answer.text
        code = query_of(answer.headers["location"])["code"]
        self.secrets_seen.append(code)
        return code, verifier

    async def exchange(self, client: Client, code: str, verifier: str | None) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        if verifier is not None:
            data["code_verifier"] = verifier
        return await self.token(client, data)

    async def tokens(self, client: Client) -> dict[str, Any]:
        code, verifier = await self.code(client)
        response = await self.exchange(client, code, verifier)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    async def refresh(self, client: Client, refresh_token: str, **extra: str) -> httpx.Response:
        return await self.token(
            client, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
        )

    async def verify(self, access_token: str) -> Principal:
        return await self.bearer.verify_bearer(access_token)


def error_of(response: httpx.Response) -> str:
    """The OAuth error of a JSON error response (RFC 6749 §5.2), without a description."""
    assert response.headers["content-type"] == "application/json", response.text
    document = response.json()
    assert set(document) == {"error"}, document  # production: no error_description
    return str(document["error"])


async def revoked(h: Harness, access_token: str) -> bool:
    """True when the gateway refuses the token as revoked (False when it accepts it)."""
    try:
        await h.verify(access_token)
    except HTTPError as exc:
        assert exc.code == "token_revoked", exc.code
        return True
    return False


_TXN = re.compile(r'name="txn" value="([^"]+)"')


def form_token(page: str) -> str:
    match = _TXN.search(page)
    assert match, page
    return match.group(1)


@pytest.fixture
def secret_keys() -> SecretKeys:
    return SecretKeys.from_master(secrets.token_bytes(32))


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(issuer=ISSUER)


@pytest.fixture
async def harness(
    store: Store,  # noqa: F811 - the fixture imported above
    clock: Clock,  # noqa: F811
    secret_keys: SecretKeys,
    config: ServerConfig,
) -> AsyncIterator[Harness]:
    unix = lambda: clock.now.timestamp()  # noqa: E731 - the tokens' clock, in seconds
    keys = StoreKeys(store, monotonic=unix)
    revocations = RevocationList(store, refresh_every=0.0)
    server = AuthorizationServer(store, secret_keys, config, revocations=revocations, keys=keys)
    verifier = builtin_verifier(
        store,
        BuiltinIssuer(builtin=True),
        ISSUER,
        API,
        keys=StoreKeys(store, monotonic=unix),
        clock=unix,
    )
    bearer = build_bearer_verifier(
        IdentitySettings(issuers=[BuiltinIssuer(builtin=True)], token_cache_size=0),
        builtin=verifier,
        is_revoked=revocations.is_revoked,
        clock=unix,
    )
    assert bearer is not None
    transport = httpx.ASGITransport(app=server, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Harness(store, clock, secret_keys, config, server, http, revocations, bearer)
    await bearer.aclose()
    await server.aclose()
