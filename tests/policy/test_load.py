"""Policy files: located errors, duplicate keys, secure defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from apishield.errors import PolicyError
from apishield.identity.introspection import resolve_secret
from apishield.policy import load_policy
from apishield.policy.load import resolve_paths
from apishield.policy.models import TLSFiles

GOOD = """\
apishield: 1
mode: production
listen:
  address: 0.0.0.0:8443
  tls: {cert: certs/tls.crt, key: certs/tls.key}
upstream:
  url: http://127.0.0.1:8000/
  timeouts: {connect: 500ms, read: 30s}
versions:
  - {prefix: /v1, deprecated: {sunset: 2027-06-30, link: https://docs.example.com/v2}}
  - {prefix: /v2}
routes:
  - path: /v2/orders
    methods: [POST]
    allow: {scopes: [orders:write]}
    body_limit: 64KiB
  - {path: /health, methods: [GET], allow: public}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "apishield.yaml"
    path.write_text(text)
    return path


def test_good_policy(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert isinstance(policy.listen.tls, TLSFiles)
    assert policy.listen.tls.cert == tmp_path / "certs/tls.crt"
    assert policy.state.dir == tmp_path / ".apishield"
    assert policy.upstream is not None and policy.upstream.url == "http://127.0.0.1:8000"
    assert policy.upstream.timeouts.connect == 0.5
    assert policy.routes[0].body_limit == 65536


def test_secure_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "apishield: 1\n"))
    assert policy.mode == "production"
    assert policy.listen.tls == "dev" and policy.listen.address.startswith("127.0.0.1:")
    assert policy.listen.hsts.enabled
    assert policy.cors is None
    assert policy.content.content_types == ["application/json"]
    assert policy.content.body_limit == 1024 * 1024
    assert policy.response.cache_control == "no-store"
    assert policy.trusted_proxies == []


BAD = [
    pytest.param(
        GOOD.replace("methods: [POST]", "methods: [POST, FETCH]"),
        "apishield.yaml:14: routes[0].methods: 'FETCH' is not an HTTP method",
        id="bad-method",
    ),
    pytest.param(
        GOOD.replace("body_limit: 64KiB", "body_limit: lots"),
        "apishield.yaml:16: routes[0].body_limit: 'lots' is not a size (use '64KiB', '1MiB', "
        "or a number of bytes)",
        id="bad-size",
    ),
    pytest.param(
        GOOD.replace("mode: production", "mode: production\nmdoe: development"),
        "apishield.yaml:3: mdoe: unknown setting (check the spelling; see `apishield schema`)",
        id="typo",
    ),
    pytest.param(
        GOOD.replace("mode: production", "mode: production\nmode: development"),
        "apishield.yaml:3: mode: the key 'mode' appears twice",
        id="duplicate-key",
    ),
    pytest.param(
        GOOD.replace("{cert: certs/tls.crt, key: certs/tls.key}", "{cert: certs/tls.crt}"),
        "apishield.yaml:5: listen.tls.key: required setting is missing",
        id="missing-key",
    ),
    pytest.param(
        GOOD + "cors: {origins: ['*'], credentials: true}\n",
        "apishield.yaml:18: cors: a wildcard cannot be combined with credentials: "
        "list the exact origins",
        id="cors-wildcard-credentials",
    ),
    pytest.param(
        GOOD + "cors: {origins: ['https://app.example.com/']}\n",
        "apishield.yaml:18: cors.origins: 'https://app.example.com/' is not an exact origin "
        "(scheme://host[:port], no path or trailing slash)",
        id="cors-origin-with-path",
    ),
    pytest.param(
        GOOD + "  - {path: /health, methods: [GET], allow: public}\n",
        "apishield.yaml:18: routes[2]: GET /health is already routes[1]",
        id="duplicate-route",
    ),
    pytest.param(
        GOOD.replace("url: http://127.0.0.1:8000/", "url: ftp://files"),
        "apishield.yaml:7: upstream.url: 'ftp://files' is not an http:// or https:// URL",
        id="upstream-scheme",
    ),
    pytest.param(
        GOOD.replace("apishield: 1", "apishield: 2"),
        "apishield.yaml:1: apishield: Input should be 1",
        id="format-version",
    ),
    pytest.param("routes: [\n", "apishield.yaml:2: not valid YAML", id="yaml-syntax"),
    pytest.param(
        "- a\n- b\n", "apishield.yaml:1: the policy must be a mapping of settings", id="list"
    ),
    pytest.param("", "apishield.yaml:1: the file is empty", id="empty"),
    pytest.param(
        "apishield: 1\nroutes:\n  - {path: 'orders', methods: [GET]}\n",
        "apishield.yaml:3: routes[0].path: 'orders' must start with '/'",
        id="relative-path",
    ),
    pytest.param(
        "apishield: 1\nroutes:\n  - {path: '/a/x{id}', methods: [GET]}\n",
        "apishield.yaml:3: routes[0].path: '/a/x{id}': a parameter must fill a whole path segment",
        id="partial-param",
    ),
    pytest.param(
        "apishield: 1\nx: !!python/object/apply:os.system ['true']\n",
        "apishield.yaml:2: not valid YAML",
        id="unsafe-yaml-tag",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy("apishield.yaml")
    assert str(info.value).splitlines()[0].startswith(message)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert str(info.value).endswith("nope.yaml: no such file")


def test_every_problem_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "apishield: 1\nmode: loud\nroutes:\n  - {path: /a, methods: [GET, BREW]}\n")
    with pytest.raises(PolicyError) as info:
        load_policy("apishield.yaml")
    assert str(info.value).splitlines() == [
        "apishield.yaml:2: mode: Input should be 'production' or 'development'",
        "apishield.yaml:4: routes[0].methods: 'BREW' is not an HTTP method",
    ]


def test_file_secrets_resolve_from_the_policy_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`file:` secrets are read relative to the policy file, wherever the gateway starts."""
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "apishield: 1\n"
        "state: {secret_key: 'file:keys/secret'}\n"
        "identity:\n"
        "  introspection:\n"
        "    endpoint: https://idp.test/introspect\n"
        "    client_id: gw\n"
        "    client_secret: file:introspection.secret\n"
        "    audience: https://api.test\n"
    )
    (folder / "introspection.secret").write_text("s3cret\n")
    monkeypatch.chdir(tmp_path)  # somewhere else than the policy's folder
    policy = load_policy(folder / "p.yaml")
    assert policy.state.secret_key == f"file:{folder / 'keys' / 'secret'}"
    assert policy.identity is not None and policy.identity.introspection is not None
    reference = policy.identity.introspection.client_secret
    assert reference == f"file:{folder / 'introspection.secret'}"
    assert resolve_secret(reference) == "s3cret"
    absolute = "file:/etc/apishield/introspection.secret"
    assert resolve_paths(
        policy.model_copy(
            update={
                "identity": policy.identity.model_copy(
                    update={
                        "introspection": policy.identity.introspection.model_copy(
                            update={"client_secret": absolute}
                        )
                    }
                )
            }
        ),
        tmp_path,
    ).identity.introspection.client_secret == absolute  # type: ignore[union-attr]
