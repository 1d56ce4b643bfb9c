"""The audit log of ``apishield serve``: one line per request on standard error, all of them
there after a graceful stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPT = (
    "import sys; from pathlib import Path; from apishield.server import serve_policy; "
    "sys.exit(serve_policy(Path(sys.argv[1]), app_factory='server_support:build_audited_app'))"
)
POLICY = """\
apishield: 1
listen: {address: "127.0.0.1:0", tls: "off"}
state: {dir: state}
routes:
  - {path: "/items/{item_id}", methods: [GET], allow: public}
"""
LISTENING = re.compile(r"apishield listening on http://127\.0\.0\.1:(\d+)")

pytestmark = pytest.mark.slow


def test_every_request_before_sigterm_has_its_event(tmp_path: Path) -> None:
    (tmp_path / "apishield.yaml").write_text(POLICY)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "apishield.yaml")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []))
    reader.start()
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            found = [m for line in list(lines) if (m := LISTENING.search(line))]
            port = int(found[0][1]) if found else None
            assert process.poll() is None, "".join(lines)
            time.sleep(0.05)
        assert port is not None, "".join(lines)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            statuses = [client.get(f"/items/{n}").status_code for n in range(40)]
            statuses.append(client.get("/nowhere").status_code)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        reader.join(30)
        process.stderr.close()
    events = [json.loads(line) for line in lines if line.startswith('{"event":"request"')]
    assert statuses == [200] * 40 + [404]
    assert [e["status"] for e in events] == statuses
    assert {e["route"] for e in events[:40]} == {"/items/{item_id}"}
    assert events[-1]["path"] == "/nowhere" and events[-1]["code"] == "route_not_found"
    assert not (tmp_path / "state" / "audit-spill.jsonl").exists()
