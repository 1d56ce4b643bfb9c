"""The sample API behind the demo gateway: customers and orders as JSON, a plain ASGI 3 app.

It stands in for the API a user puts behind apishield, so it has an ordinary API's habits on
purpose: it announces itself (``Server: demo-api/1.0``, ``X-Powered-By: demo``), returns PII
(e-mail, phone, card number), still serves a deprecated ``/v1`` beside ``/v2``, and has a route
that fails with a stack trace (``GET /v2/debug/crash``). The demo shows the gateway removing the
headers, refusing what the policy does not allow, and hiding the trace.

It still validates its own input (every error is JSON ``{"error": "..."}``), and reads and writes
SQLite with bound parameters only, so it is a fair upstream rather than a vulnerable one.

Routes::

    GET    /health                       {"status": "ok"}
    GET    /v2/customers                 ?limit=1..100 (default 20), ?name= substring
    GET    /v2/customers/{customer_id}
    GET    /v2/orders                    ?limit=1..100, ?customer_id=
    POST   /v2/orders                    {"customer_id": int, "item": str, "quantity": 1..1000}
    GET    /v2/orders/{order_id}
    DELETE /v2/orders/{order_id}
    GET    /v2/debug/crash               500 with a traceback, text/plain
    GET    /v1/customers                 deprecated shape: a bare list, "customer_name"
    GET    /v1/customers/{customer_id}
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs

from apishield.demo.store import DemoStore, Row
from apishield.types import ASGIApp, Headers, Receive, Scope, Send

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MAX_BODY = 64 * 1024
"""The sample API's own body cap; the demo policy sets a lower one at the gateway."""
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_NAME = 100
MAX_ITEM = 200
MAX_QUANTITY = 1000
IDENTITY_HEADERS: Headers = [(b"server", b"demo-api/1.0"), (b"x-powered-by", b"demo")]
"""Sent on every response on purpose: the gateway's response stage is expected to strip them."""

_ID = re.compile(r"[0-9]{1,18}")  # fits SQLite's 64-bit INTEGER; int() would also take "+1", "١"
_ORDER_FIELDS = frozenset({"customer_id", "item", "quantity"})

CRASH_BODY = """\
Traceback (most recent call last):
  File "/srv/demo-api/app/handlers.py", line 87, in orders_report
    rows = db.execute(REPORT_SQL, {"since": since}).fetchall()
  File "/srv/demo-api/venv/lib/python3.11/site-packages/dbdriver/cursor.py", line 214, in execute
    raise OperationalError(message)
dbdriver.OperationalError: could not connect to server at 10.0.3.7:5432 (user "orders_rw")
"""
"""A made-up traceback that leaks what real ones leak: paths, versions, hosts, a user name."""


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """What a handler needs from an HTTP request."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class DemoResponse:
    """A whole response; ``content_type`` ``None`` sends no body headers (204)."""

    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: Headers = field(default_factory=list)


class DemoInputError(Exception):
    """A request this API refuses; answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


Params = dict[str, str]
Handler = Callable[[DemoRequest, Params], DemoResponse]


def json_response(status: int, data: Any, headers: Headers | None = None) -> DemoResponse:
    """``data`` as compact UTF-8 JSON."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return DemoResponse(status, body, JSON_TYPE, headers or [])


def _refuse(status: int, message: str) -> NoReturn:
    raise DemoInputError(status, message)


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{([a-z_]+)\}", template)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(pattern)


def parse_id(value: str, name: str) -> int:
    """A path or query id: decimal digits only, else 400."""
    if not _ID.fullmatch(value):
        _refuse(400, f"{name} must be a positive integer")
    return int(value)


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        _refuse(400, f"give {name} at most once")
    return values[0]


def _limit(query: Mapping[str, list[str]]) -> int:
    raw = _single(query, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        _refuse(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two parsers may keep different copies of a duplicated key; refuse the ambiguity.
            _refuse(400, f"the key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    _refuse(400, f"{name} is not JSON")


def parse_json_body(request: DemoRequest) -> Any:
    """The request body as strict JSON: right media type, UTF-8, no NaN, no duplicate keys."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_TYPE:
        _refuse(415, f"send the body as {JSON_TYPE}")
    try:
        text = request.body.decode("utf-8")
        return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        _refuse(400, "the body is not valid JSON")


