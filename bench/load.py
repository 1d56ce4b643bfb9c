"""The load: wrk on loopback, its output parsed, and a one-request check before it."""

from __future__ import annotations

import http.client
import re
import subprocess
from dataclasses import dataclass, field

from procs import LOOPBACK, BenchError

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s*([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_ERROR_KINDS = ("connect", "read", "write", "timeout")


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Why the run cannot be trusted, if it cannot: every response must have been a 2xx."""
        problems = []
        if self.non_2xx:
            problems.append(f"{self.non_2xx} responses were not 2xx")
        errors = {k: v for k, v in self.socket_errors.items() if v}
        if errors:
            problems.append(
                "socket errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
            )
        if not self.requests:
            problems.append("no request completed")
        return problems


def parse_wrk(output: str) -> WrkResult:
    """Parse ``wrk --latency`` output; ``BenchError`` when a figure is missing."""
    percentiles = {m[0]: float(m[1]) * _UNITS_MS[m[2]] for m in _PERCENTILE.findall(output)}
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None or set(percentiles) != {"50", "99"}:
        raise BenchError("could not read wrk's output: " + " | ".join(output.splitlines()[-4:]))
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        requests=int(requests[1]),
        seconds=float(requests[2]) * _UNITS_MS[requests[3]] / 1000.0,
        requests_per_second=float(rps[1]),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=dict(zip(_ERROR_KINDS, map(int, errors.groups()), strict=True))
        if errors
        else {},
    )


def run_wrk(
    wrk: str,
    url: str,
    *,
    seconds: int,
    threads: int,
    connections: int,
    cpu: int | None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """One wrk run against ``url`` (loopback only), pinned to ``cpu``; bounded in time.
    ``headers`` go on every request (credentials)."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise BenchError(f"refusing to load {url}: only {LOOPBACK} is ever a target")
    command = [
        *(["taskset", "-c", str(cpu)] if cpu is not None else []),
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        *[f"-H{name}: {value}" for name, value in (headers or {}).items()],
        url,
    ]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 30} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
        raise BenchError(f"wrk failed: {reason[0]}")
    return parse_wrk(done.stdout)


def check_response(
    port: int, path: str, body: str, *, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """One GET before the load (with ``headers``): it must be a 200 carrying ``body``;
    returns its headers."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": "application/json", **(headers or {})})
        response = conn.getresponse()
        received = response.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"GET {path} on port {port} failed: {exc}") from None
    finally:
        conn.close()
    if response.status != 200 or received != body:
        raise BenchError(
            f"GET {path} on port {port} answered {response.status} {received[:160]!r}, "
            "not the upstream's 200"
        )
    return {name.lower(): value for name, value in response.getheaders()}
