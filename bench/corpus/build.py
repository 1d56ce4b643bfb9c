"""Builds ``corpus.jsonl`` from the payload lists in ``payloads/`` and the benign values below.

Run it after editing either: ``.venv/bin/python bench/corpus/build.py``. The output is
deterministic (no randomness), so a diff of ``corpus.jsonl`` shows exactly what changed.

Every attack payload is placed in a query parameter, a JSON body field and a header; a quarter
also go into a cookie. Benign values go through the same places, in requests that carry the
headers real clients send (browser and SDK User-Agents, Referers with query strings, cookies,
tracing headers). See README.md for the sources and their licences.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).parent
OUT = HERE / "corpus.jsonl"

PRE_ENCODED = re.compile(r"%[0-9a-fA-F]{2}|%u[0-9a-fA-F]{4}")

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "okhttp/4.12.0",
    "PostmanRuntime/7.37.3",
    "Go-http-client/2.0",
    "axios/1.6.8",
    "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP1A.240405.002)",
    "MyShopApp/3.2.1 (com.example.shop; build:4521; iOS 17.4.1) Alamofire/5.9.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
]
ACCEPTS = [
    "application/json",
    "application/json, text/plain, */*",
    "*/*",
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
]
LANGUAGES = ["en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-CH, fr;q=0.9, en;q=0.8, *;q=0.5"]
REFERERS = [
    "https://shop.example.com/products?category=shoes&sort=price_asc",
    "https://app.example.com/dashboard#/orders/1234",
    "https://www.google.com/",
    "https://shop.example.com/search?q=o%27brien+jacket&page=2",
    "https://app.example.com/settings/profile?tab=security&utm_source=newsletter",
]
COOKIES = [
    "session=eyJ1aWQiOjQyfQ.ZmFrZQ.c2lnbmF0dXJl; theme=dark; _ga=GA1.2.1234567890.1700000000",
    "cart=%7B%22items%22%3A3%7D; lang=en-GB",
    "consent=necessary%2Canalytics; tz=Europe%2FZurich",
    "OptanonConsent=isGpcEnabled=0&datestamp=Mon+Apr+15+2024+10%3A00%3A00+GMT%2B0200"
    "&version=202401.1.0&groups=C0001%3A1%2CC0002%3A0",
    "csrftoken=Zx8kL2mN4pQ7rS1tU3vW5yA6bC9dE0fG; sessionid=k3j4h5g6f7d8s9a0",
]
EXTRA_HEADERS = [
    [("x-request-id", "9f1c2e4a-7b3d-4e5f-8a9b-0c1d2e3f4a5b")],
    [("x-client-version", "3.2.1 (build 4521)"), ("x-timezone", "Europe/Zurich")],
    [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
    [("if-none-match", 'W/"5e15153d-120f"'), ("x-feature-flags", "new-checkout,dark-mode")],
    [
        (
            "sec-ch-ua",
            '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"',
        ),
        ("sec-fetch-mode", "cors"),
        ("origin", "https://app.example.com"),
    ],
    [("x-amzn-trace-id", "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8")],
    [("prefer", "return=minimal"), ("x-correlation-id", "orders-7f3a")],
    [("x-forwarded-for", "203.0.113.7, 10.0.0.5"), ("x-forwarded-proto", "https")],
]
HEADER_SLOTS = [
    "user-agent",
    "referer",
    "x-forwarded-for",
    "x-api-version",
    "x-client-data",
    "x-search-context",
]


def base_headers(i: int) -> list[tuple[str, str]]:
    """Headers a real client sends, varied by ``i``."""
    headers = [
        ("host", "api.example.com"),
        ("user-agent", USER_AGENTS[i % len(USER_AGENTS)]),
        ("accept", ACCEPTS[i % len(ACCEPTS)]),
        ("accept-language", LANGUAGES[i % len(LANGUAGES)]),
        ("accept-encoding", "gzip, deflate, br"),
    ]
    if i % 2 == 0:
        headers.append(("referer", REFERERS[i % len(REFERERS)]))
    if i % 3 != 2:
        headers.append(("cookie", COOKIES[i % len(COOKIES)]))
    headers.extend(EXTRA_HEADERS[i % len(EXTRA_HEADERS)])
    return headers


def encode_query_value(value: str) -> str:
    """The value as it travels in a URL; payloads already percent-encoded stay so."""
    if PRE_ENCODED.search(value):
        return quote(value, safe="%")
    return quote(value, safe="")


def header_safe(value: str) -> bool:
    return value.isascii() and all(32 <= ord(c) < 127 for c in value) and value == value.strip()


def read_payloads(name: str) -> list[tuple[str, str]]:
    """(payload, source) pairs of ``payloads/NAME.txt``."""
    source = ""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in (HERE / "payloads" / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("# source: "):
            source = line[len("# source: ") :]
            continue
        if not line.strip() or line.startswith("# ") or line == "#":
            continue
        if line in seen:
            continue
        seen.add(line)
        out.append((line, source))
    return out


FILES = ["etc/passwd", "windows/win.ini", "etc/shadow"]
CONTINUATIONS = {"or", "and", "order", "union", "having", "group", "as", "where", "rlike", "limit"}
QUERY_NAMES = {
    "sqli": ["id", "q", "sort", "user", "category", "filter"],
    "nosqli": ["user", "q", "filter"],
    "cmdi": ["host", "file", "q", "cmd", "ip"],
    "xss": ["q", "name", "comment", "redirect", "title"],
    "traversal": ["file", "path", "download", "template", "doc"],
    "ssti": ["name", "greeting", "q", "template", "title"],
}
BODY_NAMES = {
    "sqli": ["username", "search", "orderBy", "customer_id", "note"],
    "nosqli": ["username", "query", "filter"],
    "cmdi": ["hostname", "filename", "target", "options"],
    "xss": ["comment", "bio", "title", "displayName", "message"],
    "traversal": ["path", "attachment", "avatar", "export_file"],
    "ssti": ["greeting", "subject", "display_name", "template_name"],
}


def attack_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    n = 0
    for category in ("sqli", "nosqli", "cmdi", "xss", "traversal", "ssti"):
        for k, (payload, source) in enumerate(read_payloads(category)):
            if "{FILE}" in payload:
                payload = payload.replace("{FILE}", FILES[k % len(FILES)])
            if category == "sqli" and payload.startswith(" "):
                # Lines starting with a space continue a value (" OR 1=1" after "42"); the rest
                # are whole values.
                first = payload.split(None, 1)[0].lower() if payload.strip() else ""
                if first in CONTINUATIONS:
                    payload = str(40 + k % 60) + payload
                else:
                    payload = payload.lstrip()
            tag = f"{category}-{k:03d}"
            n += 1
            if payload.startswith("json:"):
                body = json.loads(payload[5:])
                records.append(
                    _record(
                        tag + "-body",
                        "attack",
                        category,
                        "body",
                        "POST",
                        "/v2/login",
                        "/v2/login",
                        "",
                        base_headers(n),
                        body,
                        source,
                    )
                )
                continue
            if payload.startswith("query:"):
                records.append(
                    _record(
                        tag + "-query",
                        "attack",
                        category,
                        "query",
                        "GET",
                        "/v2/items",
                        "/v2/items",
                        payload[6:],
                        base_headers(n),
                        None,
                        source,
                    )
                )
                continue
            qname = QUERY_NAMES[category][k % len(QUERY_NAMES[category])]
            records.append(
                _record(
                    tag + "-query",
                    "attack",
                    category,
                    "query",
                    "GET",
                    "/v2/items",
                    "/v2/items",
                    f"page=1&{qname}={encode_query_value(payload)}",
                    base_headers(n),
                    None,
                    source,
                )
            )
            bname = BODY_NAMES[category][k % len(BODY_NAMES[category])]
            body = {"id": 1000 + k, bname: payload, "tags": ["new"]}
            method, path = ("PUT", f"/v2/items/{k + 1}") if k % 3 == 1 else ("POST", "/v2/items")
            route = "/v2/items/{item_id}" if method == "PUT" else "/v2/items"
            records.append(
                _record(
                    tag + "-body",
                    "attack",
                    category,
                    "body",
                    method,
                    path,
                    route,
                    "",
                    base_headers(n + 1),
                    body,
                    source,
                )
            )
            if header_safe(payload):
                slot = HEADER_SLOTS[k % len(HEADER_SLOTS)]
                headers = [(h, v) for h, v in base_headers(n + 2) if h != slot]
                headers.append((slot, payload))
                records.append(
                    _record(
                        tag + "-header",
                        "attack",
                        category,
                        "header",
                        "GET",
                        f"/v2/items/{k + 1}",
                        "/v2/items/{item_id}",
                        "",
                        headers,
                        None,
                        source,
                    )
                )
            if k % 4 == 0:
                headers = [(h, v) for h, v in base_headers(n + 3) if h != "cookie"]
                headers.append(("cookie", f"session=k3j4h5g6f7d8; pref={quote(payload, safe='')}"))
                records.append(
                    _record(
                        tag + "-cookie",
                        "attack",
                        category,
                        "cookie",
                        "GET",
                        "/v2/items",
                        "/v2/items",
                        "page=2",
                        headers,
                        None,
                        source,
                    )
                )
    return records


def _record(
    rid: str,
    label: str,
    category: str,
    location: str,
    method: str,
    path: str,
    route: str,
    query: str,
    headers: list[tuple[str, str]],
    body: Any,
    source: str,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": rid,
        "label": label,
        "category": category,
        "location": location,
        "method": method,
        "path": path,
        "route": route,
        "query": query,
        "headers": [list(h) for h in headers],
        "json": body,
        "source": source,
    }
    if body is not None:
        record["headers"].append(["content-type", "application/json"])
    return record


# -- benign traffic ------------------------------------------------------------------------------
# Values that legitimate clients send and that naive filters refuse, grouped by kind.
BENIGN: dict[str, list[str]] = {
    "names": [
        "O'Brien",
        "Seán O'Connor",
        "D'Angelo Russell",
        "Miles O'Reilly-Smith",
        "Zoë Saldaña",
        "Jean-Luc Picard",
        "Mary-Kate O'Hara",
        "Nguyễn Văn An",
        "李小龙",
        "José María García-López",
        "Anne-Marie d'Arc",
        "Conan O'Brien & Andy Richter",
        "Tom's Diner",
        "L'Oréal Paris",
        "O'Neil, Shaquille",
        "Dr. Martin Luther King, Jr.",
        "Björk Guðmundsdóttir",
        "Mr. & Mrs. Smith",
        "N'Golo Kanté",
    ],
    "prose": [
        "Please select your size and drop me a line if it doesn't fit.",
        "I tried to drop table reservations for Friday but the app wouldn't let me.",
        "Select all that apply: red, blue, or green.",
        "The union of both sets is larger than either one.",
        "Order by Friday to get free delivery!",
        "Can I update my delivery address or do I need to cancel and re-order?",
        "We'd like to insert a note: 'fragile' on the box.",
        "Delete my account, please; I no longer use it.",
        "Where is my order? It's been 5 days and tracking says 'in transit'.",
        "1 or 2 items per order, not more",
        "Is 5' 10\" tall enough for the M size?",
        "Rock 'n' roll never dies",
        "It's 50% off - or is it 40%?",
        "Sleep mask (black) -- 2 pack",
        "From 9 to 5, Monday and Tuesday",
        "Having trouble logging in; the page says 'invalid token'.",
        "Me and my friends (all 4 of us) want a table for 8pm",
        "Group by team and then order by score, thanks!",
        "Is it true or false that returns are free?",
        "Choose yes or no",
        "The students' and teachers' lounge is on floor 2.",
        "Execute the plan, then update the team.",
        'She said "hello" and then "goodbye" -- classic.',
        "Having said that, the union rep will call you at 10.",
        "Insert tab A into slot B; repeat for C.",
        "Shut down the old server (after the backup) and create a new one.",
        "Please don't truncate my comments again :(",
        "Limit: 3 per customer, or 5 for members.",
        'Where\'s the "exec summary" from last week?',
        "The declare-and-set pattern is common in our docs.",
        "I'd rate it 4/5 -- would buy again; shipping was slow though.",
        "What's the difference between 1=1 and 1==1 in your pricing formula?",
        "Null and void, said the lawyer; true story.",
        "Our sleep (5 hours) isn't enough, benchmark your mattress!",
        "Cancel order #4521 or replace it with size 9.",
        "Admin's note: the customer called twice.",
        "Fix for issue #12: handle 'null' values.",
        "Use the code SAVE20 at checkout -- or ask support.",
        "It works in Chrome & Firefox, but not in Safari (v17).",
        "Between you and me, the blue one is nicer.",
        "Select 3 colours and 2 sizes, then checkout.",
        "Sleep (deep) mask, 2-pack",
        "Exec (executive) summary attached",
        "If (you) want, call me back.",
        "The union selected a new leader",
        "rating >= 4 and price <= 100",
        "Declare your income before April; or pay a fine.",
        "Can't login -- please help!!",
        "I'm 6' tall; my wife's 5'4\"",
        "Meeting at 10:00; agenda: 1) budget 2) hiring",
        "Update: we shipped v2 (finally)!",
        "Order #123 or #124, whichever ships first",
        "Where is it? Where's my 'express' parcel?",
        "Price: 5€ or less (incl. VAT)",
        "Drop-off at gate 5; or call us at (555) 010-1234",
    ],
    "markdown": [
        "**Bold** and _italic_ with <b>HTML</b> tags",
        'See <a href="https://docs.example.com/guide">the guide</a> for details.',
        "![screenshot](https://cdn.example.com/img/1.png)",
        "<details><summary>Specs</summary>Weight: 2kg</details>",
        "Line one<br>Line two<br/>Line three",
        '<img src="https://cdn.example.com/p/42.jpg" alt="Red shoe" width="300">',
        'Use `<div class="card">` for cards',
        "| Name | ID | Price |\n|---|---|---|\n| Shoe | 42 | 59.90 |",
        '> Quote: "It\'s great" -- a customer',
        '<p style="color: red">Sale!</p>',
        "<table><tr><td>1</td><td>2</td></tr></table>",
        "H<sub>2</sub>O and E=mc<sup>2</sup>",
        "<kbd>Ctrl</kbd>+<kbd>C</kbd> to copy",
        "Click <em>Save</em> &amp; you're done",
        "<!-- internal note: check stock -->Available in 3 colours",
        "x < y && y > z holds for all inputs",
        "I <3 this product!!",
        "Run `ls -la` in your terminal to see hidden files.",
        '1. Open the app\n2. Tap *Settings*\n3. Choose "Dark mode"',
        "## Release notes\n- Fixed crash on login\n- Faster search (2x)",
        "Set the onclick handler in your template, not inline.",
        "Javascript: The Good Parts (book), 2nd hand",
        "[Docs](https://example.com/docs?a=1&b=2) and [API](https://example.com/api)",
        "<ul><li>Cotton</li><li>Machine wash at 30°</li></ul>",
        "~~old price~~ new price: **19.90**",
        "Call `get_user(id)` then `save()` -- see the docs.",
        '<a href="mailto:support@example.com">Email us</a>',
        '<span class="badge">New</span> arrivals',
        "Formula: (a + b) * c / 2 = result",
        "Press <kbd>Alt</kbd> + <kbd>F4</kbd>; don't panic.",
    ],
    "shell_like": [
        "rm -rf",
        "ls -la",
        "how to use grep | sort | uniq",
        "ps aux | grep nginx",
        "find . -name '*.log'",
        "tar -xzvf archive.tar.gz",
        "kill -9 process",
        "git commit -m 'fix: typo'",
        "curl vs wget",
        "echo $PATH",
        "sudo apt install nginx",
        "npm install && npm test",
        "Tom & Jerry",
        "AT&T",
        "R&D",
        "salt; pepper; oregano",
        "cats | dogs",
        "black|white",
        "M&M's",
        "ssh user@host",
        "chmod 755 script.sh",
        "2>&1",
        "[ -f file ] && echo yes",
        "Q&A session at 5pm",
        "copy & paste",
        "ping pong table",
        "cat food & cat litter",
        "sleep well; eat well",
        "nc state university",
        "echo chamber (2024)",
    ],
    "filenames": [
        "report (final) v2.pdf",
        "IMG_2024-04-15 10.32.11.jpg",
        "résumé.docx",
        "Q1 & Q2 results.xlsx",
        "my file #3.txt",
        "archive.tar.gz",
        "backup_2024.01.05.sql",
        "index.html",
        "photos/2024/summer/beach.png",
        "C:\\Users\\anna\\Desktop\\todo.txt",
        "~/Documents/cv.pdf",
        "passwd-reset-instructions.pdf",
        "web.config.sample",
        ".env.example",
        "notes..txt",
        "Ünïcödé nämé.pdf",
        "shell.sh",
        "invoice_#4521 (copy).pdf",
        "etc-hosts-guide.md",
        "data/2024/Q1/sales.csv",
    ],
    "search": [
        "men's shoes size 10",
        '"exact phrase" -excluded',
        "price:<100",
        "tag:summer OR tag:beach",
        'title:"Hello World" AND author:smith',
        "C++ tutorial",
        "C# vs Java",
        "100% cotton",
        "50%-off deals",
        "café au lait",
        "what is 2+2?",
        "#hashtag",
        "@mention",
        "wine & cheese",
        "rock'n'roll",
        "don't stop believin'",
        "N/A",
        "1/2 inch",
        "3' x 5' rug",
        '6" sub',
        "~approx",
        "a AND b OR c",
        "x=1",
        "sort=-created_at",
        "(555) 123-4567",
        "+41 44 123 45 67",
        "2024-04-15T10:30:00+02:00",
        "select",
        "Union Square, San Francisco",
        "order by phone",
        "drop shipping",
        "true or false quiz",
        "null",
        "1=1",
        "where to buy",
        "<<< back",
        ">>> next",
        "-- none --",
        "*",
        "'quoted'",
    ],
    "structured": [
        '{"theme":"dark","fontSize":14}',
        "key=value; other=thing",
        "a=1&b=2",
        "[1,2,3]",
        "SGVsbG8gV29ybGQ=",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dGVzdHNpZw",
        "550e8400-e29b-41d4-a716-446655440000",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "$2b$12$KIXQJj8Ys0VqfhvL4kYBueWqzZ5u1Zp1a4v0pZ3rQWJ0v9Vq5v6aK",
        "$100 gift card",
        "Price: $5 or less",
        "SELECT_PLAN_BASIC",
        "ORDER-2024-0001",
        "user:read orders:write",
        "Bearer-like-string-but-not-a-token",
        "application/vnd.example.v2+json",
        "en-US;q=0.8",
        "rgba(255, 0, 0, 0.5)",
        "calc(100% - 2rem)",
        "f(x) = x^2 + 1",
        "SUM(A1:A10)",
        '=HYPERLINK("https://example.com", "link")',
        "2 > 1 and 1 < 2",
        "v1.2.3-beta+build.45",
        "ISO-8859-1",
        "GET /v2/items HTTP/1.1",
        "image/png;base64",
        "+1 (555) 010-9999 ext. 42",
        "#FF5733",
        "CVE-2021-44228 advisory",
    ],
    "templates": [
        "Hello {{name}}, your order {{order.id}} has shipped!",
        "Dear ${customer_name},",
        "Total: #{amount} EUR",
        "Hi {{ first_name }}!",
        "{{ user.first_name | capitalize }}",
        "${HOME}/config",
        "@(Model.Title)",
        "{% if vip %}Thanks for being a VIP{% endif %}",
        "Use {placeholder} braces",
        "Price ${price} incl. VAT",
        "{{count}} items in cart",
        "<%= link_to 'Home', root_path %>",
        "[[ translate('welcome') ]]",
        "Costs $5 {{ currency }}",
        "#{first} #{last}",
    ],
    "urls": [
        "https://example.com/path?x=1&y=2#frag",
        "https://shop.example.com/search?q=o%27brien",
        "mailto:someone@example.com",
        "tel:+41441234567",
        "https://example.com/a/b/../c",
        "ftp://files.example.com/pub/readme.txt",
        "https://cdn.example.com/js/app.min.js?v=1.2.3",
        "https://example.com/callback?code=abc123&state=xyz",
        "//cdn.example.com/img.png",
        "https://example.com/#/route/with/hash",
        "https://user.example.com/~anna/",
        "https://example.com/search?q=drop+table",
        "https://example.com/wiki/C%2B%2B",
        "https://maps.example.com/@47.3769,8.5417,12z",
        "/relative/path/to/resource",
    ],
    "addresses": [
        "221B Baker Street, London NW1 6XE",
        "1600 Pennsylvania Ave. N.W., Washington, DC 20500",
        "Bahnhofstrasse 1, 8001 Zürich",
        "Apt #4, 12 O'Connell St.",
        "P.O. Box 123; Attn: Billing",
        "c/o Müller & Söhne GmbH",
        "Flat 3/2, 45 Union Street",
        "Route de l'Aéroport 10, 1215 Genève",
        "Unit 5 - 7 Select Way",
        "1 Infinite Loop, Cupertino, CA 95014",
    ],
    "emails": [
        "john.o'reilly@example.com",
        "a+tag@example.co.uk",
        "first.last@sub.example.org",
        "o'hara@example.ie",
        "info@ex-ample.com",
    ],
}

SNIPPETS = [
    "SELECT id, name FROM users WHERE email = 'a@b.c';",
    "DROP TABLE IF EXISTS tmp_orders;",
    "UPDATE accounts SET balance = balance - 10 WHERE id = 7; -- debit",
    "SELECT c.name, COUNT(*) FROM orders o JOIN customers c ON o.cid = c.id GROUP BY c.name "
    "ORDER BY 2 DESC LIMIT 10;",
    "SELECT * FROM products WHERE name LIKE 'O''Brien%' OR 1=1;",
    "INSERT INTO audit (who, what) VALUES ('admin', 'login'); SELECT SLEEP(0);",
    "SELECT name FROM a UNION SELECT name FROM b;",
    "DELETE FROM sessions WHERE expires_at < NOW();",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t WHERE x = 1 -- comment",
    "EXEC sp_who2; WAITFOR DELAY '00:00:01';",
]


def benign_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    n = 0
    for kind, values in BENIGN.items():
        for k, value in enumerate(values):
            n += 1
            tag = f"benign-{kind}-{k:03d}"
            qname = ["q", "name", "note", "search", "title"][k % 5]
            records.append(
                _record(
                    tag + "-query",
                    "benign",
                    kind,
                    "query",
                    "GET",
                    "/v2/items",
                    "/v2/items",
                    f"page={1 + k % 3}&{qname}={quote(value, safe='')}&sort=name",
                    base_headers(n),
                    None,
                    "own",
                )
            )
            body = {
                "title": f"Item {k}",
                "description": value,
                "price": 19.9 + k,
                "tags": ["sale", kind],
                "meta": {"source": "web", "note": value if k % 2 else "n/a"},
            }
            method, path, route = (
                ("PATCH", f"/v2/users/{100 + k}", "/v2/users/{user_id}")
                if k % 4 == 3
                else ("POST", "/v2/comments", "/v2/comments")
            )
            records.append(
                _record(
                    tag + "-body",
                    "benign",
                    kind,
                    "body",
                    method,
                    path,
                    route,
                    "",
                    base_headers(n + 1),
                    body,
                    "own",
                )
            )
            if header_safe(value) and k % 2 == 0:
                slot = ["x-search-context", "x-client-data", "x-display-name"][k % 3]
                headers = base_headers(n + 2) + [(slot, value)]
                records.append(
                    _record(
                        tag + "-header",
                        "benign",
                        kind,
                        "header",
                        "GET",
                        f"/v2/items/{k + 7}",
                        "/v2/items/{item_id}",
                        "",
                        headers,
                        None,
                        "own",
                    )
                )
    for k, snippet in enumerate(SNIPPETS):
        body = {"title": f"Query {k}", "language": "sql", "snippet": snippet}
        records.append(
            _record(
                f"benign-snippet-{k:03d}-body",
                "benign",
                "code_snippet",
                "body",
                "POST",
                "/v2/snippets",
                "/v2/snippets",
                "",
                base_headers(k),
                body,
                "own",
            )
        )
    # JSON bodies whose keys start with "$" for legitimate reasons (JSON Schema, JSON-LD).
    schema_bodies: list[Any] = [
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "item",
            "type": "object",
        },
        {"definitions": {"a": {"$ref": "#/definitions/b"}}, "@context": "https://schema.org"},
        {"price": "$19.99", "currency": "USD", "note": "was $25"},
        {"filter": {"status": "open", "owner": "me"}, "sort": "-created_at", "limit": 20},
        {"username": "anna", "password": "S3cure!Pa$$word#2024"},
        {"username": "o'malley", "password": "it's-a-secret' or not"},
        {"query": "shoes AND (red OR blue) NOT green", "page": 2},
        {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}], "coupon": "SAVE-20%"},
        {"nested": {"deeper": {"deepest": ["a", "b", {"c": "d; e | f & g"}]}}},
        {"html": "<p>Hello <strong>world</strong></p>", "format": "html"},
    ]
    for k, body in enumerate(schema_bodies):
        records.append(
            _record(
                f"benign-json-{k:03d}-body",
                "benign",
                "structured",
                "body",
                "POST",
                "/v2/login" if "password" in body else "/v2/items",
                "/v2/login" if "password" in body else "/v2/items",
                "",
                base_headers(k + 3),
                body,
                "own",
            )
        )
    # Plain traffic: ids, paging, no free text at all.
    for k in range(60):
        method, path, route, query = [
            ("GET", f"/v2/items/{k * 37 % 1000}", "/v2/items/{item_id}", ""),
            ("GET", "/v2/items", "/v2/items", f"page={k}&per_page=50&sort=-created_at"),
            ("DELETE", f"/v2/items/{k + 1}", "/v2/items/{item_id}", ""),
            ("GET", "/v2/items", "/v2/items", f"category=shoes&size={38 + k % 8}&color=red"),
        ][k % 4]
        records.append(
            _record(
                f"benign-plain-{k:03d}",
                "benign",
                "plain",
                "none",
                method,
                path,
                route,
                query,
                base_headers(k + 5),
                None,
                "own",
            )
        )
    return records


def main() -> None:
    records = attack_records() + benign_records()
    with OUT.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    attacks = sum(r["label"] == "attack" for r in records)
    print(f"{OUT.name}: {attacks} attacks, {len(records) - attacks} benign requests")


if __name__ == "__main__":
    main()
