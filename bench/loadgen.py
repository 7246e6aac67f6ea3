"""Load generators: wrk (closed loop, saturating) and an open-loop client at a fixed rate.

wrk cannot hold a rate, and wrk2 is not packaged for Debian, so the latency run at half the saturating rate
uses `open_loop`: a small asyncio HTTP/1.1 client (uvloop, keep-alive connections, no httpx) that starts
requests on a fixed schedule whatever the answers do. A request waits for a free connection when all are
busy, and that wait counts in its latency (measured from when the schedule released it), so a slow server
cannot hide its queueing (coordinated omission). The client's own timer lateness (≤ ~1 ms bursts) is not
counted against the server. Times are `time.perf_counter()`: uvloop's `loop.time()` has 1 ms resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).with_name("wrk_check.lua")
MARKER = "BENCH_JSON "


class LoadError(RuntimeError):
    pass


@dataclasses.dataclass
class LoadResult:
    """One load run. `errors` counts non-2xx answers and socket errors: a run with errors is no speed figure."""

    tool: str
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]
    target_rate: float | None = None
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    client_cpu_us_per_req: float | None = None  # open loop: the bench client's own CPU per request

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.requests > 0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rps"] = round(self.rps, 1)
        out["errors"] = self.errors
        out["ok"] = self.ok
        return out


def wrk_path() -> str | None:
    return shutil.which("wrk")


def ensure_wrk(install: bool = True) -> str:
    """The wrk binary; installed with apt-get (Debian package `wrk`) when absent and `install` is set."""
    found = wrk_path()
    if found:
        return found
    if not install:
        raise LoadError("wrk is not installed (apt-get install -y wrk)")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise LoadError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    found = wrk_path()
    if not found:
        raise LoadError("wrk still not found after apt-get install")
    return found


def parse_wrk_output(stdout: str) -> LoadResult:
    """The result from our Lua `done()` line (latencies in µs) plus wrk's own summary."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise LoadError(f"no {MARKER.strip()} line in wrk output: {stdout[-800:]!r}")
    data = json.loads(line[len(MARKER) :])
    errors = data["errors"]
    lat = data["latency_us"]
    return LoadResult(
        tool="wrk",
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        non_2xx=int(errors["status"]),
        socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
        latency_ms={k: round(float(lat[k]) / 1000, 3) for k in ("p50", "p90", "p99", "p999", "mean", "max")},
    )


def run_wrk(
    url: str,
    mode: str,
    file: Path,
    key: str,
    *,
    threads: int = 2,
    connections: int = 64,
    duration_s: float = 20,
    batch: int = 1000,
    timeout_s: float = 10,
    wrk: str = "wrk",
) -> LoadResult:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        mode,
        str(file),
        key,
        str(batch),
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish: {exc}") from None
    if done.returncode != 0:
        raise LoadError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
    return parse_wrk_output(done.stdout)


# --- open loop ---------------------------------------------------------------------------------------------


def raw_post(host: str, port: int, path: str, body: bytes, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one HTTP/1.1 response; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for h in lines[1:]:
        name, _, value = h.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get(b"transfer-encoding") == b"chunked":
        for _ in range(1_000_000):
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers.get(b"connection") != b"close"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank percentiles (ms) of latencies in seconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(p: float) -> float:
        rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered) - 1e-9)))
        return round(ordered[rank - 1] * 1000, 3)

    return {
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "p999": at(99.9),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration_s: float,
    connections: int = 32,
    timeout_s: float = 10,
) -> LoadResult:
    """Send `rate` requests per second for `duration_s` (cycling through `requests`) on keep-alive connections."""
    if rate <= 0 or not requests:
        raise LoadError("open_loop needs a positive rate and at least one request")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    socket_errors = 0

    async def worker() -> None:
        nonlocal socket_errors
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                released, payload = item
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
                    reader, writer = conn
                    writer.write(payload)
                    status, keep = await asyncio.wait_for(read_response(reader), timeout_s)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
                    socket_errors += 1
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    continue
                latencies.append(time.perf_counter() - released)
                statuses[str(status)] += 1
                if not keep:
                    conn[1].close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    total = max(1, int(rate * duration_s))
    start = loop.time() + 0.05
    for k in range(total):
        delay = start + k / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((time.perf_counter(), requests[k % len(requests)]))
    for _ in workers:
        queue.put_nowait(None)
    try:
        await asyncio.wait_for(asyncio.gather(*workers), timeout_s + 30)
    except TimeoutError:
        for task in workers:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*workers, return_exceptions=True)
    elapsed = loop.time() - start
    non_2xx = sum(n for s, n in statuses.items() if not s.startswith("2"))
    lost = total - sum(statuses.values()) - socket_errors
    return LoadResult(
        tool="open-loop",
        requests=sum(statuses.values()),
        duration_s=round(elapsed, 3),
        non_2xx=non_2xx,
        socket_errors=socket_errors + max(0, lost),
        latency_ms=percentiles(latencies),
        target_rate=rate,
        statuses=dict(statuses),
    )


def run_open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration_s: float,
    connections: int = 32,
) -> LoadResult:
    """`open_loop` in its own event loop (uvloop when installed)."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    cpu0 = time.process_time()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(
            open_loop(host, port, requests, rate=rate, duration_s=duration_s, connections=connections)
        )
    if result.requests:
        result.client_cpu_us_per_req = round((time.process_time() - cpu0) / result.requests * 1e6, 1)
    return result
