"""apishield against nginx on one core: requests/s, latency and CPU per request, as ratios.

Run ``.venv/bin/python bench/run.py`` (or ``make bench``). It starts a fixed-response upstream
(nginx), then each server under test alone on one core, loads it with wrk on another core, and
prints one row per server with its ratios to nginx as a plain keep-alive proxy: nginx,
apishield's passthrough (the proxy alone), the gateway on public routes, and the full policy
(rate limits, inspection, response headers, the audit log) authenticated by an API key, by a
cached ES256 JWT and by an ES256 JWT verified on every request. See bench/README.md for what
each row means and the targets in DESIGN.md ("Performance budget").

Exit status: 0 when every row ran and passthrough met its target, 1 when it missed the
target, 2 when a row could not be measured or something needed is missing.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from load import WrkResult, check_response, run_wrk
from nginx import UPSTREAM_BODY, nginx_command, proxy_config, upstream_config
from procs import (
    LOOPBACK,
    BenchError,
    CoreTicks,
    Process,
    Processes,
    core_ticks,
    ensure_tools,
    free_port,
    tree_cpu_seconds,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
LOAD_PATH = "/v2/orders/42"
#: DESIGN.md, "Performance budget": one core, requests/s relative to nginx in the same run.
PASSTHROUGH_TARGET = 0.35
FULL_POLICY_TARGET = 0.15
#: Above these (% of one CPU) the figures are flagged as shaped by the machine.
NOISE_LOAD_CORE = 95.0
NOISE_OTHER = 5.0
NOTE = (
    "plain HTTP on loopback everywhere (TLS off, so handshake and cipher costs do not hide "
    "what the gateway itself adds)"
)


@dataclass(frozen=True)
class Server:
    """A server under test."""

    key: str
    label: str
    what: str
    #: The ``bench/apps.py`` factory that serves it (nginx: none).
    factory: str = "gateway"


SERVERS = (
    Server("nginx", "nginx proxy", "nginx, 1 worker, plain keep-alive reverse proxy (baseline)"),
    Server(
        "passthrough",
        "apishield passthrough",
        "the upstream proxy (UpstreamApp) alone, no stage, under uvicorn as `apishield serve`",
        "passthrough",
    ),
    Server(
        "gateway",
        "apishield gateway",
        "build_gateway(policy) as `apishield serve` runs it, with the bench policy (see stages)",
    ),
    Server(
        "full-apikey",
        "full policy, API key",
        "the gateway with the full policy: the load path needs the scope orders:read, sent "
        "as an API key (X-API-Key) created with `apishield apikeys create`",
    ),
    Server(
        "full-jwt-cached",
        "full policy, ES256 JWT cached",
        "the full policy, the same ES256 access token (RFC 9068) on every request: verified "
        "once, then found in the cache of verified tokens",
    ),
    Server(
        "full-jwt-uncached",
        "full policy, ES256 JWT uncached",
        "the full policy with `identity.token_cache_size: 0` (the cache off, a policy "
        "setting): the ES256 signature and claims are verified on every request",
    ),
)
#: Rows judged against DESIGN's full-policy target.
FULL_ROWS = ("full-apikey", "full-jwt-cached", "full-jwt-uncached")
#: The scope the full policy's load route requires, and the audience of the local issuer.
SCOPE = "orders:read"
AUDIENCE = "orders-api"


@dataclass
class Row:
    """One server's figures (``error`` set when it could not be measured)."""

    key: str
    label: str
    what: str
    #: The ``bench/apps.py`` factory that serves it (nginx: none).
    factory: str = "gateway"
    requests: int = 0
    seconds: float = 0.0
    requests_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us_per_request: float = 0.0
    server_cpu_percent: float = 0.0
    load_core_busy_percent: float = 0.0
    server_core_other_percent: float = 0.0
    load_core_other_percent: float = 0.0
    steal_percent: float = 0.0
    rps_vs_nginx: float | None = None
    cpu_nginx_over_this: float | None = None
    response_headers: list[str] | None = None
    stages: list[str] | None = None
    error: str | None = None


