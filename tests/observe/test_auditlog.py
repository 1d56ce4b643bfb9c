"""The direct audit writer: every event written once, in order, or spilled and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apishield.observe.auditlog import SPILL_NAME, AuditLog, install_audit_log


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


def drain(fd: int) -> list[dict[str, object]]:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    os.set_blocking(fd, True)
    return [json.loads(line) for line in data.decode().splitlines() if line]


def fill(fd: int) -> None:
    """Fill the pipe so that its reader looks stalled."""
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(fd, b"\n" * 65536)
    os.set_blocking(fd, True)


def event(n: int) -> str:
    return json.dumps({"event": "request", "n": n}, separators=(",", ":"))


def alerts(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.alerts"]


async def test_events_of_one_loop_turn_arrive_in_order(
    pipe: tuple[int, int], tmp_path: Path
) -> None:
    read, write = pipe
    log = AuditLog(write, spill_dir=tmp_path)
    for n in range(300):
        log.write(event(n))
    await asyncio.sleep(0)  # the turn ends
    assert [e["n"] for e in drain(read)] == list(range(300))
    assert (log.written, log.spilled, log.lost) == (300, 0, 0)
    assert not (tmp_path / SPILL_NAME).exists()


def test_without_an_event_loop_each_event_is_written_at_once(pipe: tuple[int, int]) -> None:
    read, write = pipe
    log = AuditLog(write)
    log.write(event(1))
    assert drain(read) == [{"event": "request", "n": 1}]


WRITER = """
import asyncio, json, sys
from apishield.observe.auditlog import AuditLog

async def main() -> None:
    log = AuditLog(int(sys.argv[1]), max_batch=1 << 20)
    for turn in range(40):
        for n in range(50):
            log.write(json.dumps({"w": sys.argv[2], "n": turn * 50 + n, "pad": "x" * 900}))
        await asyncio.sleep(0)
    log.close()

asyncio.run(main())
"""


def test_workers_sharing_a_pipe_never_interleave_inside_a_line(pipe: tuple[int, int]) -> None:
    # `serve --workers N`: several processes write batches far over PIPE_BUF to one stderr.
    read, write = pipe
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(write), name], pass_fds=(write,))
        for name in ("a", "b")
    ]
    os.close(write)
    with os.fdopen(read, "rb", closefd=False) as reader:
        lines = reader.read().splitlines()
    for writer in writers:
        assert writer.wait(60) == 0
    events = [json.loads(line) for line in lines]
    for name in ("a", "b"):
        assert [e["n"] for e in events if e["w"] == name] == list(range(2000))


async def test_a_lagging_reader_gets_the_held_events_in_order_once_it_catches_up(
    pipe: tuple[int, int], tmp_path: Path
) -> None:
    read, write = pipe
    log = AuditLog(write, spill_dir=tmp_path)
    fill(write)
    for n in range(3):
        log.write(event(n))
        await asyncio.sleep(0)
    assert log.written == 0  # held, not spilled: the reader only lags
    drain(read)
    log.write(event(3))
    await asyncio.sleep(0)
    assert [e["n"] for e in drain(read)] == [0, 1, 2, 3]
    assert (log.written, log.spilled, log.lost) == (4, 0, 0)
    assert not (tmp_path / SPILL_NAME).exists()


async def test_a_stalled_reader_sends_events_to_the_spill_file_and_alerts_once(
    pipe: tuple[int, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    read, write = pipe
    log = AuditLog(write, spill_dir=tmp_path, max_pending=100)
    fill(write)
    caplog.set_level(logging.INFO, logger="apishield.alerts")
    for n in range(6):
        log.write(event(n))
        await asyncio.sleep(0)
    log.close(wait=0)  # whatever is still held at the end is spilled
    spill = tmp_path / SPILL_NAME
    assert [json.loads(line)["n"] for line in spill.read_text().splitlines()] == list(range(6))
    assert spill.stat().st_mode & 0o777 == 0o600
    assert (log.written, log.spilled, log.lost) == (0, 6, 0)
    assert [a["event"] for a in alerts(caplog)] == ["audit_sink_failed"]
    assert alerts(caplog)[0]["reason"] == "sink_blocked"

    drain(read)  # the reader is back
    log.write(event(6))
    await asyncio.sleep(0)
    assert drain(read) == [{"event": "request", "n": 6}]
    assert (log.written, log.spilled) == (1, 6)
    recovered = alerts(caplog)[-1]
    assert recovered["event"] == "audit_sink_recovered" and recovered["spilled"] == 6


def test_a_broken_sink_spills(pipe: tuple[int, int], tmp_path: Path) -> None:
    read, write = pipe
    os.close(read)  # nobody will ever read: writes fail with EPIPE
    log = AuditLog(write, spill_dir=tmp_path)
    log.write(event(7))
    assert json.loads((tmp_path / SPILL_NAME).read_text()) == {"event": "request", "n": 7}
    assert (log.spilled, log.lost) == (1, 0)


def test_events_that_cannot_be_spilled_either_are_counted_and_alerted(
    pipe: tuple[int, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    read, write = pipe
    os.close(read)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    log = AuditLog(write, spill_dir=not_a_dir)
    caplog.set_level(logging.INFO, logger="apishield.alerts")
    log.write(event(1))
    log.write(event(2))
    assert (log.written, log.spilled, log.lost) == (0, 0, 2)
    lost = [a for a in alerts(caplog) if a["event"] == "audit_events_lost"]
    assert [a["lost"] for a in lost] == [1, 2]


async def test_install_flushes_the_writer_it_replaces(pipe: tuple[int, int]) -> None:
    read, write = pipe
    log = AuditLog(write)
    previous = install_audit_log(log)
    try:
        log.write(event(1))
        install_audit_log(None)  # before the loop turn ends
        assert drain(read) == [{"event": "request", "n": 1}]
    finally:
        install_audit_log(previous)
