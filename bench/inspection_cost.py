"""CPU cost of the inspection engine on typical API requests, cold and warm, in-process.

DESIGN's budget: "Inspecting a typical API request costs ≤ 50 µs of CPU". Two requests:

- ``GET``: ``/v2/orders/{order_id}`` with a query of three parameters and the headers a browser
  or SDK sends (Host, User-Agent, Accept, Accept-Language, Accept-Encoding, Referer with a
  query, a Cookie with a session and a preference, X-Request-Id, a traceparent and a bearer
  token, which is skipped: authentication checks it);
- ``POST``: the same headers with a content type and a JSON order of about 1 KiB (names with
  apostrophes, addresses with non-ASCII letters, a free-text note, SKUs, prices).

"cold": every request carries header values the engine has not seen (a new User-Agent
version, request id, trace id and session each time) and the engine's caches are emptied
before it, as for a client's first request. "warm": the same request again and again, as for a
client's later requests (header and cookie scores come from the engine's bounded cache).

Figures are process CPU time (``time.process_time``) per request, the best of ``--rounds``
runs: the least disturbed by other work on the machine. On a busy machine compare instruction
counts instead, which other processes do not change::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/inspection_cost.py --only "GET cold" --requests 2000 --rounds 1

and take the difference of two runs with different ``--requests`` over their difference in
requests (this removes the interpreter's start-up). Set ``PYTHONHASHSEED=0`` for both: string
hashes decide the order of set operations, which moves the count by about 20k instructions
from run to run.

    .venv/bin/python bench/inspection_cost.py [--rounds 5] [--requests 20000] [--only NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apishield.inspect import InspectionSettings, Inspector, RequestParts  # noqa: E402

BODY = {
    "customer": {
        "id": "cus_8f2b1c",
        "name": "Anna O'Neil",
        "email": "anna.oneil@example.com",
        "phone": "+41 44 668 18 00",
    },
    "items": [
        {"sku": "SHOE-42-BLK", "name": "Trail runner, black", "qty": 1, "price": 129.9},
        {"sku": "SOCK-3PK", "name": "Merino socks (3 pairs)", "qty": 2, "price": 24.5},
        {"sku": "CAP-OS", "name": "Running cap - one size", "qty": 1, "price": 19.0},
    ],
    "shipping": {
        "name": "Anna O'Neil",
        "street": "Bahnhofstrasse 1",
        "city": "Zürich",
        "zip": "8001",
        "country": "CH",
        "instructions": "Ring twice; if nobody answers, leave it with the neighbour at #3.",
    },
    "billing": {"same_as_shipping": True},
    "note": "Please gift-wrap the socks & cap, it's a birthday present! Thanks :)",
    "coupon": "SPRING-20",
    "currency": "CHF",
    "channel": "web",
    "client_reference": "2026-11-28/web/7f3e",
    "metadata": {"campaign": "newsletter_nov", "ab_bucket": "B", "referrer": "search"},
    "gift_message": "Happy birthday, Lena! Love from Anna & Tom (see you on 12/03).",
    "delivery_window": {"from": "2026-12-01T08:00:00+01:00", "to": "2026-12-01T12:00:00+01:00"},
}


def _headers(i: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"api.example.com"),
        (
            b"user-agent",
            b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            b"(KHTML, like Gecko) Chrome/124.0.%d.0 Safari/537.36" % i,
        ),
        (b"accept", b"application/json, text/plain, */*"),
        (b"accept-language", b"en-US,en;q=0.9,de-CH;q=0.8"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"referer", b"https://app.example.com/orders?status=open&page=2"),
        (b"cookie", b"session=eyJ1aWQiOjQyfQ.ZmFrZQ.c2ln%d; theme=dark" % i),
        (b"x-request-id", b"9f1c2e4a-7b3d-4e5f-8a9b-%012d" % i),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e%04d-00f067aa0ba902b7-01" % (i % 10000)),
        (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"),
    ]


def get_request(i: int) -> RequestParts:
    return RequestParts(
        path_params={"order_id": "42"},
        query=b"status=open&per_page=50&sort=-created_at",
        headers=_headers(i),
    )


def post_request(i: int) -> RequestParts:
    return RequestParts(
        headers=[*_headers(i), (b"content-type", b"application/json")],
        json=BODY,
    )


def measure(
    inspector: Inspector, make: Callable[[int], RequestParts], *, warm: bool, requests: int
) -> float:
    """CPU µs per request of ``inspector.inspect`` over ``requests`` requests."""
    if warm:
        parts = [make(0)] * requests
    else:
        parts = [make(i + 1) for i in range(requests)]
    inspector.clear_cache()
    inspector.inspect(make(0))
    start = time.process_time()
    for request in parts:
        if not warm:
            inspector.clear_cache()
        if inspector.inspect(request):
            raise SystemExit("a typical request was refused: the benchmark is wrong")
    return (time.process_time() - start) / requests * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--only", help="one of: GET cold, GET warm, POST cold, POST warm")
    args = parser.parse_args(argv)
    inspector = Inspector(InspectionSettings())
    cases = {
        "GET cold": (get_request, False),
        "GET warm": (get_request, True),
        "POST cold": (post_request, False),
        "POST warm": (post_request, True),
    }
    print(f"apishield inspection, CPU µs per request (best of {args.rounds} runs)")
    for name, (make, warm) in cases.items():
        if args.only and name != args.only:
            continue
        best = min(
            measure(inspector, make, warm=warm, requests=args.requests)
            for _ in range(args.rounds)
        )
        print(f"  {name:10} {best:7.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