def bench_policy(port: int, upstream_port: int, state_dir: Path) -> dict[str, Any]:
    """A policy like the demo's, every route public, served plain on loopback."""
    public = "public"
    fast = "1000000/second"
    return {
        "apishield": 1,
        "mode": "production",
        "listen": {"address": f"{LOOPBACK}:{port}", "tls": "off"},
        "state": {"dir": str(state_dir)},
        "upstream": {"url": f"http://{LOOPBACK}:{upstream_port}"},
        "cors": {"origins": ["https://app.example.com"]},
        "versions": [
            {
                "prefix": "/v1",
                "deprecated": {
                    "since": "2026-01-01",
                    "sunset": "2027-06-30",
                    "link": "https://example.com/docs/migrate-to-v2",
                },
            },
            {"prefix": "/v2"},
        ],
        # The default rules with rates no single core can reach: the rate-limit stage counts
        # every request, as in production, and refuses none (the load comes from one address).
        "limits": {
            "rules": [
                {"name": "ip", "key": "ip", "rate": fast, "burst": 100, "when": "anonymous"},
                {"name": "principal", "key": "principal", "rate": fast, "burst": 200},
            ]
        },
        "routes": [
            {"path": "/health", "methods": ["GET"], "allow": public},
            {"path": "/v2/customers", "methods": ["GET"], "allow": public},
            {"path": "/v2/customers/{customer_id}", "methods": ["GET"], "allow": public},
            {"path": "/v2/orders", "methods": ["GET"], "allow": public},
            {
                "path": "/v2/orders",
                "methods": ["POST"],
                "allow": public,
                "content_types": ["application/json"],
                "body_limit": "16KiB",
            },
            # The load path, GET /v2/orders/42, matches this one.
            {"path": "/v2/orders/{order_id}", "methods": ["GET", "DELETE"], "allow": public},
            {"path": "/v1/customers", "methods": ["GET"], "allow": public},
            {"path": "/v1/customers/{customer_id}", "methods": ["GET"], "allow": public},
        ],
    }


class LocalIssuer:
    """An ES256 token issuer on loopback: its JWK set served by a thread of this process (the
    gateway fetches it once at start), its access tokens signed here."""

    def __init__(self) -> None:
        from joserfc.jwk import ECKey, KeySet

        self.key = ECKey.generate_key("P-256", parameters={"kid": "bench-es256", "alg": "ES256"})
        document = json.dumps(KeySet([self.key]).as_dict(private=False)).encode()

        class JWKS(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), JWKS)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self) -> str:
        """A valid access token for the load route, for the next 50 minutes."""
        from joserfc import jwt

        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "bench-client",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 3000,  # under the default maximum lifetime of one hour
            "jti": f"bench-{now}",
            "client_id": "bench-client",
            "scope": SCOPE,
        }
        header = {"alg": "ES256", "typ": "at+jwt", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_issuer: LocalIssuer | None = None


def local_issuer() -> LocalIssuer:
    """The run's one local issuer, started on first use and stopped at exit."""
    global _issuer
    if _issuer is None:
        _issuer = LocalIssuer()
        atexit.register(_issuer.close)
    return _issuer


def full_policy(
    port: int, upstream_port: int, state_dir: Path, *, token_cache: bool = True
) -> dict[str, Any]:
    """DESIGN's "full default policy": the bench policy with the load route scoped, API keys
    and the local ES256 issuer accepted, the default rate limits counting every request, the
    default inspection and response headers."""
    policy = bench_policy(port, upstream_port, state_dir)
    issuer = local_issuer()
    identity: dict[str, Any] = {
        "api_keys": {"header": "X-API-Key"},
        "issuers": [
            {
                "issuer": issuer.url,
                "jwks_uri": f"{issuer.url}/jwks.json",
                "algorithms": ["ES256"],
                "audience": AUDIENCE,
                # The key set is fetched on the first request; under callgrind
                # (serve_micro.py) that takes far longer than the 5 s default.
                "fetch_timeout": "60s",
            }
        ],
    }
    if not token_cache:
        identity["token_cache_size"] = 0
    policy["identity"] = identity
    for route in policy["routes"]:
        if route["path"] == "/v2/orders/{order_id}":
            route["allow"] = {"scopes": [SCOPE]}
    if schema_validation_available():
        # Stage 10: a small spec for the load route, next to the policy file.
        spec = state_dir.parent / "openapi.json"
        spec.write_text(json.dumps(BENCH_SPEC, indent=2))
        policy["openapi"] = {"spec": str(spec)}
    return policy


#: The OpenAPI description the full policy validates the load route against.
BENCH_SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "apishield benchmark", "version": "1"},
    "paths": {
        "/v2/orders/{order_id}": {
            "get": {
                "parameters": [
                    {
                        "name": "order_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1, "format": "int64"},
                    }
                ],
                "responses": {"200": {"description": "one order"}},
            }
        }
    },
}


