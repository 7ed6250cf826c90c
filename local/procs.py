"""Child processes for the local stack: ports, start, readiness, shutdown.

Every child runs in its own session (so its own process group): a terminal's
Ctrl-C reaches only the parent, which then stops the children in order, and a
whole group — a wrapper script and the JVM it forks, gunicorn and its worker —
is signalled at once. Stopping is SIGTERM → wait → SIGKILL per group.

A watchdog process (`python -m local.procs watchdog`) covers the case where
the parent dies without stopping anything (SIGKILL, a crashed interpreter):
the parent writes each group id to the watchdog's stdin, and when that pipe
reaches end-of-file the watchdog kills every group it was told about.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[1]


class StartError(RuntimeError):
    """A component did not become ready."""


def serve_until_interrupted(server: socketserver.BaseServer) -> int:
    """Serve until Ctrl-C (or the stack's SIGTERM handling) stops it; exit code 0."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports that are free right now: all sockets are held until every port is
    picked, so the same port is never handed out twice in one call."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0, method: str = "GET") -> int | None:
    """The HTTP status a URL answers with, or None when nothing answers."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return None


def python_for_tools() -> str:
    """The interpreter for the stack's own helper processes (bridge, issuer)."""
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# --- process-group inspection (Linux /proc, with a portable fallback) -------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a pid from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        st = _proc_stat(int(entry.name))
        if st and st[2] == pgid and st[0] != "Z":
            members.append(int(entry.name))
    return members


def descendants(pid: int) -> list[int]:
    """All live descendants of a process (Linux only; [] elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st and st[0] != "Z":
                children.setdefault(st[1], []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- one managed child --------------------------------------------------------


class Proc:
    """One child process in its own process group, output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self, append: bool = False) -> None:
        """append: a restart keeps the log of the run before it (the storage
        server's access lines are counted over the whole run)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab" if append else "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def group_alive(self) -> bool:
        return self.popen is not None and bool(group_members(self.popen.pid))

    def signal(self, sig: int) -> None:
        if self.popen is not None:
            _signal_group(self.popen.pid, sig)

    def reap(self, timeout: float) -> bool:
        """Wait for the leader and the rest of its group; True when all gone."""
        if self.popen is None:
            return True
        deadline = time.monotonic() + max(timeout, 0.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=max(deadline - time.monotonic(), 0.0))
        while self.group_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return self.popen.poll() is not None

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(procs: Iterable[Proc], grace_s: float = 5.0, kill_wait_s: float = 3.0) -> list[str]:
    """SIGTERM every group, wait up to grace_s in total, SIGKILL what is left.

    Returns the names of processes that had to be killed.
    """
    procs = [p for p in procs if p.popen is not None]
    for p in procs:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    killed = []
    for p in procs:
        if not p.reap(deadline - time.monotonic()):
            killed.append(p.name)
            p.signal(signal.SIGKILL)
    for p in procs:
        if p.name in killed:
            p.reap(kill_wait_s)
        p.close_log()
    return killed


# --- readiness ------------------------------------------------------------------


def wait_until(
    proc: Proc,
    ready: Callable[[], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> float:
    """Poll `ready` until true; fail early if the process exits. Returns the
    time waited (from the call)."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while True:
        if ready():
            return time.monotonic() - t0
        if not proc.running():
            code = proc.popen.returncode if proc.popen else None
            raise StartError(
                f"{proc.name} exited (code {code}) before {what}; log {proc.log_path}:\n" + proc.log_tail()
            )
        if time.monotonic() >= deadline:
            raise StartError(
                f"{proc.name} not ready after {timeout_s:.0f} s ({what}); log {proc.log_path}:\n"
                + proc.log_tail()
            )
        time.sleep(interval_s)
        interval_s = min(interval_s * 1.3, 0.25)


def log_contains(proc: Proc, needle: str) -> Callable[[], bool]:
    return lambda: needle in proc.log_text()


def http_answers(url: str, ok_only: bool = False) -> Callable[[], bool]:
    def check() -> bool:
        status = http_status(url, timeout=1.0)
        if status is None:
            return False
        return 200 <= status < 300 if ok_only else True

    return check


# --- watchdog -----------------------------------------------------------------


class Watchdog:
    """Kills registered process groups if this process dies without stopping them."""

    def __init__(self, log_path: Path) -> None:
        self._lock = threading.Lock()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "local.procs", "watchdog", "--parent", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )

    def register(self, pgid: int) -> None:
        with self._lock:
            if self.popen.stdin and not self.popen.stdin.closed:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    self.popen.stdin.write(f"{pgid}\n".encode())
                    self.popen.stdin.flush()

    def close(self, timeout: float = 3.0) -> None:
        """Normal shutdown: the groups are already stopped; let the watchdog go."""
        with self._lock:
            if self.popen.stdin and not self.popen.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    self.popen.stdin.close()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)
        self._log.close()


def _watchdog_main(parent: int) -> int:
    groups: list[int] = []
    for line in sys.stdin:
        line = line.strip()
        if line.isdigit():
            groups.append(int(line))
    # End of input: the parent closed the pipe (normal stop) or died.
    alive = [g for g in groups if group_members(g)]
    if alive:
        print(f"watchdog: parent {parent} gone, stopping groups {alive}", flush=True)
        for g in alive:
            _signal_group(g, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(group_members(g) for g in alive):
            time.sleep(0.1)
        for g in alive:
            if group_members(g):
                _signal_group(g, signal.SIGKILL)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.procs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    wd = sub.add_parser("watchdog", help="kill the groups read from stdin once stdin closes")
    wd.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _watchdog_main(args.parent)


if __name__ == "__main__":
    sys.exit(main())
