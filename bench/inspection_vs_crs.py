"""Injection inspection against OWASP CRS 3.3 on the labeled corpus, side by side.

Replays every request of ``bench/corpus/corpus.jsonl`` byte for byte over HTTP to

- apishield: the pipeline of ``bench/corpus/policy.yaml`` with the inspection stage, under
  uvicorn, in front of an app that answers 200;
- OWASP CRS 3.3 at paranoia level 1 in Debian's nginx with libmodsecurity
  (``SecRuleEngine On``, JSON body processor, PUT/PATCH/DELETE in ``tx.allowed_methods``), in
  front of a tiny nginx upstream that answers 200;

and prints detection rates (attacks refused) per category and per location and false-positive
rates (benign requests refused) per kind of value and per location. Then it measures the CPU
time apishield's inspection spends on a typical API request, in-process.

Run: ``.venv/bin/python bench/inspection_vs_crs.py`` (``--quick`` skips nothing but the CPU
measurement's repetitions). nginx, libnginx-mod-http-modsecurity and modsecurity-crs are
installed with apt-get when missing (as root, or through ``sudo -n``). Everything listens on
127.0.0.1 only, runs in a temporary directory, and is stopped when the script ends.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from procs import LOOPBACK, BenchError, Processes, find_tool, free_port  # noqa: E402

CORPUS = HERE / "corpus" / "corpus.jsonl"
POLICY = HERE / "corpus" / "policy.yaml"
MODSEC_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
UNICODE_MAP = Path("/etc/nginx/unicode.mapping")
PACKAGES = ["nginx", "libnginx-mod-http-modsecurity", "modsecurity-crs"]

MODSEC_CONF = """\
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
    "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^application/x-www-form-urlencoded" \\
    "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=URLENCODED"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecResponseBodyAccess Off