def schema_validation_available() -> bool:
    """Whether this apishield validates requests against OpenAPI (stage 10)."""
    try:
        import apishield.pipeline.validation  # noqa: F401
        from apishield.policy.models import Policy
    except ImportError:
        return False
    return "openapi" in Policy.model_fields


def create_api_key(policy_file: Path) -> str:
    """A key with the load route's scope, made as an operator makes one (the CLI)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "apishield",
            "apikeys",
            "create",
            "--owner",
            "bench",
            "--scope",
            SCOPE,
            "--config",
            str(policy_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("api_key: "):
            return line.removeprefix("api_key: ").strip()
    reason = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
    raise BenchError(f"could not create an API key: {reason[0]}")


def prepare_row(
    server: Server, port: int, upstream_port: int, workdir: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """The policy that ``server`` runs with, and the fields every request of its load carries.

    Writes the policy to ``workdir/<row>.yaml`` (the API key row needs it to create its key).
    """
    state = workdir / "state"
    headers: dict[str, str] = {}
    if server.key in FULL_ROWS:
        policy = full_policy(
            port, upstream_port, state, token_cache=server.key != "full-jwt-uncached"
        )
    else:
        policy = bench_policy(port, upstream_port, state)
    policy_file = workdir / f"{server.key}.yaml"
    # JSON is YAML: the policy loads exactly as a user's file would.
    policy_file.write_text(json.dumps(policy, indent=2))
    if server.key == "full-apikey":
        headers["X-API-Key"] = create_api_key(policy_file)
    elif server.key.startswith("full-jwt"):
        headers["Authorization"] = f"Bearer {local_issuer().token()}"
    return policy, headers


class Bench:
    """One run: the upstream, then each server under test in turn, loaded the same way."""

    def __init__(self, args: argparse.Namespace, tools: dict[str, str], workdir: Path) -> None:
        self.args = args
        self.tools = tools
        self.workdir = workdir
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpu = cpus[0]
        self.load_cpu = cpus[1] if len(cpus) > 1 else cpus[0]
        self.shared_core = len(cpus) < 2
        self.cpus = sorted({self.server_cpu, self.load_cpu})
        self.upstream: Process | None = None
        self.headers: dict[str, str] = {}
        self.policies: dict[str, dict[str, Any]] = {}

    def run(self, servers: list[Server]) -> list[Row]:
        missing = apishield_missing()
        with Processes(self.workdir) as procs:
            upstream_port = free_port()
            upstream = procs.start(
                "upstream",
                nginx_command(
                    self.tools["nginx"], upstream_config(self.workdir, upstream_port), self.workdir
                ),
                cpu=self.load_cpu,
                env=None,
            )
            upstream.wait_listening(upstream_port)
            self.upstream = upstream
            check_response(upstream_port, LOAD_PATH, UPSTREAM_BODY)
            rows = []
            for server in servers:
                if server.key != "nginx" and missing:
                    rows.append(Row(server.key, server.label, server.what, error=missing))
                    print(f"  {server.label}: skipped: {missing}")
                else:
                    rows.append(self._measure(procs, server, upstream_port))
        return rows

    def _start(self, procs: Processes, server: Server, port: int, upstream_port: int) -> Process:
        if server.key == "nginx":
            self.headers = {}
            config = proxy_config(self.workdir, port, upstream_port)
            command = nginx_command(self.tools["nginx"], config, self.workdir)
        else:
            policy_file = self.workdir / f"{server.key}.yaml"
            self.policies[server.key], self.headers = prepare_row(
                server, port, upstream_port, self.workdir
            )
            command = [sys.executable, str(BENCH / "apps.py"), server.factory, str(policy_file)]
        return procs.start(server.label, command, cpu=self.server_cpu, env=None)

    def _measure(self, procs: Processes, server: Server, upstream_port: int) -> Row:
        row = Row(server.key, server.label, server.what)
        print(f"  {server.label}: ", end="", flush=True)
        process: Process | None = None
        try:
            port = free_port()
            process = self._start(procs, server, port, upstream_port)
            process.wait_listening(port)
            headers = check_response(port, LOAD_PATH, UPSTREAM_BODY, headers=self.headers)
            row.response_headers = sorted(headers)
            if server.key != "nginx":
                row.stages = self._stages(server)
            url = f"http://{LOOPBACK}:{port}{LOAD_PATH}"
            print("warm-up… ", end="", flush=True)
            self._wrk(url, self.args.warmup)
            print("measuring… ", end="", flush=True)
            load_before = self._load_side_cpu()
            cpu_before = tree_cpu_seconds(process.pid)
            cores_before = core_ticks(self.cpus)
            wall_before = time.monotonic()
            result = self._wrk(url, self.args.duration)
            wall = time.monotonic() - wall_before
            cpu = tree_cpu_seconds(process.pid) - cpu_before
            cores_after = core_ticks(self.cpus)
            load_cpu = self._load_side_cpu() - load_before
            if not process.alive():
                raise BenchError(f"{server.label} exited during the run: {process.tail()}")
            failures = result.failures
            if failures:
                raise BenchError("; ".join(failures))
            self._fill(row, result, (cpu, load_cpu, wall), cores_before, cores_after)
            print(f"{row.requests_per_second:,.0f} requests/s")
        except BenchError as exc:
            row.error = str(exc)
            print(f"FAILED: {exc}")
        finally:
            if process is not None:
                procs.stop(process)
        return row

    def _stages(self, server: Server) -> list[str]:
        """The ASGI apps the server runs, outermost first, as the same policy builds them."""
        from apps import FACTORIES, stage_names

        from apishield.policy import parse_policy

        policy = parse_policy(self.policies[server.key])
        return stage_names(FACTORIES[server.factory](policy))

    def _fill(
        self,
        row: Row,
        result: WrkResult,
        seconds: tuple[float, float, float],
        before: dict[int, CoreTicks],
        after: dict[int, CoreTicks],
    ) -> None:
        """Figures of one measured run; ``seconds``: server CPU, load side CPU, wall time."""
        cpu, load_cpu, wall = seconds
        row.requests = result.requests
        row.seconds = result.seconds
        row.requests_per_second = result.requests_per_second
        row.p50_ms = result.p50_ms
        row.p99_ms = result.p99_ms
        row.cpu_us_per_request = cpu * 1e6 / result.requests
        row.server_cpu_percent = 100.0 * cpu / wall

        def share(cpu_id: int, field: str) -> float:
            total = after[cpu_id].total - before[cpu_id].total
            used = getattr(after[cpu_id], field) - getattr(before[cpu_id], field)
            return 100.0 * used / total if total else 0.0

        row.load_core_busy_percent = share(self.load_cpu, "busy")
        if not self.shared_core:
            # Whatever else ran on either CPU competed with the run: other work on the machine.
            other = share(self.server_cpu, "busy") - row.server_cpu_percent
            row.server_core_other_percent = max(0.0, other)
            other = row.load_core_busy_percent - 100.0 * load_cpu / wall
            row.load_core_other_percent = max(0.0, other)
        row.steal_percent = max(share(c, "steal") for c in self.cpus)

    def _load_side_cpu(self) -> float:
        """CPU seconds of the load side so far: the upstream, and wrk runs already reaped."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        upstream = tree_cpu_seconds(self.upstream.pid) if self.upstream else 0.0
        return children.ru_utime + children.ru_stime + upstream

    def _wrk(self, url: str, seconds: int) -> WrkResult:
        return run_wrk(
            self.tools["wrk"],
            url,
            seconds=seconds,
            threads=1,
            connections=self.args.connections,
            cpu=self.load_cpu,
            headers=self.headers,
        )


