from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield.demo.api import MAX_BODY, create_demo_api
from apishield.demo.store import SAMPLE_CUSTOMERS, SAMPLE_ORDERS
from apishield.types import Message

ALL_NAMES = [c[1] for c in SAMPLE_CUSTOMERS]


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    message: str = body["error"]
    return message


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"


async def test_every_response_announces_the_server(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/health"), await client.get("/nope")):
        assert response.headers["server"] == "demo-api/1.0"
        assert response.headers["x-powered-by"] == "demo"


async def test_v2_customers_lists_the_seeded_customers_with_pii(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v2/customers")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(SAMPLE_CUSTOMERS)
    assert [c["name"] for c in body["customers"]] == ALL_NAMES
    first = body["customers"][0]
    assert set(first) == {"id", "name", "email", "phone", "card_number", "created_at"}
    assert first["card_number"] == "4111111111111111"
    assert first["email"] == "ada@example.com"


@pytest.mark.parametrize(
    ("query", "count"),
    [
        pytest.param("limit=1", 1, id="one"),
        pytest.param("limit=3", 3, id="three"),
        pytest.param("limit=100", 5, id="max"),
    ],
)
async def test_limit(client: httpx.AsyncClient, query: str, count: int) -> None:
    response = await client.get(f"/v2/customers?{query}")
    assert response.status_code == 200
    assert response.json()["count"] == count


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("limit=0", id="zero"),
        pytest.param("limit=101", id="over-max"),
        pytest.param("limit=-1", id="negative"),
        pytest.param("limit=abc", id="word"),
        pytest.param("limit=1.5", id="fraction"),
        pytest.param("limit=", id="empty"),
        pytest.param("limit=%201", id="leading-space"),
        pytest.param("limit=%D9%A1", id="arabic-indic-digit"),
        pytest.param("limit=1&limit=2", id="twice"),
        pytest.param("name=%FF", id="name-not-utf8"),
        pytest.param("name=" + "a" * 101, id="name-too-long"),
    ],
)
async def test_bad_query_is_400_json(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/v2/customers?{query}")
    assert response.status_code == 400
    assert error_of(response)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("ada", ["Ada Lovelace"], id="case-insensitive"),
        pytest.param("O'Brien", ["Seán O'Brien"], id="apostrophe"),
        pytest.param("Seán", ["Seán O'Brien"], id="non-ascii"),
        pytest.param("%", [], id="percent-is-literal"),
        pytest.param("_", [], id="underscore-is-literal"),
        pytest.param("Al_n", [], id="underscore-not-a-wildcard"),
        pytest.param("\\", [], id="backslash-is-literal"),
        pytest.param("' OR '1'='1", [], id="sqli-tautology"),
        pytest.param("x' UNION SELECT 1,2,3,4,5,6 --", [], id="sqli-union"),
        pytest.param("", ALL_NAMES, id="empty-matches-all"),
    ],
)
async def test_name_filter_is_data(
    client: httpx.AsyncClient, name: str, expected: list[str]
) -> None:
    response = await client.get("/v2/customers", params={"name": name})
    assert response.status_code == 200
    assert [c["name"] for c in response.json()["customers"]] == expected


