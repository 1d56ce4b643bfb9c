"""The audit stream of ``apishield serve``: JSON lines written straight to a file descriptor.

Measured under uvicorn (cProfile, CPU time): passing each audit line through ``logging`` (a
``LogRecord``, the handler's lock, a formatter, a ``write`` and a ``flush`` system call per
request) was the largest single cost of the audit stage. :class:`AuditLog` instead keeps the
lines of one event-loop turn and writes them with one ``os.write`` when the turn ends (or
once ``max_batch`` bytes are waiting), so a loaded gateway makes one system call for many
requests.

DESIGN: audit events are never dropped silently, and the gateway does not wait on its log:

- to a pipe or socket (a log shipper), each write is preceded by a poll; while the reader
  lags, lines are held in memory, in order, and retried at the next loop turn or after
  ``RETRY`` seconds, up to ``max_pending`` bytes;
- past that bound, or when a write fails (a closed pipe, a full disk), the held lines go to
  the **spill file** (``audit-spill.jsonl`` in the state dir, mode 0600) instead; every
  spilled event is counted (``spilled``), the first of an episode raises one alert on
  ``apishield.alerts`` and the first good write after it a second one with the count;
- only when the spill file fails too are events lost: counted (``lost``) and alerted, never
  silently discarded.

``flush`` runs at the end of every loop turn that wrote an event, when a graceful shutdown
ends (``GatewayServer.serve``) and at interpreter exit, so the events of the last requests
before SIGTERM are in the output. (The alerts themselves go through ``logging``, like every
other operator message.)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import select
import stat
import time
from pathlib import Path
from typing import Final

alerts = logging.getLogger("apishield.alerts")

SPILL_NAME: Final = "audit-spill.jsonl"
#: Bytes of audit lines held before a write even within one loop turn.
MAX_BATCH: Final = 64 * 1024
#: Bytes held while a pipe's reader lags, before they go to the spill file: at 20k requests
#: per second (~200 bytes each) about a second of a stalled log shipper.
MAX_PENDING: Final = 4 * 1024 * 1024
#: Seconds between retries while lines are held and no new event triggers one.
RETRY: Final = 0.05
#: Seconds a graceful stop waits for a lagging reader before spilling what is still held.
CLOSE_WAIT: Final = 5.0


class AuditLog:
    """Writes audit lines (JSON, one per event) to ``fd``, batched per event-loop turn.

    ``spill_dir``: where events go when ``fd`` cannot take them (see the module's docstring);
    ``None`` until known (``set_spill_dir``), in which case such events are counted as lost.
    Not thread-safe: one instance per event loop, which is how ``apishield serve`` runs.
    """

    def __init__(
        self,
        fd: int,
        *,
        spill_dir: Path | None = None,
        max_batch: int = MAX_BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.fd = fd
        self.spill_dir = spill_dir
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.written = 0
        self.spilled = 0
        self.lost = 0
        self._lines: list[str] = []
        self._size = 0
        self._pending = bytearray()
        self._scheduled = False
        self._retry: asyncio.TimerHandle | None = None
        self._degraded = False
        self._spill: int | None = None
        mode = os.fstat(fd).st_mode
        # A pipe or socket can be full (its reader lags): poll before writing, so that the
        # gateway never blocks on it. And workers of `serve --workers N` share one standard
        # error: a write there is atomic only up to PIPE_BUF bytes (POSIX), so a batch goes in
        # whole lines of at most that much, and two workers' lines never interleave. A regular
        # file or a terminal takes a batch in one write.
        self._poll: select.poll | None = None
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            self._poll = select.poll()
            self._poll.register(fd, select.POLLOUT)
            self._piece = select.PIPE_BUF
        else:
            self._piece = max(max_batch, 1)

    def write(self, line: str) -> None:
        """Queue one event (a JSON object without its line break); written this loop turn."""
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.max_batch:
            self.flush()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no loop (a command, a test): nothing to batch with
                return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued event now, as far as the sink takes them (see the module)."""
        self._take_lines()
        if self._pending:
            self._drain()

    def _take_lines(self) -> None:
        self._scheduled = False
        lines = self._lines
        if lines:
            lines.append("")  # the final line break
            self._pending += "\n".join(lines).encode("utf-8")
            lines.clear()
            self._size = 0

    def set_spill_dir(self, path: Path) -> None:
        """Where later spills go (the policy's state dir, known once the policy is loaded)."""
        if path != self.spill_dir:
            self._close_spill()
            self.spill_dir = path

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Write everything held, waiting up to ``wait`` seconds for a lagging reader; spill
        what is left; close the spill file (not ``fd``: it is the caller's)."""
        self._take_lines()
        self._drain(closing=True)
        deadline = time.monotonic() + wait
        while self._pending and self._poll is not None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                self._poll.poll(50)
            self._drain(closing=True)
        if self._pending:
            self._divert("sink_blocked")  # nothing later will retry
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._close_spill()

    def _drain(self, *, closing: bool = False) -> None:
        pending = self._pending
        fd = self.fd
        while pending:
            if self._poll is not None:
                try:
                    ready = self._poll.poll(0)
                except OSError:
                    self._divert("sink_error")
                    return
                if not ready:
                    break  # the reader lags: hold on
                if not ready[0][1] & select.POLLOUT:
                    self._divert("sink_error")  # POLLERR, POLLHUP: no reader any more
                    return
            end = len(pending)
            if end > self._piece:
                end = pending.rfind(b"\n", 0, self._piece) + 1 or pending.find(b"\n") + 1
            try:
                done = 0
                with memoryview(pending) as view:
                    while done < end:
                        done += os.write(fd, view[done:end])
            except BlockingIOError:
                # Someone made the descriptor non-blocking: keep the rest for the next try.
                self.written += pending.count(b"\n", 0, done)
                del pending[:done]
                break
            except OSError:
                # A line cut by the failure is spilled whole; the sink may hold its first part.
                start = pending.rfind(b"\n", 0, done) + 1
                self.written += pending.count(b"\n", 0, start)
                del pending[:start]
                self._divert("sink_error")
                return
            self.written += pending.count(b"\n", 0, end)
            del pending[:end]
        if not pending:
            if self._degraded:
                self._degraded = False
                self._alert(logging.INFO, "audit_sink_recovered", spilled=self.spilled)
            return
        if closing:
            return  # `close` waits, then spills
        if len(pending) > self.max_pending:
            self._divert("sink_blocked")
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._divert("sink_blocked")  # no loop to retry on
            return
        if self._retry is None or self._retry.when() <= loop.time():  # none waiting yet
            self._retry = loop.call_later(RETRY, self.flush)

    def _divert(self, reason: str) -> None:
        """Move everything held to the spill file (counted), or count it lost."""
        data = bytes(self._pending)
        self._pending.clear()
        count = data.count(b"\n")
        if not self._degraded:
            self._degraded = True
            spill = None if self.spill_dir is None else str(self.spill_dir / SPILL_NAME)
            self._alert(logging.ERROR, "audit_sink_failed", reason=reason, spill=spill)
        try:
            fd = self._spill_fd()
            with memoryview(data) as view:
                done = 0
                while done < len(data):
                    done += os.write(fd, view[done:])
        except OSError:
            self.lost += count
            self._alert(logging.CRITICAL, "audit_events_lost", count=count, lost=self.lost)
            return
        self.spilled += count

    def _spill_fd(self) -> int:
        if self._spill is None:
            if self.spill_dir is None:
                raise OSError("no spill directory")
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self._spill = os.open(
                self.spill_dir / SPILL_NAME,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                0o600,  # audit events name clients and routes: the operator's eyes only
            )
        return self._spill

    def _close_spill(self) -> None:
        if self._spill is not None:
            with contextlib.suppress(OSError):
                os.close(self._spill)
            self._spill = None

    def _alert(self, level: int, event: str, **fields: object) -> None:
        payload = {"event": event, **fields, "written": self.written}
        alerts.log(level, "%s", json.dumps(payload, separators=(",", ":")))


_current: AuditLog | None = None


def current_audit_log() -> AuditLog | None:
    """The process's direct audit writer, if ``install_audit_log`` set one."""
    return _current


def install_audit_log(log: AuditLog | None) -> AuditLog | None:
    """Make ``log`` the audit stage's sink (``None``: the ``apishield.audit`` logger again).

    Returns the previous one, which is flushed first so that nothing it holds is left behind.
    """
    global _current
    previous = _current
    if previous is not None and previous is not log:
        previous.flush()
    _current = log
    return previous


def flush_audit_log() -> None:
    """Write what the installed audit writer holds, or spill it (graceful shutdown, exit).

    The writer stays installed and usable: a later event is written as usual.
    """
    if _current is not None:
        _current.close()


def set_spill_dir(path: Path) -> None:
    """Send the installed writer's spills to ``path`` (the policy's state dir)."""
    if _current is not None:
        _current.set_spill_dir(path)


atexit.register(flush_audit_log)
