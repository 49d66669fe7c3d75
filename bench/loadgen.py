"""A small HTTP/1.1 load generator on asyncio streams: keep-alive connections, fixed rate or flat out.

Raw sockets rather than an HTTP library because the generator shares the machine's cores with the
server under test; the less CPU it spends per request, the less it distorts what it measures.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Run:
    """What one load run saw: per-request latencies (ms), status codes, errors and its duration."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        """Percentiles and rates, ready for JSON."""
        ordered = sorted(self.latencies)
        done = len(ordered)
        return {
            "requests": done,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(done / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": _pct(ordered, 50),
            "p95_ms": _pct(ordered, 95),
            "p99_ms": _pct(ordered, 99),
            "max_ms": round(ordered[-1], 2) if ordered else None,
            "mean_ms": round(statistics.fmean(ordered), 2) if ordered else None,
        }


def _pct(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))  # nearest-rank
    return round(ordered[rank], 2)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        """Send a complete request and read the whole response; return its status code."""
        self.writer.write(request)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked = 0, False
        while (header := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                self.reusable = False
        if chunked:
            while (size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        elif length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle connections to one server, opened on demand."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def send(self, request: bytes) -> int:
        """Send on an idle connection (or a new one); a connection the server closed is replaced once."""
        for attempt in range(2):
            conn = self.idle.pop() if self.idle else await Connection.open(self.host, self.port)
            try:
                status = await conn.send(request)
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()
                if attempt:
                    raise
                continue
            if conn.reusable:
                self.idle.append(conn)
            else:
                conn.close()
            return status
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def fixed_rate(host: str, port: int, make: Callable[[], bytes], rate: float, seconds: float) -> Run:
    """Open-loop load: request i is due at start + i/rate whatever the earlier ones are doing.

    Latency runs from the moment a request was due, so a server (or client) that falls behind is
    charged for the wait instead of quietly sending less.
    """
    loop = asyncio.get_running_loop()
    pool, run = Pool(host, port), Run()
    total = int(rate * seconds)
    requests = [make() for _ in range(total)]  # built before the clock starts

    async def one(due: float, request: bytes) -> None:
        try:
            run.statuses[await pool.send(request)] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            run.errors[type(err).__name__] += 1
            return
        run.latencies.append((loop.time() - due) * 1000)

    start = loop.time() + 0.05
    tasks = []
    for i, request in enumerate(requests):
        due = start + i / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, request)))
    await asyncio.gather(*tasks)
    run.seconds = loop.time() - start
    pool.close()
    return run


async def flat_out(host: str, port: int, make: Callable[[], bytes], concurrency: int, seconds: float) -> Run:
    """Closed-loop load: `concurrency` connections each send the next request as soon as one returns."""
    loop = asyncio.get_running_loop()
    run = Run()
    stop_at = loop.time() + seconds

    async def client() -> None:
        pool = Pool(host, port)
        while loop.time() < stop_at:
            request = make()
            sent = loop.time()
            try:
                run.statuses[await pool.send(request)] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                run.errors[type(err).__name__] += 1
                continue
            run.latencies.append((loop.time() - sent) * 1000)
        pool.close()

    start = loop.time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    run.seconds = loop.time() - start
    return run