def parse_new_order(data: Any) -> tuple[int, str, int]:
    """Validate a new order's fields; ``(customer_id, item, quantity)``."""
    if not isinstance(data, dict):
        _refuse(400, "the body must be a JSON object")
    unknown = sorted(set(data) - _ORDER_FIELDS)
    if unknown:
        _refuse(400, f"unknown field: {', '.join(unknown)}")
    missing = sorted(_ORDER_FIELDS - set(data))
    if missing:
        _refuse(400, f"missing field: {', '.join(missing)}")
    customer_id, item, quantity = data["customer_id"], data["item"], data["quantity"]
    # bool is a subclass of int in Python; true is not a customer.
    if type(customer_id) is not int or customer_id < 1:
        _refuse(400, "customer_id must be a positive integer")
    if not isinstance(item, str) or not item.strip() or len(item) > MAX_ITEM:
        _refuse(400, f"item must be a non-empty string of at most {MAX_ITEM} characters")
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        _refuse(400, f"quantity must be an integer from 1 to {MAX_QUANTITY}")
    return customer_id, item, quantity


def customer_v2(row: Row) -> dict[str, Any]:
    """A customer as ``/v2`` shows it."""
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "phone": row["phone"],
        "card_number": row["card_number"],
        "created_at": row["created_at"],
    }


def customer_v1(row: Row) -> dict[str, Any]:
    """A customer as the deprecated ``/v1`` shows it: ``customer_name``, no timestamps."""
    return {
        "id": row["id"],
        "customer_name": row["name"],
        "email": row["email"],
        "phone": row["phone"],
        "card_number": row["card_number"],
    }


