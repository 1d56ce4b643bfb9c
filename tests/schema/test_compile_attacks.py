"""Compiling a request schema never reaches the network."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from apishield.errors import ConfigError
from apishield.schema.compile import compile_schema, request_schema


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.hits.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("content-type", "application/schema+json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def schema_host() -> Iterator[str]:
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda url: {"$ref": url}, id="top-level-ref"),
        pytest.param(lambda url: {"definitions": {"a": {"$ref": url}}}, id="under-definitions"),
    ],
)
def test_a_remote_reference_is_refused_without_a_request(schema_host: str, where: object) -> None:
    assert callable(where)
    schema = where(schema_host + "/schema.json")
    with pytest.raises(ConfigError) as caught:
        compile_schema(request_schema(schema, max_string_length=10), where="spec: body")
    assert "\n" not in str(caught.value)
    assert _Recorder.hits == []
