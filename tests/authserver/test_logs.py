"""AUTH 38: no secret, code, verifier, password or token in any log line.

Every flow of the server runs — with successes, refusals, replays and attacks — while every
logger records at DEBUG; then each captured line (message, arguments, traceback) is searched
for every secret the flows used or were given."""

from __future__ import annotations

import logging

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from apishield.authserver.pkce import s256
from tests.authserver.conftest import ISSUER, PASSWORD, Harness, basic, form_token, new_verifier


async def run_every_flow(h: Harness) -> list[str]:
    """The flows; returns the extra secrets they presented (wrong ones included)."""
    extra: list[str] = []
    app = await h.client()
    machine = await h.machine()
    await h.user()
    # client credentials, right and wrong
    await h.token(machine, {"grant_type": "client_credentials"})
    wrong_secret = "W" * 43
    extra.append(wrong_secret)
    await h.post(
        "/oauth2/token",
        {"grant_type": "client_credentials"},
        headers=basic(machine.id, wrong_secret),
    )
    await h.post(
        "/oauth2/token",
        {
            "grant_type": "client_credentials",
            "client_id": machine.id,
            "client_secret": wrong_secret,
        },
    )
    # a failed and a successful sign-in, a code, its exchange and its replay
    wrong_password = "not-the-password-123"
    extra.append(wrong_password)
    await h.sign_in(app, password=wrong_password)
    await h.sign_in(app, username="nobody-here", password=PASSWORD)
    page = await h.login_form(app, code_challenge=s256(new_verifier()))
    extra.append(page.cookies.get("__Host-apishield-login") or "")
    code, verifier = await h.code(app)
    tokens = (await h.exchange(app, code, verifier)).json()
    await h.exchange(app, code, verifier)  # replay
    code2, verifier2 = await h.code(app)
    bad_verifier = new_verifier()
    extra.append(bad_verifier)
    await h.exchange(app, code2, bad_verifier)
    # refresh, rotation, reuse
    tokens = await h.tokens(app)
    rotated = (await h.refresh(app, tokens["refresh_token"])).json()
    await h.refresh(app, tokens["refresh_token"])  # reuse: the family dies
    # revocation and introspection of live, dead and unknown tokens
    fresh = await h.tokens(app)
    for token in (fresh["access_token"], fresh["refresh_token"], rotated["access_token"], "junk"):
        await h.post("/oauth2/introspect", {"token": token}, headers=app.auth())
        await h.post("/oauth2/revoke", {"token": token}, headers=app.auth())
    # private_key_jwt, and its replay
    key = ECKey.generate_key("P-256", parameters={"kid": "k"}, private=True)
    signer = await h.machine(auth_method="private_key_jwt", jwks={"keys": [key.as_dict()]})
    claims = {"iss": signer.id, "sub": signer.id, "aud": ISSUER, "exp": int(h.unix()) + 60}
    assertion = jose_jwt.encode({"alg": "ES256", "kid": "k"}, {**claims, "jti": "1"}, key)
    extra.append(assertion)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    for _ in range(2):
        response = await h.post("/oauth2/token", form)
        if response.status_code == 200:
            extra.append(response.json()["access_token"])
    # a forged login post
    page = await h.login_form(app, code_challenge=s256(new_verifier()))
    h.http.cookies.clear()
    await h.http.post(
        "/oauth2/login",
        data={"txn": form_token(page.text), "username": "ada", "password": PASSWORD},
    )
    # the gateway verifying tokens, good and revoked
    for token in (rotated["access_token"], fresh["access_token"]):
        try:
            await h.verify(token)
        except Exception as exc:  # noqa: BLE001 - only the logs matter here
            del exc
    return extra


@pytest.mark.parametrize("case", [pytest.param("all-flows", id="AUTH-38-no-secret-in-logs")])
async def test_no_secret_in_any_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in logging.root.manager.loggerDict:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        extra = await run_every_flow(harness)
    finally:
        for name in logging.root.manager.loggerDict:
            logging.getLogger(name).setLevel(logging.NOTSET)
    secrets = [s for s in [*harness.secrets_seen, *extra] if s]
    assert len(secrets) > 20, case
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr(record.args))
        if record.exc_text:
            lines.append(record.exc_text)
    lines.append(caplog.text)
    assert any("oauth refused" in line for line in lines)  # the flows did log
    assert any("refresh token reused" in line for line in lines)
    for secret in secrets:
        for line in lines:
            assert secret not in line, f"a secret reached the log: {line[:200]!r}"