def add_ratios(rows: list[Row]) -> None:
    """Requests/s as a fraction of nginx's, and nginx's CPU per request over this row's."""
    nginx = next((r for r in rows if r.key == "nginx" and r.error is None), None)
    if nginx is None:
        return
    for row in rows:
        if row.error is None:
            row.rps_vs_nginx = row.requests_per_second / nginx.requests_per_second
            row.cpu_nginx_over_this = nginx.cpu_us_per_request / row.cpu_us_per_request


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def format_table(rows: list[Row]) -> str:
    header = (
        "server",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "server CPU",
        "load CPU",
        "req/s ÷ nginx",
        "CPU nginx ÷ this",
    )
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        if row.error is not None:
            lines.append((row.label, "FAILED", *[""] * (len(header) - 2)))
            continue
        lines.append(
            (
                row.label,
                f"{row.requests_per_second:,.0f}",
                f"{row.p50_ms:.2f}",
                f"{row.p99_ms:.2f}",
                f"{row.cpu_us_per_request:.1f}",
                f"{row.server_cpu_percent:.0f}%",
                f"{row.load_core_busy_percent:.0f}%",
                _ratio(row.rps_vs_nginx),
                _ratio(row.cpu_nginx_over_this),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine_busy(cpus: list[int], seconds: float = 1.0) -> float:
    """How busy the busiest of ``cpus`` is over ``seconds``, in % (before anything starts)."""
    before = core_ticks(cpus)
    time.sleep(seconds)
    after = core_ticks(cpus)
    shares = [
        100.0
        * (after[c].busy + after[c].steal - before[c].busy - before[c].steal)
        / max(1, after[c].total - before[c].total)
        for c in cpus
    ]
    return max(shares, default=0.0)


def notes(rows: list[Row]) -> list[str]:
    """Warnings about figures that the machine, not the server, may have shaped."""
    out: list[str] = []
    measured = [r for r in rows if r.error is None]
    capped = [r.label for r in measured if r.load_core_busy_percent > NOISE_LOAD_CORE]
    if capped:
        out.append(
            f"the load CPU was over {NOISE_LOAD_CORE:.0f}% busy ({', '.join(capped)}): "
            "requests/s there may be capped by the load side; CPU µs/req is still valid"
        )
    for row in disturbed(rows):
        out.append(
            f"{row.label}: other work took {row.server_core_other_percent:.0f}% of the "
            f"server's CPU and {row.load_core_other_percent:.0f}% of the load CPU, the "
            f"hypervisor stole {row.steal_percent:.0f}%: these figures are unreliable; run "
            "again on a quiet machine"
        )
    return out


def disturbed(rows: list[Row]) -> list[Row]:
    """Rows during which other work or the hypervisor took a share of the CPUs."""
    return [
        r
        for r in rows
        if r.error is None
        and max(r.server_core_other_percent, r.load_core_other_percent, r.steal_percent)
        > NOISE_OTHER
    ]


def verdicts(rows: list[Row]) -> tuple[list[str], bool | None]:
    """The lines that judge the run against DESIGN's targets; passthrough's pass or fail."""
    by_key = {r.key: r for r in rows}
    lines: list[str] = []
    passed: bool | None = None
    passthrough = by_key.get("passthrough")
    if passthrough is not None and passthrough.rps_vs_nginx is not None:
        passed = passthrough.rps_vs_nginx >= PASSTHROUGH_TARGET
        lines.append(
            f"passthrough: {passthrough.rps_vs_nginx:.2f}× nginx requests/s: "
            f"{'PASS' if passed else 'FAIL'} (DESIGN target ≥ {PASSTHROUGH_TARGET}× on one core)"
            f"; by CPU per request {passthrough.cpu_nginx_over_this:.2f}× nginx"
            + ("; UNRELIABLE, see the notes" if disturbed(rows) else "")
        )
    else:
        lines.append("passthrough: not measured against nginx: no verdict")
    for key in FULL_ROWS:
        row = by_key.get(key)
        if row is None or row.rps_vs_nginx is None:
            continue
        if key == "full-jwt-uncached":
            # DESIGN's target assumes a cached token; this row shows what the cache saves.
            lines.append(
                f"{row.label}: {row.rps_vs_nginx:.3f}× nginx requests/s (for information: "
                "the target is set for cached tokens)"
            )
            continue
        verdict = "PASS" if row.rps_vs_nginx >= FULL_POLICY_TARGET else "FAIL"
        schema = (
            "with schema validation"
            if schema_validation_available()
            else "WITHOUT schema validation (not available in this apishield)"
        )
        lines.append(
            f"{row.label}: {row.rps_vs_nginx:.3f}× nginx requests/s: {verdict} (DESIGN "
            f"target for the full default policy ≥ {FULL_POLICY_TARGET}×; {schema})"
        )
    gateway = by_key.get("gateway")
    if gateway is not None and gateway.stages:
        lines.append("gateway stages: " + " → ".join(gateway.stages))
    if gateway is not None and gateway.rps_vs_nginx is not None:
        lines.append(
            f"gateway: {gateway.rps_vs_nginx:.2f}× nginx requests/s with the stages above (the "
            f"≥ {FULL_POLICY_TARGET}× target is for the full default policy, which also "
            "verifies a cached token and validates each request against a schema; the bench "
            "policy's public routes need neither)"
        )
        if passthrough is not None and passthrough.error is None:
            added = gateway.cpu_us_per_request - passthrough.cpu_us_per_request
            added_p50 = gateway.p50_ms - passthrough.p50_ms
            lines.append(
                f"the stages add {added:.1f} µs of CPU per request over passthrough "
                f"(p50 {added_p50:+.2f} ms at this load)"
            )
    return lines, passed


def _command_output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info(tools: dict[str, str]) -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": _command_output([tools["nginx"], "-v"]),
        "wrk": _command_output([tools["wrk"], "-v"]),
        "git_commit": _command_output(["git", "-C", str(BENCH), "rev-parse", "HEAD"]),
    }
    try:
        import uvicorn

        import apishield

        info["apishield"] = apishield.__version__
        info["uvicorn"] = uvicorn.__version__
    except ImportError:
        pass
    return info


def write_results(
    rows: list[Row],
    args: argparse.Namespace,
    bench: Bench,
    info: dict[str, Any],
    passed: bool | None,
) -> Path:
    RESULTS.mkdir(exist_ok=True)
    now = datetime.now().astimezone()
    path = RESULTS / f"{now:%Y-%m-%d-%H%M%S}.json"
    document = {
        "date": now.isoformat(timespec="seconds"),
        "note": NOTE,
        "machine": info,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "threads": 1,
            "path": LOAD_PATH,
            "response_bytes": len(UPSTREAM_BODY),
            "server_cpu": bench.server_cpu,
            "load_cpu": bench.load_cpu,
            "shared_core": bench.shared_core,
            "full_policy": {
                "schema_validation": schema_validation_available(),
                "credentials": {
                    "full-apikey": "X-API-Key from `apishield apikeys create`",
                    "full-jwt-cached": "one ES256 at+jwt token, the same on every request",
                    "full-jwt-uncached": "the same token, identity.token_cache_size: 0",
                },
            },
        },
        "rows": [asdict(row) for row in rows],
        "notes": notes(rows),
        "targets": {
            "passthrough_rps_vs_nginx": PASSTHROUGH_TARGET,
            "full_policy_rps_vs_nginx": FULL_POLICY_TARGET,
            "passthrough_passed": passed,
        },
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="apishield against nginx on one core, as ratios (DESIGN.md budget).",
    )
    parser.add_argument(
        "--duration", type=int, default=10, metavar="S", help="seconds of each measured run"
    )
    parser.add_argument("--warmup", type=int, default=3, metavar="S", help="seconds of warm-up")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument(
        "--only",
        default=",".join(s.key for s in SERVERS),
        help="comma-separated rows to run (default: all: nginx,passthrough,gateway)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    if not 1 <= args.duration <= 600 or not 1 <= args.warmup <= 600:
        parser.error("--duration and --warmup take 1 to 600 seconds")
    if not 1 <= args.connections <= 10_000:
        parser.error("--connections takes 1 to 10000")
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = set(keys) - {s.key for s in SERVERS}
    if unknown or not keys:
        parser.error(f"--only takes some of {','.join(s.key for s in SERVERS)}")
    args.servers = [s for s in SERVERS if s.key in keys]
    return args


def apishield_missing() -> str | None:
    """Why the apishield rows cannot run (None when they can)."""
    try:
        import apishield.pipeline.build  # noqa: F401
        import apishield.server.serve  # noqa: F401
        from apishield.proxy import UpstreamApp  # noqa: F401
    except ImportError as exc:
        return f"cannot import apishield's gateway ({exc}); run with .venv/bin/python"
    return None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, which stops what was started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGHUP, _stop_on_sigterm)
    try:
        if not Path("/proc/self/stat").exists():
            raise BenchError("the benchmark needs Linux (/proc and taskset)")
        tools = ensure_tools(["nginx", "wrk", "taskset"])
        with tempfile.TemporaryDirectory(prefix="apishield-bench-") as tmp:
            workdir = Path(tmp)
            os.chmod(workdir, 0o755)  # noqa: S103 - nginx workers (user nobody) read inside
            bench = Bench(args, tools, workdir)
            print(f"apishield benchmark: {NOTE}")
            print(
                f"server under test alone on CPU {bench.server_cpu}; wrk -t1 "
                f"-c{args.connections} -d{args.duration}s --latency and the upstream (nginx, "
                f"fixed {len(UPSTREAM_BODY)}-byte JSON) on CPU {bench.load_cpu}; "
                f"GET {LOAD_PATH}; {args.warmup} s warm-up before each measured run"
            )
            if bench.shared_core:
                print("WARNING: one CPU only: server and load share it; ratios are rough")
            busy = machine_busy(bench.cpus)
            if busy > NOISE_OTHER:
                print(
                    f"WARNING: before starting, other work kept the CPUs {busy:.0f}% busy: "
                    "figures are only comparable on a quiet machine"
                )
            rows = bench.run(args.servers)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    add_ratios(rows)
    print()
    print(format_table(rows))
    for row in rows:
        if row.error is not None:
            print(f"{row.label} FAILED: {row.error}")
    for note in notes(rows):
        print(f"note: {note}")
    lines, passed = verdicts(rows)
    print()
    print("\n".join(lines))
    path = write_results(rows, args, bench, machine_info(tools), passed)
    print(f"results: {path.relative_to(BENCH.parent)}")
    if any(row.error is not None for row in rows):
        return 2
    return 1 if passed is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
