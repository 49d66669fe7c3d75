"""The live dashboard: event → DOM in a browser, fan-out to 500 sockets of one process, overview first load.

Run: `.venv/bin/python bench/live_bench.py [--events 200] [--sockets 500] [--fanout-events 50] [--executions 50]`.

One web process as devstack serves it (werkzeug, a thread per connection) on a Redis from
`devstack.localredis.ensure(REDIS_URL)` and a throw-away CLARITY_NAMESPACE, deleted at the end. No worker:
the bench writes through `clarity.store.Store` as the engine does, and every event carries the time it
was published, so latencies are measured on the machine's one clock.

- `first load`: server time of `GET /` (rendered in-process) with `--executions` executions over
  5 customers and 15 repositories: the first request, then the median of 20. Goal < 300 ms.
- `event → DOM`: headless Debian chromium (Playwright) on the overview; `--events` updates of one
  execution's current task, 25 ms apart; the latency is taken when live.js has changed the row
  (`clarity:applied`). Goal p95 < 200 ms.
- `fan-out`: `--sockets` WebSocket clients, in two client processes, each must receive every one of
  `--fanout-events` log events (published 20 ms apart); latency publish → client. Goal: no loss, p95 < 250 ms.

Prints a human table on stderr and ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server

from app import create_app
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import Store
from devstack import localredis

CHROMIUM = "/usr/bin/chromium"
GOALS = {"first_load_ms": 300.0, "dom_p95_ms": 200.0, "fanout_p95_ms": 250.0}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of some values, 0 when there are none."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked) + 0.5) - 1))]


def settings_for(redis_url: str, namespace: str, data_dir: Path, sockets: int) -> Settings:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return Settings(app_id=1, private_key=key, webhook_secret="bench", github_api_url="http://127.0.0.1:9/api/v3",
                    redis_url=redis_url, data_dir=data_dir, namespace=namespace, live_max_sockets=sockets + 10,
                    dashboard_auth="open")  # anonymous sockets and pages: opened explicitly, as an operator would


def seed(store: Store, count: int) -> list[Execution]:
    """`count` executions over 5 customers × 3 repositories, a third of them running."""
    made = []
    for n in range(count):
        inst = 1 + n % 5
        ex = store.create(Execution(id="", installation_id=inst, repo=f"cust{inst}/repo{n % 3}", account=f"cust{inst}",
                                    issue_number=n + 1, is_pull_request=False, branch=f"clarity/issue-{n + 1}",
                                    base_branch="main", requester="ada"), "bench")
        if n % 3 == 0:
            ex = store.transition(ex.id, ExecutionStatus.INITIALIZING, "bench", "started", tasks_total=10)
        made.append(ex)
    return made


def first_load(app: Any) -> dict[str, float]:
    client = app.test_client()
    times = []
    for _ in range(21):
        start = time.perf_counter()
        response = client.get("/")
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    return {"first_ms": times[0], "median_ms": statistics.median(times[1:])}


def dom_latency(url: str, store: Store, target: Execution, events: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/")
        page.wait_for_function("document.querySelector('#live-state').textContent === 'Live'", timeout=10_000)
        page.evaluate("""() => { window.__lat = [];
          document.addEventListener('clarity:applied', (e) => {
            if (e.detail.kind === 'execution.updated') window.__lat.push(Date.now() - e.detail.time * 1000); }); }""")
        for n in range(events):
            store.update(target.id, current_task=f"{n}.1")
            time.sleep(0.025)
        page.wait_for_function(f"window.__lat.length >= {events}", timeout=20_000)
        shown = page.locator(f'tr[data-execution="{target.id}"] [data-field="current-task"]').text_content()
        latencies = page.evaluate("window.__lat")
        browser.close()
    assert shown == f"{events - 1}.1", shown
    return {"events": len(latencies), "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95),
            "max_ms": max(latencies)}


def client_main(url: str, count: int, expect: int) -> None:
    """A client process: `count` sockets, each reads `expect` log events; prints latencies as JSON."""
    from simple_websocket import Client

    sockets = []
    for _ in range(count):
        ws = Client.connect(url.replace("http", "ws") + "/live")
        ws.send("{}")
        sockets.append(ws)
    for ws in sockets:
        assert json.loads(ws.receive(timeout=30))["type"] == "hello"
    print("ready", flush=True)
    results: list[list[float]] = [[] for _ in sockets]

    def read(i: int, ws: Any) -> None:
        deadline = time.monotonic() + 60
        while len(results[i]) < expect and time.monotonic() < deadline:
            raw = ws.receive(timeout=1)
            if raw is None:
                continue
            message = json.loads(raw)
            if message.get("kind") == "log":
                results[i].append((time.time() - message["time"]) * 1000)

    threads = [threading.Thread(target=read, args=(i, ws)) for i, ws in enumerate(sockets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ws in sockets:
        ws.close()
    print(json.dumps({"received": [len(r) for r in results], "latencies": [x for r in results for x in r]}))


def fanout(url: str, app: Any, store: Store, target: Execution, sockets: int, events: int) -> dict[str, Any]:
    from dashboard.live import hub_of

    halves = [sockets // 2, sockets - sockets // 2]
    procs = [subprocess.Popen([sys.executable, __file__, "--client", url, str(n), str(events)],
                              stdout=subprocess.PIPE, text=True) for n in halves]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    hub = hub_of(app)
    deadline = time.monotonic() + 30
    while hub.count() != sockets and time.monotonic() < deadline:  # the browser's socket may still be closing
        time.sleep(0.05)
    subscribers = hub.count()
    subscriptions = int(dict(store.r.pubsub_numsub(store.events_channel))[store.events_channel])
    for n in range(events):
        store.log(target.id, f"fan-out {n}")
        time.sleep(0.02)
    received: list[int] = []
    latencies: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        data = json.loads(out.strip().splitlines()[-1])
        received += data["received"]
        latencies += data["latencies"]
    return {"sockets": subscribers, "redis_subscriptions": subscriptions, "events": events,
            "delivered": sum(received), "expected": sockets * events,
            "lost": sockets * events - sum(received), "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95),
            "max_ms": max(latencies, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--fanout-events", type=int, default=50)
    parser.add_argument("--executions", type=int, default=50)
    args = parser.parse_args()
    handle = localredis.ensure(os.environ.get("REDIS_URL"))
    namespace = f"bench-live-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="live-bench-"))
    app = create_app(settings_for(handle.url, namespace, tmp / "data", args.sockets))
    store: Store = app.extensions["clarity.store"]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per socket would drown the table
    web = make_server("127.0.0.1", 0, app, threaded=True)
    web.socket.listen(1024)  # 500 sockets connect at once
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_port}"
    try:
        executions = seed(store, args.executions)
        load = first_load(app)
        dom = dom_latency(url, store, executions[0], args.events)
        fan = fanout(url, app, store, executions[0], args.sockets, args.fanout_events)
    finally:
        from dashboard.live import hub_of

        hub_of(app).stop()
        web.shutdown()
        client = redis.Redis.from_url(handle.url)
        keys = list(client.scan_iter(f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        handle.stop()
    result = {
        "bench": "live", "machine": platform.node(), "cpus": os.cpu_count(),
        "first_load": {"executions": args.executions, **load}, "event_to_dom": dom, "fanout": fan,
        "goals_met": {"first_load": load["first_ms"] < GOALS["first_load_ms"],
                      "event_to_dom": dom["p95_ms"] < GOALS["dom_p95_ms"],
                      "fanout": fan["lost"] == 0 and fan["p95_ms"] < GOALS["fanout_p95_ms"]},
    }
    rows = [
        ("overview first load", f"{load['first_ms']:.1f} ms (then median {load['median_ms']:.1f} ms)", "< 300 ms"),
        ("event → DOM p50 / p95", f"{dom['p50_ms']:.1f} / {dom['p95_ms']:.1f} ms ({dom['events']} events)",
         "p95 < 200 ms"),
        (f"fan-out to {fan['sockets']} sockets p50 / p95", f"{fan['p50_ms']:.1f} / {fan['p95_ms']:.1f} ms",
         "p95 < 250 ms"),
        ("fan-out delivered", (f"{fan['delivered']}/{fan['expected']} (lost {fan['lost']}), "
                               f"{fan['redis_subscriptions']} Redis subscription"), "no loss, 1 subscription"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<50}  goal {goal}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        client_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
