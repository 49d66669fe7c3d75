"""Latency and throughput of `POST /webhooks` under gunicorn, against a bare Flask app served the same way.

Run: `.venv/bin/python bench/webhook_bench.py [--rate 200] [--seconds 10] [--flat-seconds 5]`.

Both apps run under the Procfile's command (`gunicorn --workers 2 --threads 8`), one after the
other, on a Redis from `devstack.localredis.ensure(REDIS_URL)` and a throw-away CLARITY_NAMESPACE
whose keys (and RQ jobs) are deleted at the end. For each app: a warm-up second, then open-loop load
at a fixed rate (latency p50/p95/p99 from the moment each request was due), then closed-loop load
flat out (maximum throughput). Requests are real `issue_comment` deliveries from the shared
fixtures, signed with the app's secret, each with its own X-GitHub-Delivery. No RQ worker runs:
this measures the web process only. The load generator shares the machine's cores with gunicorn.

Prints a human table on stderr and ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from loadgen import Run, fixed_rate, flat_out  # bench/ is on sys.path when this file is run as a script
from rq import Queue

from devstack import localredis

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "github-webhooks" / "issue_comment.created.payload.json"
HOST = "127.0.0.1"
GOAL_P99_MS = 25.0
GOAL_RATIO = 0.5


class Deliveries:
    """Signed issue_comment requests: a few distinct bodies signed up front, a new delivery id each."""

    def __init__(self, secret: str, port: int, variants: int = 32) -> None:
        payload = json.loads(FIXTURE.read_text())
        self.head = (f"POST /webhooks HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
                     "Content-Type: application/json\r\nX-GitHub-Event: issue_comment\r\n")
        self.bodies = []
        for i in range(variants):
            payload["comment"]["id"] = 9_000_000 + i
            payload["comment"]["body"] = f"/clarity status (bench request {i})"
            body = json.dumps(payload).encode()
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            self.bodies.append((body, signature))
        self.sent = 0

    def __call__(self) -> bytes:
        body, signature = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1
        return (f"{self.head}X-GitHub-Delivery: {uuid.uuid4()}\r\nX-Hub-Signature-256: {signature}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def serve(target: str, env: dict[str, str], port: int, args: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    """gunicorn as in the Procfile, in its own process group."""
    command = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--threads", str(args.threads),
               "--bind", f"{HOST}:{port}", "--pythonpath", f"{ROOT},{ROOT / 'bench'}", target]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Until the server answers an HTTP request (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                if s.recv(16).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer within {timeout:.0f}s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """TERM the gunicorn we started (graceful), then KILL its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Served:
    """One app under gunicorn and the requests made for it."""

    process: subprocess.Popen[bytes]
    port: int
    make: Deliveries
    accepted: int = 0  # 202 answers, warm-up included: each one is a job on the intake queue

    def load(self, run: Run) -> dict[str, Any]:
        self.accepted += run.statuses.get(202, 0)
        return run.summary()


def start_all(servers: dict[str, Served], targets: dict[str, str], env: dict[str, str], secret: str,
              args: argparse.Namespace, workdir: Path) -> None:
    """Every app under its own gunicorn, ready to answer; each is in `servers` from its start, so a
    failure on the way still stops what was started."""
    for name, target in targets.items():
        port, log = free_port(), workdir / f"{name}.log"
        make = Deliveries(secret, port)
        servers[name] = Served(serve(target, env, port, args, log), port, make)
        wait_ready(port, servers[name].process, log)