SecTmpDir {dir}/modsec-tmp
SecDataDir {dir}/modsec-data
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
SecUnicodeMapFile {unicode_map} 20127
Include {crs_setup}
# The corpus is an API's traffic: PUT, PATCH and DELETE are ordinary methods there.
SecAction "id:900200,phase:1,nolog,pass,t:none,\\
    setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include {crs_rules}/*.conf
"""

NGINX_CONF = """\
load_module {module};
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx.error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-temp/client;
    proxy_temp_path {dir}/nginx-temp/proxy;
    fastcgi_temp_path {dir}/nginx-temp/fastcgi;
    uwsgi_temp_path {dir}/nginx-temp/uwsgi;
    scgi_temp_path {dir}/nginx-temp/scgi;
    client_max_body_size 2m;
    server {{
        listen {host}:{port};
        modsecurity on;
        modsecurity_rules_file {dir}/modsec.conf;
        location / {{
            proxy_pass http://{host}:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen {host}:{upstream_port};
        default_type application/json;
        location / {{ return 200 '{{"ok":true}}'; }}
    }}
}}
"""


# -- tools -------------------------------------------------------------------------------------


def ensure_crs() -> str:
    """The nginx binary, with the ModSecurity module and CRS installed (apt-get if missing)."""
    nginx = find_tool("nginx")
    if nginx and MODSEC_MODULE.exists() and CRS_RULES.is_dir() and CRS_SETUP.exists():
        return nginx
    if find_tool("apt-get") is None:
        raise BenchError(f"install {' '.join(PACKAGES)} (Debian packages) to compare with CRS")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(PACKAGES)} with apt-get", flush=True)
    for command in (
        [*prefix, "apt-get", "update", "-qq"],
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=900
        )
        if done.returncode != 0:
            raise BenchError(f"'{' '.join(command)}' failed: {done.stderr.decode()[-300:]}")
    nginx = find_tool("nginx")
    if nginx is None or not MODSEC_MODULE.exists() or not CRS_RULES.is_dir():
        raise BenchError("nginx, the ModSecurity module or CRS is still missing")
    return nginx


# -- the two servers ---------------------------------------------------------------------------


def start_crs(procs: Processes, workdir: Path, nginx: str) -> int:
    port, upstream_port = free_port(), free_port()
    for sub in ("nginx-temp", "modsec-tmp", "modsec-data"):
        (workdir / sub).mkdir(exist_ok=True)
    (workdir / "modsec.conf").write_text(
        MODSEC_CONF.format(
            dir=workdir, unicode_map=UNICODE_MAP, crs_setup=CRS_SETUP, crs_rules=CRS_RULES
        )
    )
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            module=MODSEC_MODULE,
            dir=workdir,
            host=LOOPBACK,
            port=port,
            upstream_port=upstream_port,
        )
    )
    process = procs.start(
        "crs", [nginx, "-c", str(conf), "-e", str(workdir / "nginx.stderr")], cpu=None, env=None
    )
    process.wait_listening(port, timeout=60)
    return port


def start_apishield(procs: Processes) -> int:
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-apishield", str(port)]
    process = procs.start(
        "apishield", command, cpu=None, env={**os.environ, "PYTHONPATH": str(HERE.parent)}
    )
    process.wait_listening(port, timeout=60)
    return port


def load_policy() -> tuple[Any, Any]:
    """The corpus policy and its inspection settings (read apart, for any Policy version)."""
    import yaml

    from apishield.inspect import InspectionSettings
    from apishield.policy.load import coerce_policy

    data = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    inspection = InspectionSettings.model_validate(data.pop("inspection", {}))
    return coerce_policy(data), inspection


def serve_apishield(port: int) -> None:
    """Child process: the corpus policy's pipeline with inspection, served by uvicorn."""
    import uvicorn

    from apishield import protect

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        body = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    policy, inspection = load_policy()
    # The pipeline builds stage 11 itself from the policy's inspection section; wrapping the app
    # in a second stage with other settings would refuse what the policy's exclusions allow.
    app = protect(ok, policy.model_copy(update={"inspection": inspection}))
    uvicorn.run(
        app,
        host=LOOPBACK,
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="off",
    )


# -- replay ------------------------------------------------------------------------------------


def load_corpus() -> list[dict[str, Any]]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def replay(port: int, records: list[dict[str, Any]]) -> list[int]:
    """The status of each record's request, sent exactly as stored (no re-encoding)."""
    statuses: list[int] = []
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    for record in records:
        url = record["path"] + (f"?{record['query']}" if record["query"] else "")
        body = (
            json.dumps(record["json"], ensure_ascii=False).encode()
            if record["json"] is not None
            else None
        )
        for attempt in range(2):
            try:
                conn.putrequest(record["method"], url, skip_host=True, skip_accept_encoding=True)
                for name, value in record["headers"]:
                    conn.putheader(name, value.encode("latin-1"))
                if body is not None or record["method"] in ("POST", "PUT", "PATCH"):
                    conn.putheader("content-length", str(len(body or b"")))
                conn.endheaders(body)
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
                if attempt:
                    statuses.append(0)
    conn.close()
    return statuses


# -- figures -----------------------------------------------------------------------------------


def refused(status: int) -> bool:
    return 400 <= status < 500 or status == 0


def table(records: list[dict[str, Any]], results: dict[str, list[int]]) -> str:
    names = list(results)
    rows: list[tuple[str, str, int, list[float]]] = []

    def add(group: str, label: str, predicate: Any) -> None:
        picked = [i for i, r in enumerate(records) if predicate(r)]
        if not picked:
            return
        rates = [sum(refused(results[n][i]) for i in picked) / len(picked) for n in names]
        rows.append((group, label, len(picked), rates))

    attacks = [r for r in records if r["label"] == "attack"]
    for category in sorted({r["category"] for r in attacks}):
        add(
            "detection, category",
            category,
            lambda r, c=category: r["label"] == "attack" and r["category"] == c,
        )
    for location in sorted({r["location"] for r in attacks}):
        add(
            "detection, location",
            location,
            lambda r, loc=location: r["label"] == "attack" and r["location"] == loc,
        )
    add("detection", "all attacks", lambda r: r["label"] == "attack")
    benign = [r for r in records if r["label"] == "benign"]
    for kind in sorted({r["category"] for r in benign}):
        add(
            "false positives, kind",
            kind,
            lambda r, k=kind: r["label"] == "benign" and r["category"] == k,
        )
    for location in sorted({r["location"] for r in benign}):
        add(
            "false positives, location",
            location,
            lambda r, loc=location: r["label"] == "benign" and r["location"] == loc,
        )
    add("false positives", "all benign", lambda r: r["label"] == "benign")

    out = [f"{'':28} {'':16} {'n':>5}  " + "  ".join(f"{n:>10}" for n in names)]
    group = ""
    for g, label, n, rates in rows:
        if g != group:
            out.append(f"{g}")
            group = g
        out.append(f"{'':28} {label:16} {n:5d}  " + "  ".join(f"{r:10.1%}" for r in rates))
    return "\n".join(out)


def cpu_per_request(repeat: int) -> dict[str, float]:
    """CPU µs of the inspection engine per request.

    "cold": every value scored from scratch; "warm": header and cookie values seen before (the
    engine keeps their scores), as for a client's second and later requests.
    """
    sys.path.insert(0, str(HERE.parent))
    from apishield.inspect import Inspector, RequestParts

    _, inspection = load_policy()
    inspector = Inspector(inspection)
    headers = [
        (b"host", b"api.example.com"),
        (
            b"user-agent",
            b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            b"(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        ),
        (b"accept", b"application/json, text/plain, */*"),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"referer", b"https://app.example.com/orders?status=open&page=2"),
        (b"cookie", b"session=eyJ1aWQiOjQyfQ.ZmFrZQ.c2ln; theme=dark"),
        (b"x-request-id", b"9f1c2e4a-7b3d-4e5f-8a9b-0c1d2e3f4a5b"),
        (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"),
    ]
    get = RequestParts(
        path_params={"order_id": "42"},
        query=b"page=2&per_page=50&sort=-created_at",
        headers=headers,
    )
    post = RequestParts(
        headers=[*headers, (b"content-type", b"application/json")],
        json={
            "customer": {"name": "Anna O'Neil", "email": "anna@example.com"},
            "items": [{"sku": "SHOE-42", "qty": 1, "price": 59.9}, {"sku": "SOCK-3", "qty": 2}],
            "shipping": {"street": "Bahnhofstrasse 1", "city": "Zürich", "zip": "8001"},
            "note": "Please leave the parcel at the door, thanks!",
            "coupon": "SAVE-20",
        },
    )
    timings: dict[str, float] = {}
    for name, parts in (("GET", get), ("POST", post)):
        for warm in (False, True):
            inspector.clear_cache()
            start = time.process_time()
            for _ in range(repeat):
                if not warm:
                    inspector.clear_cache()
                inspector.inspect(parts)
            timings[f"{name} {'warm' if warm else 'cold'}"] = (
                (time.process_time() - start) / repeat * 1e6
            )
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "corpus_parts", HERE.parent / "tests" / "inspect" / "test_corpus.py"
    )
    if spec is None or spec.loader is None:
        return timings
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    benign = [r for r in load_corpus() if r["label"] == "benign"]
    prepared = [(module.parts(r), r["route"]) for r in benign]
    rounds = max(1, repeat // 200)
    start = time.process_time()
    for _ in range(rounds):
        for parts, route in prepared:
            inspector.clear_cache()
            inspector.inspect(parts, route=route)
    timings["corpus benign cold"] = (time.process_time() - start) / (rounds * len(prepared)) * 1e6
    return timings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer CPU-time repetitions")
    parser.add_argument("--serve-apishield", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_apishield:
        serve_apishield(args.serve_apishield)
        return 0
    records = load_corpus()
    attacks = sum(r["label"] == "attack" for r in records)
    print(f"corpus: {attacks} attacks, {len(records) - attacks} benign requests")
    results: dict[str, list[int]] = {}
    try:
        nginx = ensure_crs()
        with (
            tempfile.TemporaryDirectory(prefix="apishield-crs-") as tmp,
            Processes(Path(tmp)) as procs,
        ):
            workdir = Path(tmp)
            apishield_port = start_apishield(procs)
            results["apishield"] = replay(apishield_port, records)
            crs_port = start_crs(procs, workdir, nginx)
            results["CRS 3.3 PL1"] = replay(crs_port, records)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print()
    print(table(records, results))
    for name, statuses in results.items():
        print(f"{name}: statuses {dict(sorted(Counter(statuses).items()))}")
    timings = cpu_per_request(2000 if args.quick else 20000)
    print()
    print("apishield inspection, CPU µs per request (in-process, one core):")
    print(
        "  typical GET: 9 headers (one credential, skipped), 3 query parameters, a path parameter"
    )
    print("  typical POST: the same headers and a JSON body of 15 values")
    for name, micros in timings.items():
        print(f"  {name:24} {micros:7.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
