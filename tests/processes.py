"""Gateway processes for the tests that need more than one instance on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def gateway_processes(
    module: str, envs: Sequence[Mapping[str, str]], directory: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``python -m module`` once per entry of ``envs`` (added to the environment, with
    ``APISHIELD_TEST_PORT_FILE`` set), wait until each has written its port, and stop them
    all with SIGTERM on exit. Process ``i`` logs to ``directory/gateway{i}.log``; its port is
    in ``directory/port{i}``."""
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, extra in enumerate(envs):
            log = (directory / f"gateway{i}.log").open("wb")
            logs.append(log)
            env = {**os.environ, **extra, "APISHIELD_TEST_PORT_FILE": str(directory / f"port{i}")}
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", module],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60  # only stops a broken start from hanging the suite
        for i, process in enumerate(processes):
            while not (directory / f"port{i}").exists():
                assert process.poll() is None, (directory / f"gateway{i}.log").read_text()
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.05)
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for log in logs:
            log.close()


def ports_of(directory: Path, count: int) -> list[int]:
    """The ports the ``count`` processes of ``gateway_processes`` listen on."""
    return [int((directory / f"port{i}").read_text()) for i in range(count)]