def measure(servers: dict[str, Served], args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up and fixed rate for each app, then flat out in alternating rounds.

    Alternating rounds spread the machine's background load over both apps; the round with the
    median throughput is reported for each.
    """
    results: dict[str, Any] = {}
    for name, s in servers.items():
        s.load(asyncio.run(fixed_rate(HOST, s.port, s.make, args.rate, 1.0)))  # warm-up
        results[name] = {"fixed_rate": s.load(asyncio.run(fixed_rate(HOST, s.port, s.make, args.rate,
                                                                     args.seconds)))}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, s in servers.items():
            rounds[name].append(s.load(asyncio.run(flat_out(HOST, s.port, s.make, args.concurrency,
                                                            args.flat_seconds))))
    for name, runs in rounds.items():
        runs.sort(key=lambda r: r["throughput_rps"])
        results[name]["flat_out"] = runs[len(runs) // 2]
        results[name]["flat_out_rounds_rps"] = [r["throughput_rps"] for r in runs]
    return results


def app_env(redis_url: str, namespace: str, secret: str, workdir: Path) -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CLARITY_"))}
    return base | {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": secret,
                   "REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace,
                   "CLARITY_DATA_DIR": str(workdir / "data"), "CLARITY_LOG_LEVEL": "INFO"}


def forget(redis_url: str, namespace: str) -> int:
    """Delete the namespace's keys and its RQ queues with their jobs; the number of keys removed."""
    client = redis.Redis.from_url(redis_url)
    removed = 0
    for name in (f"{namespace}:intake", f"{namespace}:steps"):
        queue = Queue(name, connection=client)
        removed += queue.count
        queue.delete(delete_jobs=True)
    keys = [*client.scan_iter(f"{namespace}:*", count=1000), *client.scan_iter(f"rq:*{namespace}:*", count=1000)]
    return removed + (int(client.delete(*keys)) if keys else 0)


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    options.add_argument("--seconds", type=float, default=10.0, help="fixed-rate duration (default 10)")
    options.add_argument("--flat-seconds", type=float, default=5.0, help="flat-out duration (default 5)")
    options.add_argument("--concurrency", type=int, default=16, help="flat-out connections (default 16)")
    options.add_argument("--rounds", type=int, default=3, help="flat-out rounds per app (default 3)")
    options.add_argument("--workers", type=int, default=2)
    options.add_argument("--threads", type=int, default=8)
    options.add_argument("--app", default="app:create_app()",
                         help="gunicorn target for Clarity (default app:create_app(), as in the Procfile)")
    args = options.parse_args(argv)

    handle = localredis.ensure(os.environ.get("REDIS_URL"))
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_hex(20)
    load_before = os.getloadavg()
    servers: dict[str, Served] = {}
    with tempfile.TemporaryDirectory(prefix="clarity-bench-") as tmp:
        workdir = Path(tmp)
        env = app_env(handle.url, namespace, secret, workdir)
        try:
            start_all(servers, {"bare_flask": "bare_flask:create_app()", "clarity": args.app}, env, secret, args,
                      workdir)
            results = measure(servers, args)
            queued = Queue(f"{namespace}:intake", connection=redis.Redis.from_url(handle.url)).count
        finally:
            for served in servers.values():
                stop(served.process)
            removed = forget(handle.url, namespace)
            handle.stop()
    checks = {"clarity_202s": servers["clarity"].accepted, "clarity_jobs_queued": queued,
              "keys_removed": removed, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    report(results, args, handle.source, checks)
    return 0


def report(results: dict[str, Any], args: argparse.Namespace, redis_source: str, checks: dict[str, Any]) -> None:
    clarity, bare = results["clarity"], results["bare_flask"]
    ratio = clarity["flat_out"]["throughput_rps"] / bare["flat_out"]["throughput_rps"]
    line = {
        "bench": "webhook", "rate": args.rate, "seconds": args.seconds, "flat_seconds": args.flat_seconds,
        "rounds": args.rounds, "concurrency": args.concurrency, "app": args.app,
        "server": f"gunicorn --workers {args.workers} --threads {args.threads}",
        "results": results, "throughput_ratio": round(ratio, 3),
        "goal_p99_ms": GOAL_P99_MS, "goal_p99_met": (clarity["fixed_rate"]["p99_ms"] or 1e9) < GOAL_P99_MS,
        "goal_ratio": GOAL_RATIO, "goal_ratio_met": ratio >= GOAL_RATIO, **checks,
        "redis": redis_source, "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    print(f"{'':<12}{'rate':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
          f"{'flat rps':>10}{'flat p99':>10}", file=sys.stderr)
    for name, numbers in results.items():
        steady, flat = numbers["fixed_rate"], numbers["flat_out"]
        print(f"{name:<12}{steady['throughput_rps']:>8.1f}{steady['p50_ms']:>9.2f}{steady['p95_ms']:>9.2f}"
              f"{steady['p99_ms']:>9.2f}{steady['max_ms']:>9.2f}{sum(steady['errors'].values()):>8}"
              f"{flat['throughput_rps']:>10.1f}{flat['p99_ms']:>10.2f}", file=sys.stderr)
    print(f"clarity/bare throughput: {ratio:.2f} (goal >= {GOAL_RATIO}); clarity p99 at {args.rate:.0f} req/s: "
          f"{clarity['fixed_rate']['p99_ms']} ms (goal < {GOAL_P99_MS:.0f}); "
          f"{checks['clarity_202s']} deliveries accepted, {checks['clarity_jobs_queued']} jobs queued",
          file=sys.stderr)
    print(json.dumps(line))


if __name__ == "__main__":
    raise SystemExit(main())