async def test_v2_customer(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/customers/2")
    assert response.status_code == 200
    assert response.json()["name"] == "Grace Hopper"
    assert response.json()["card_number"] == "5555555555554444"


async def test_absent_customer_is_404_json(client: httpx.AsyncClient) -> None:
    for path in ("/v2/customers/999", "/v2/customers/0", "/v1/customers/999"):
        response = await client.get(path)
        assert response.status_code == 404
        assert error_of(response) == "customer " + path.rsplit("/", 1)[1] + " not found"


@pytest.mark.parametrize(
    "raw_id",
    [
        pytest.param("abc", id="word"),
        pytest.param("-1", id="negative"),
        pytest.param("1.0", id="fraction"),
        pytest.param("+1", id="plus"),
        pytest.param("1e3", id="exponent"),
        pytest.param("9" * 19, id="over-int64"),
        pytest.param("1 OR 1=1", id="sqli-tautology"),
        pytest.param("1; DROP TABLE customers", id="sqli-stacked"),
        pytest.param("1 UNION SELECT * FROM customers", id="sqli-union"),
    ],
)
async def test_non_integer_id_is_400_and_leaks_nothing(
    client: httpx.AsyncClient, raw_id: str
) -> None:
    for prefix in ("/v2/customers/", "/v1/customers/", "/v2/orders/"):
        response = await client.get(prefix + raw_id)
        assert response.status_code == 400
        assert "must be a positive integer" in error_of(response)
    still = await client.get("/v2/customers")
    assert still.json()["count"] == len(SAMPLE_CUSTOMERS)


async def test_v1_has_the_old_shape(client: httpx.AsyncClient) -> None:
    listed = await client.get("/v1/customers")
    assert listed.status_code == 200
    body = listed.json()
    assert isinstance(body, list)
    assert [c["customer_name"] for c in body] == ALL_NAMES
    assert "name" not in body[0]
    one = await client.get("/v1/customers/4")
    assert one.status_code == 200
    assert one.json() == {
        "id": 4,
        "customer_name": "Seán O'Brien",
        "email": "sean.obrien@example.com",
        "phone": "+353 1 555 0104",
        "card_number": "6011111111111117",
    }


async def test_v1_filters_like_v2(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/customers", params={"name": "tur", "limit": "5"})
    assert [c["customer_name"] for c in response.json()] == ["Alan Turing"]


async def test_orders_list_and_filter(client: httpx.AsyncClient) -> None:
    everything = await client.get("/v2/orders")
    assert everything.status_code == 200
    assert everything.json()["count"] == len(SAMPLE_ORDERS)
    ada = await client.get("/v2/orders", params={"customer_id": "1"})
    assert [o["item"] for o in ada.json()["orders"]] == [
        "analytical engine punch cards",
        "brass gears",
    ]
    bad = await client.get("/v2/orders", params={"customer_id": "1 OR 1=1"})
    assert bad.status_code == 400


async def test_order(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/orders/3")
    assert response.status_code == 200
    assert response.json()["item"] == "COBOL manual"
    assert (await client.get("/v2/orders/999")).status_code == 404


async def test_post_creates_an_order(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/orders", json={"customer_id": 3, "item": "tape reel", "quantity": 7}
    )
    assert response.status_code == 201
    created = response.json()
    assert created["id"] == len(SAMPLE_ORDERS) + 1
    assert (created["customer_id"], created["item"], created["quantity"]) == (3, "tape reel", 7)
    assert response.headers["location"] == f"/v2/orders/{created['id']}"
    fetched = await client.get(response.headers["location"])
    assert fetched.json() == created
    listed = await client.get("/v2/orders", params={"customer_id": "3"})
    assert listed.json()["count"] == 2


async def test_post_accepts_a_charset_parameter(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/orders",
        content=b'{"customer_id": 1, "item": "gear", "quantity": 1}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"[]", "the body must be a JSON object", id="array"),
        pytest.param(b"not json", "the body is not valid JSON", id="not-json"),
        pytest.param(b"", "the body is not valid JSON", id="empty"),
        pytest.param(b'{"item": "\xff"}', "the body is not valid JSON", id="not-utf8"),
        pytest.param(
            b'{"customer_id": 1, "item": "x", "quantity": NaN}', "NaN is not JSON", id="nan"
        ),
        pytest.param(
            b'{"customer_id": 1, "customer_id": 2, "item": "x", "quantity": 1}',
            "the key 'customer_id' appears twice",
            id="duplicate-key",
        ),
        pytest.param(
            b"[" * 30_000 + b"]" * 30_000, "the body is not valid JSON", id="deep-nesting"
        ),
        pytest.param(b'{"item": "x", "quantity": 1}', "missing field: customer_id", id="missing"),
        pytest.param(
            b'{"customer_id": 1, "item": "x", "quantity": 1, "price": 0}',
            "unknown field: price",
            id="unknown-field",
        ),
        pytest.param(
            b'{"customer_id": true, "item": "x", "quantity": 1}',
            "customer_id must be a positive integer",
            id="bool-customer",
        ),
        pytest.param(
            b'{"customer_id": "1", "item": "x", "quantity": 1}',
            "customer_id must be a positive integer",
            id="string-customer",
        ),
        pytest.param(
            b'{"customer_id": 1, "item": "  ", "quantity": 1}',
            "item must be a non-empty string of at most 200 characters",
            id="blank-item",
        ),
        pytest.param(
            b'{"customer_id": 1, "item": 5, "quantity": 1}',
            "item must be a non-empty string of at most 200 characters",
            id="number-item",
        ),
        pytest.param(
            b'{"customer_id": 1, "item": "x", "quantity": 0}',
            "quantity must be an integer from 1 to 1000",
            id="zero-quantity",
        ),
        pytest.param(
            b'{"customer_id": 1, "item": "x", "quantity": 1001}',
            "quantity must be an integer from 1 to 1000",
            id="too-many",
        ),
        pytest.param(
            b'{"customer_id": 1, "item": "x", "quantity": 2.0}',
            "quantity must be an integer from 1 to 1000",
            id="float-quantity",
        ),
        pytest.param(
            b'{"customer_id": 99, "item": "x", "quantity": 1}',
            "customer 99 does not exist",
            id="unknown-customer",
        ),
    ],
)
async def test_bad_order_is_400_json(client: httpx.AsyncClient, body: bytes, message: str) -> None:
    response = await client.post(
        "/v2/orders", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert message in error_of(response)
    listed = await client.get("/v2/orders")
    assert listed.json()["count"] == len(SAMPLE_ORDERS)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"content-type": "text/plain"}, id="text-plain"),
        pytest.param({"content-type": "application/jsonx"}, id="lookalike"),
        pytest.param({}, id="absent"),
    ],
)
async def test_post_without_json_media_type_is_415(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = b'{"customer_id": 1, "item": "x", "quantity": 1}'
    response = await client.post("/v2/orders", content=body, headers=headers)
    assert response.status_code == 415
    assert error_of(response) == "send the body as application/json"


async def test_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    body = b'{"item": "' + b"a" * MAX_BODY + b'"}'
    response = await client.post(
        "/v2/orders", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)


async def test_delete_removes_the_order(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v2/orders/2")
    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers
    assert (await client.get("/v2/orders/2")).status_code == 404
    again = await client.delete("/v2/orders/2")
    assert again.status_code == 404
    assert error_of(again) == "order 2 not found"
    listed = await client.get("/v2/orders")
    assert listed.json()["count"] == len(SAMPLE_ORDERS) - 1


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/nope", id="unknown"),
        pytest.param("/v2/customers/", id="trailing-slash"),
        pytest.param("/v2/customers/1/orders", id="deeper"),
        pytest.param("/v3/customers", id="unknown-version"),
    ],
)
async def test_unknown_path_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert error_of(response) == "not found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("DELETE", "/v2/customers/1", "GET", id="delete-customer"),
        pytest.param("PUT", "/v2/orders", "GET, POST", id="put-orders"),
        pytest.param("PATCH", "/v2/orders/1", "DELETE, GET", id="patch-order"),
        pytest.param("POST", "/health", "GET", id="post-health"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert error_of(response) == "method not allowed"


async def test_crash_sends_a_traceback(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/debug/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("Traceback (most recent call last):\n")


async def test_data_persists_and_is_seeded_once(db_path: Path) -> None:
    first = httpx.ASGITransport(app=create_demo_api(db_path))
    async with httpx.AsyncClient(transport=first, base_url="http://demo.test") as client:
        created = await client.post(
            "/v2/orders", json={"customer_id": 5, "item": "chalk", "quantity": 2}
        )
        assert created.status_code == 201
    second = httpx.ASGITransport(app=create_demo_api(db_path))
    async with httpx.AsyncClient(transport=second, base_url="http://demo.test") as client:
        assert (await client.get("/v2/customers")).json()["count"] == len(SAMPLE_CUSTOMERS)
        assert (await client.get("/v2/orders")).json()["count"] == len(SAMPLE_ORDERS) + 1


async def test_lifespan_prepares_the_database(db_path: Path) -> None:
    app = create_demo_api(db_path)
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert db_path.is_file()


async def test_lifespan_reports_a_database_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = create_demo_api(blocker / "demo.sqlite3")
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
