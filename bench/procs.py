"""Processes the benchmark starts, the tools it needs, and the CPU time they use.

Every process is started in its own session (so its own process group) and registered; leaving
the ``Processes`` context, normally or by an exception (Ctrl-C included), stops every group it
started: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_GRACE = 10.0
INSTALL_TIMEOUT = 900.0
DEBIAN_PACKAGES = {"nginx": "nginx", "wrk": "wrk"}


class BenchError(Exception):
    """A problem that ends the benchmark; its message is one line for the user."""


# -- tools -------------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """The path of ``name``, also where a non-root PATH lacks the sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools(names: Sequence[str]) -> dict[str, str]:
    """Paths of ``names``; installs the missing ones from Debian's packages with apt-get."""
    missing = [n for n in names if find_tool(n) is None]
    if missing:
        _apt_install(missing)
    paths: dict[str, str] = {}
    for name in names:
        path = find_tool(name)
        if path is None:
            raise BenchError(f"{name} is still missing after installing it; install it by hand")
        paths[name] = path
    return paths


def _apt_install(names: list[str]) -> None:
    unknown = [n for n in names if n not in DEBIAN_PACKAGES]
    if unknown:
        raise BenchError(f"{', '.join(unknown)} is missing: install util-linux, which has it")
    packages = [DEBIAN_PACKAGES[n] for n in names]
    missing = f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} missing"
    how = (
        f"install {' and '.join(packages)} with the system's package manager "
        f"(Debian, Ubuntu: sudo apt-get install {' '.join(packages)})"
    )
    if find_tool("apt-get") is None:
        raise BenchError(f"{missing} and apt-get is not available: {how}")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if find_tool("sudo") is None:
            raise BenchError(f"{missing} and installing needs root: {how}")
        prefix = ["sudo", "-n"]  # never prompt: a password is asked for by hand
    print(f"{missing}: installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [*prefix, "apt-get", "update", "-qq"],
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        try:
            done = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"'{' '.join(command)}' took too long: {how}") from None
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
            raise BenchError(f"'{' '.join(command)}' failed ({last[0]}): {how}")


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# -- processes ---------------------------------------------------------------------------------


class Process:
    """A started process: its ``Popen``, a name for messages, and where its output goes."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 5) -> str:
        """The last lines of its output, for error messages."""
        try:
            with self.log.open("rb") as log:  # the gateway's audit log can be large
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        """Return once ``port`` accepts connections; ``BenchError`` if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchError(f"{self.name} exited with {self.popen.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                socket.create_connection((LOOPBACK, port), timeout=0.5).close()
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not listen on port {port} within {timeout:.0f} s")


class Processes:
    """Starts processes in their own process groups and stops every one of them on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[Process] = []

    def start(
        self, name: str, command: Sequence[str], *, cpu: int | None, env: dict[str, str] | None
    ) -> Process:
        """Run ``command`` pinned to ``cpu`` (taskset), its output in a log file."""
        log = self.workdir / f"{name.replace(' ', '-')}.log"
        argv = [*(["taskset", "-c", str(cpu)] if cpu is not None else []), *command]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
                env=env,
            )
        process = Process(name, popen, log)
        self._started.append(process)
        return process

    def stop(self, process: Process) -> None:
        """SIGTERM to its process group, SIGKILL after ``STOP_GRACE`` seconds."""
        if process in self._started:
            self._started.remove(process)
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.popen.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass
        # Workers of a master that exited (or one that ignored SIGTERM) go too.
        _signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=STOP_GRACE)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A second Ctrl-C must not cut the clean-up short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._started:
                self.stop(self._started[-1])
        finally:
            signal.signal(signal.SIGINT, previous)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- CPU accounting ----------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_seconds(root: int) -> float:
    """utime+stime of ``root`` and every live descendant, plus what they reaped (cutime+cstime).

    Fields after the command name start at ``state`` (field 3): ppid is index 1, utime 11,
    stime 12, cutime 13, cstime 14 (proc(5)).
    """
    parents: dict[int, int] = {}
    fields: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            stat = _stat_fields(pid)
            if stat is not None:
                parents[pid] = int(stat[1])
                fields[pid] = stat
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    ticks = sum(sum(int(v) for v in fields[pid][11:15]) for pid in tree if pid in fields)
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class CoreTicks:
    """Clock ticks of one CPU since boot (/proc/stat): busy (steal excluded), stolen, all."""

    busy: int
    steal: int
    total: int


def core_ticks(cpus: Sequence[int]) -> dict[int, CoreTicks]:
    """``CoreTicks`` of each CPU in ``cpus``."""
    result: dict[int, CoreTicks] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user time)
        values = [int(v) for v in rest.split()[:8]] + [0] * 8
        idle = values[3] + values[4]
        steal = values[7]
        total = sum(values[:8])
        result[int(name[3:])] = CoreTicks(busy=total - idle - steal, steal=steal, total=total)
    return result