class DemoAPI:
    """The sample API as an ASGI 3 app (``http`` and ``lifespan`` scopes).

    Handlers are synchronous and run in a worker thread, one per request, because SQLite calls
    block; the event loop stays free for the gateway that shares it in the demo.
    """

    def __init__(self, store: DemoStore) -> None:
        self.store = store
        table: list[tuple[str, dict[str, Handler]]] = [
            ("/health", {"GET": self.health}),
            ("/v2/customers", {"GET": self.list_customers}),
            ("/v2/customers/{customer_id}", {"GET": self.get_customer}),
            ("/v2/orders", {"GET": self.list_orders, "POST": self.create_order}),
            ("/v2/orders/{order_id}", {"GET": self.get_order, "DELETE": self.delete_order}),
            ("/v2/debug/crash", {"GET": self.crash}),
            ("/v1/customers", {"GET": self.list_customers_v1}),
            ("/v1/customers/{customer_id}", {"GET": self.get_customer_v1}),
        ]
        self._routes = [(_compile(path), handlers) for path, handlers in table]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            response = await self._respond(scope, receive)
            await _send(send, response)
        # websocket: no route accepts it; returning closes the connection (ASGI spec).

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.store.ensure_ready)
                except Exception as exc:
                    logger.exception("cannot prepare the demo database")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, scope: Scope, receive: Receive) -> DemoResponse:
        try:
            handler, params = self._match(scope["method"], scope["path"])
            query = _parse_query(scope.get("query_string", b""))
            headers = _headers(scope["headers"])
            body = await _read_body(receive)
            request = DemoRequest(scope["method"], scope["path"], query, headers, body)
            return await asyncio.to_thread(handler, request, params)
        except DemoInputError as exc:
            return json_response(exc.status, {"error": exc.message}, exc.headers)
        except Exception:
            logger.exception("demo API request failed")
            return json_response(500, {"error": "internal error"})

    def _match(self, method: str, path: str) -> tuple[Handler, Params]:
        for pattern, handlers in self._routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                allow = ", ".join(sorted(handlers)).encode()
                raise DemoInputError(405, "method not allowed", [(b"allow", allow)])
            return handler, found.groupdict()
        raise DemoInputError(404, "not found")

    def health(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /health``."""
        return json_response(200, {"status": "ok"})

    def list_customers(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v2/customers?limit=&name=``."""
        rows = self._customers(request)
        return json_response(200, {"customers": [customer_v2(r) for r in rows], "count": len(rows)})

    def list_customers_v1(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v1/customers``: the same data in the old shape."""
        return json_response(200, [customer_v1(r) for r in self._customers(request)])

    def _customers(self, request: DemoRequest) -> list[Row]:
        limit = _limit(request.query)
        name = _single(request.query, "name")
        if name is not None and len(name) > MAX_NAME:
            _refuse(400, f"name must be at most {MAX_NAME} characters")
        return self.store.list_customers(limit=limit, name=name)

    def get_customer(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v2/customers/{customer_id}``."""
        return json_response(200, customer_v2(self._customer(params)))

    def get_customer_v1(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v1/customers/{customer_id}``."""
        return json_response(200, customer_v1(self._customer(params)))

    def _customer(self, params: Params) -> Row:
        customer_id = parse_id(params["customer_id"], "customer_id")
        row = self.store.get_customer(customer_id)
        if row is None:
            _refuse(404, f"customer {customer_id} not found")
        return row

    def list_orders(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v2/orders?limit=&customer_id=``."""
        limit = _limit(request.query)
        raw = _single(request.query, "customer_id")
        customer_id = None if raw is None else parse_id(raw, "customer_id")
        rows = self.store.list_orders(limit=limit, customer_id=customer_id)
        return json_response(200, {"orders": rows, "count": len(rows)})

    def create_order(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``POST /v2/orders``: 201 with the order and its ``Location``."""
        customer_id, item, quantity = parse_new_order(parse_json_body(request))
        order = self.store.create_order(customer_id=customer_id, item=item, quantity=quantity)
        if order is None:
            _refuse(400, f"customer {customer_id} does not exist")
        location = f"/v2/orders/{order['id']}".encode()
        return json_response(201, order, [(b"location", location)])

    def get_order(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v2/orders/{order_id}``."""
        order_id = parse_id(params["order_id"], "order_id")
        row = self.store.get_order(order_id)
        if row is None:
            _refuse(404, f"order {order_id} not found")
        return json_response(200, row)

    def delete_order(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``DELETE /v2/orders/{order_id}``: 204, or 404 when there is no such order."""
        order_id = parse_id(params["order_id"], "order_id")
        if not self.store.delete_order(order_id):
            _refuse(404, f"order {order_id} not found")
        return DemoResponse(204, content_type=None)

    def crash(self, request: DemoRequest, params: Params) -> DemoResponse:
        """``GET /v2/debug/crash``: the kind of 500 a framework's debug mode sends."""
        return DemoResponse(500, CRASH_BODY.encode(), "text/plain; charset=utf-8")


def create_demo_api(db_path: Path) -> ASGIApp:
    """The sample API over the SQLite file ``db_path``, created and seeded on first use."""
    return DemoAPI(DemoStore(db_path))


def _parse_query(raw: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(
            raw.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=50
        )
    except (UnicodeDecodeError, ValueError):
        _refuse(400, "the query string is not valid")


def _headers(raw: Headers) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            _refuse(413, f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, response: DemoResponse) -> None:
    headers: Headers = []
    if response.content_type is not None:
        headers.append((b"content-type", response.content_type.encode()))
        headers.append((b"content-length", str(len(response.body)).encode()))
    headers += IDENTITY_HEADERS
    headers += response.headers
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
