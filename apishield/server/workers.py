"""``apishield serve --workers N``: N processes accepting on the same listening sockets.

The parent validates the policy and TLS files, binds the sockets once, and starts N fresh
interpreters (``python -m apishield.server.worker``) that inherit only those sockets. Each worker
loads the policy, builds its own gateway (pools and caches are per process) and serves with
apishield's ``SSLContext`` on the inherited sockets; the kernel spreads connections between
them. Fresh interpreters rather than ``fork()``: nothing of the parent's state (threads, locks,
an OpenSSL or event-loop state) is copied half-way.

Stopping: SIGTERM or SIGINT to the parent is forwarded as SIGTERM to every worker, which stops
accepting and finishes its requests in flight; a second signal makes them stop at once; workers
still running after the graceful timeout are killed. Workers live in their own process group
(a terminal's Ctrl+C reaches the parent only, which keeps the stop orderly) and exit by
themselves when the parent disappears, so a killed parent leaves no orphans serving traffic.
A worker that exits on its own stops the whole server (exit 1, or 2 for a configuration
problem): a process manager restarting everything is easier to reason about than a gateway
quietly running with fewer workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from apishield.errors import ConfigError
from apishield.policy.models import Policy
from apishield.server.serve import GRACEFUL_TIMEOUT, announce, bind_listener, logger, resolve_tls

_POLL = 0.1
_KILL_GRACE = 5.0  # beyond the graceful timeout, before a stuck worker is killed


def run_workers(
    policy_path: Path,
    policy: Policy,
    *,
    workers: int,
    app_factory: str,
    graceful_timeout: float = GRACEFUL_TIMEOUT,
) -> int:
    """Run ``workers`` gateway processes for ``policy`` until a signal; return the exit code.

    Trust assumption: the policy file is not swapped between the parent's and the workers'
    reads (both read the same path within a second at start-up).
    """
    if os.name != "posix":
        print("apishield: --workers needs a POSIX system", file=sys.stderr)
        return 2
    try:
        tls = resolve_tls(policy)  # fails once here, not once per worker; creates dev certs
        main = bind_listener(policy.listen.address, inheritable=True)
        try:
            redirect = (
                bind_listener(policy.listen.redirect_http, inheritable=True)
                if policy.listen.redirect_http
                else []
            )
        except ConfigError:
            for sock in main:
                sock.close()
            raise
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2

    signals: list[int] = []
    processes: list[subprocess.Popen[bytes]] = []
    failed: subprocess.Popen[bytes] | None = None
    with _collect_signals(signals):
        try:
            try:
                fds = tuple(s.fileno() for s in (*main, *redirect))
                command = _worker_command(
                    policy_path, main, redirect, app_factory, graceful_timeout
                )
                for _ in range(workers):
                    processes.append(
                        subprocess.Popen(command, pass_fds=fds, process_group=0)  # noqa: S603
                    )
                announce(policy, tls, main, redirect)
                logger.info("apishield started %d workers: %s", workers, [p.pid for p in processes])
            finally:
                # The workers hold their own copies; the parent never accepts.
                for sock in (*main, *redirect):
                    sock.close()
            failed = _wait_for_stop(processes, signals)
        finally:
            _stop(processes, signals, graceful_timeout)
    if failed is not None:
        code = failed.returncode
        logger.error("apishield worker %d exited with %s; stopped the others", failed.pid, code)
        return 2 if code == 2 else 1
    return 0


def _worker_command(
    policy_path: Path,
    main: list[socket.socket],
    redirect: list[socket.socket],
    app_factory: str,
    graceful_timeout: float,
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "apishield.server.worker",
        "--policy",
        str(policy_path.resolve()),
        "--listen-fds",
        ",".join(str(s.fileno()) for s in main),
        "--redirect-fds",
        ",".join(str(s.fileno()) for s in redirect),
        "--parent-pid",
        str(os.getpid()),
        "--app-factory",
        app_factory,
        "--graceful-timeout",
        str(graceful_timeout),
    ]


@contextlib.contextmanager
def _collect_signals(signals: list[int]) -> Iterator[None]:
    def record(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, record) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for_stop(
    processes: list[subprocess.Popen[bytes]], signals: list[int]
) -> subprocess.Popen[bytes] | None:
    """Block until a stop signal (None) or until a worker exits by itself (that worker)."""
    while not signals:
        for process in processes:
            if process.poll() is not None:
                return process
        time.sleep(_POLL)
    return None


def _stop(processes: list[subprocess.Popen[bytes]], signals: list[int], timeout: float) -> None:
    seen = len(signals)
    _signal_all(processes, signal.SIGTERM)
    deadline = time.monotonic() + timeout + _KILL_GRACE
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if len(signals) > seen:  # asked again: the workers stop without waiting
            seen = len(signals)
            _signal_all(processes, signal.SIGTERM)
        time.sleep(_POLL)
    for process in processes:
        if process.poll() is None:
            logger.error("apishield worker %d did not stop in time; killing it", process.pid)
            process.kill()
        process.wait()


def _signal_all(processes: list[subprocess.Popen[bytes]], sig: int) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
