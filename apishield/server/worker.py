"""One worker of ``apishield serve --workers N`` (run as ``python -m apishield.server.worker``).

Started only by ``apishield.server.workers``: it serves on the listening sockets it inherited
(file descriptors named on the command line) and stops on SIGTERM, or by itself when the
parent process that started it is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

from apishield.errors import ConfigError, PolicyError
from apishield.observe.auditlog import set_spill_dir
from apishield.policy.load import load_policy
from apishield.server.serve import (
    GatewayServer,
    StartupError,
    configure_logging,
    load_app_factory,
    logger,
    run_async,
)

_PARENT_CHECK = 1.0  # seconds between checks that the parent is still there


def _fds(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


async def _serve(server: GatewayServer, parent_pid: int) -> None:
    async def watch_parent() -> None:
        while True:
            await asyncio.sleep(_PARENT_CHECK)
            if os.getppid() != parent_pid:  # re-parented: our parent died
                break
        logger.warning("apishield worker %d: the parent process is gone; stopping", os.getpid())
        server.should_exit = True

    watcher = asyncio.create_task(watch_parent())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def main(argv: list[str] | None = None) -> int:
    """Serve as one worker; the exit code follows ``serve_policy``'s (0, 1 or 2)."""
    parser = argparse.ArgumentParser(prog="apishield-worker")
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--listen-fds", type=_fds, required=True)
    parser.add_argument("--redirect-fds", type=_fds, default=[])
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--app-factory", required=True)
    parser.add_argument("--graceful-timeout", type=float, required=True)
    args = parser.parse_args(argv)
    configure_logging()
    main_sockets = [socket.socket(fileno=fd) for fd in args.listen_fds]
    redirect_sockets = [socket.socket(fileno=fd) for fd in args.redirect_fds]
    try:
        policy = load_policy(args.policy)
        set_spill_dir(policy.state.dir)
        app = load_app_factory(args.app_factory)(policy)
        server = GatewayServer(
            policy,
            app,
            sockets=main_sockets,
            redirect_sockets=redirect_sockets,
            graceful_timeout=args.graceful_timeout,
            announce=False,  # the parent announced once for all workers
        )
        run_async(_serve(server, args.parent_pid))
    # One write per line: print() writes the text and its newline separately to a piped
    # stderr, so two workers failing at once would interleave mid-line.
    except (PolicyError, ConfigError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except StartupError as exc:
        sys.stderr.write(f"apishield worker {os.getpid()}: {exc}\n")
        return 1
    finally:
        for sock in (*main_sockets, *redirect_sockets):
            sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
