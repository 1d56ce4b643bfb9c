"""Instructions (or a profile) per request of a served benchmark row, repeatable on a busy machine.

Wall-clock figures need a quiet machine; instruction counts do not. This script serves one row
of ``bench/run.py`` exactly as the benchmark does (``bench/apps.py``, same policy, same
credentials), with the server process under callgrind or cProfile, sends it a fixed number of
requests from this process, and reports what the server executed per request:

    python bench/serve_micro.py ROW [--requests 3000] [--warmup 300] [--connections 8]
                                    [--tool callgrind|cprofile]

- ``callgrind`` (valgrind, Debian package ``valgrind``): the counters are zeroed after the
  warm-up and dumped after the measured requests (``callgrind_control``), so start-up is not
  counted. Instructions per request, user space only: the kernel's share (system calls, TCP on
  loopback) is not in it, so a change that saves system calls shows up only in ``run.py``.
  Under callgrind a Python server runs about 50 times slower; a few thousand requests take a
  minute.
- ``cprofile``: the server runs under ``python -m cProfile``; the profile of the whole run
  (start-up included) is printed, sorted by own time, after a graceful stop.

ROW is one of ``run.py``'s rows other than ``nginx``. The upstream is the same nginx as in
``run.py``, unpinned. Requests go over ``--connections`` keep-alive connections, one in flight
on each; every answer must be the upstream's 200, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httptools
from nginx import UPSTREAM_BODY, nginx_command, upstream_config
from procs import LOOPBACK, BenchError, Processes, ensure_tools, find_tool, free_port
from run import BENCH, LOAD_PATH, SERVERS, prepare_row

_TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


class _Client:
    """One keep-alive connection sending GETs one at a time; counts the answers that are 200s."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.request = (
            f"GET {LOAD_PATH} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Accept: application/json\r\n{fields}\r\n"
        ).encode("latin-1")
        self.port = port
        self.body = bytearray()
        self.done = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True

    async def run(self, count: int) -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
        try:
            for _ in range(count):
                parser = httptools.HttpResponseParser(self)
                self.body.clear()
                self.done = False
                writer.write(self.request)
                while not self.done:
                    data = await reader.read(65536)
                    if not data:
                        raise BenchError("the server closed a connection")
                    parser.feed_data(data)
                status = parser.get_status_code()
                if status != 200 or self.body.decode() != UPSTREAM_BODY:
                    raise BenchError(f"answer {status} {bytes(self.body[:160])!r}")
        finally:
            writer.close()


async def _load(port: int, headers: dict[str, str], total: int, connections: int) -> None:
    share, extra = divmod(total, connections)
    clients = [_Client(port, headers) for _ in range(connections)]
    await asyncio.gather(*(c.run(share + (i < extra)) for i, c in enumerate(clients)))


def _callgrind(pid: int, action: str) -> None:
    done = subprocess.run(
        ["callgrind_control", action, str(pid)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"callgrind_control {action} failed: {done.stderr.strip()}")


def serve_profiled(profile: str, factory: str, policy_file: str) -> int:
    """Serve like ``apps.py`` under cProfile (``python -m cProfile`` would take ``__main__``)."""
    import cProfile

    from apishield.server.serve import serve_policy

    # CPU time, not wall time: on a busy machine wall time charges other processes' turns to
    # whichever function was running when the scheduler switched.
    profiler = cProfile.Profile(time.process_time)
    try:
        return profiler.runcall(serve_policy, Path(policy_file), app_factory=f"apps:{factory}")
    finally:
        profiler.dump_stats(profile)


def main(argv: list[str] | None = None) -> int:
    rows = [s.key for s in SERVERS if s.key != "nginx"]
    parser = argparse.ArgumentParser(prog="bench/serve_micro.py", description=__doc__)
    parser.add_argument("row", choices=rows)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--tool", choices=("callgrind", "cprofile"), default="callgrind")
    parser.add_argument("--top", type=int, default=40, help="cProfile: functions to print")
    parser.add_argument("--save", type=Path, help="cProfile: keep the profile in this file")
    args = parser.parse_args(argv)
    tools = ensure_tools(["nginx"])
    if args.tool == "callgrind" and find_tool("valgrind") is None:
        print("bench: valgrind is missing (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    server = next(s for s in SERVERS if s.key == args.row)
    with tempfile.TemporaryDirectory(prefix="apishield-micro-") as tmp, Processes(
        Path(tmp)
    ) as procs:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # noqa: S103 - nginx workers (user nobody) read inside
        upstream_port = free_port()
        upstream = procs.start(
            "upstream",
            nginx_command(tools["nginx"], upstream_config(workdir, upstream_port), workdir),
            cpu=None,
            env=None,
        )
        upstream.wait_listening(upstream_port)
        port = free_port()
        _, headers = prepare_row(server, port, upstream_port, workdir)
        apps = [str(BENCH / "apps.py"), server.factory, str(workdir / f"{server.key}.yaml")]
        out = workdir / "callgrind.out"
        profile = workdir / "profile.out"
        if args.tool == "callgrind":
            command = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                *apps,
            ]
        else:
            command = [sys.executable, __file__, "--serve-profiled", str(profile), *apps[1:]]
        process = procs.start(server.label, command, cpu=None, env=None)
        try:
            process.wait_listening(port, timeout=600)
        except BenchError:
            print(process.log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        try:
            # One request alone first, as run.py's check does: it fetches the JWK set.
            asyncio.run(_load(port, headers, 1, 1))
            asyncio.run(_load(port, headers, args.warmup, args.connections))
        except BenchError:
            print(process.log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        if args.tool == "callgrind":
            _callgrind(process.pid, "--zero")
        started = time.monotonic()
        asyncio.run(_load(port, headers, args.requests, args.connections))
        wall = time.monotonic() - started
        if args.tool == "callgrind":
            dumps = set(workdir.glob("callgrind.out*"))
            _callgrind(process.pid, "--dump")
            new = sorted(set(workdir.glob("callgrind.out*")) - dumps)
            if not new:
                raise BenchError("callgrind wrote no dump")
            totals = _TOTALS.search(new[-1].read_text(errors="replace"))
            if totals is None:
                raise BenchError("no totals in the callgrind dump")
            per_request = int(totals[1]) / args.requests
            print(
                f"{server.label}: {per_request:,.0f} instructions per request "
                f"({args.requests} requests over {args.connections} connections, "
                f"{wall:.1f} s under callgrind)"
            )
        procs.stop(process)
        if args.tool == "cprofile":
            import pstats

            if not profile.exists():
                raise BenchError(f"no profile written: {process.tail()}")
            if args.save is not None:
                args.save.write_bytes(profile.read_bytes())
            stats = pstats.Stats(str(profile))
            stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-profiled"] and len(sys.argv) == 5:
        raise SystemExit(serve_profiled(*sys.argv[2:]))
    try:
        raise SystemExit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
