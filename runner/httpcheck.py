"""`check: http <url> ...`: start a service, wait for its port, probe it, compare status and latency.

Grammar (words after the URL in any order; everything after `service:` is the service's command):

    http <url> [status=200[,204]] [samples=20] [p50<50ms] [p95<200ms] [max<1s] [wait=30s] [timeout=60s]
               [service: <shell command>]

The service and the probe run in ONE sandbox run (a small `python3` script), so they share its
network namespace: with the network off, loopback still works there (bubblewrap and docker's
`none` network both keep `lo`). The probe waits until the URL's port accepts a connection (`wait`,
default 30 s; a service that exits first fails at once), sends `samples` GETs one after another (no
proxy; redirects are not followed, a 3xx is the status), prints its measurements as one JSON line,
then stops the service. `judge` decides, without I/O.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

MARKER = "CLARITY-HTTP "
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_LATENCY = re.compile(r"(p\d{1,2}|max)<(.+)")
DEFAULT_WAIT = 30.0
MAX_SAMPLES = 1000


class HttpSpecError(ValueError):
    """An `http` check that cannot be understood; the caller adds the check's text."""


def seconds(text: str) -> float:
    """`200ms`, `1.5s`, `2m` or a bare number of seconds → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise HttpSpecError(f"`{text}` is not a duration like 200ms, 30s or 2m")
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """A URL probed `samples` times, optionally served by a command started for the check."""

    spec: str
    url: str
    statuses: tuple[int, ...] = (200,)
    samples: int = 20
    latency: tuple[tuple[str, float], ...] = ()  # (("p95", 0.2), ("max", 1.0)): each must be below
    wait: float = DEFAULT_WAIT
    service: str | None = None
    timeout: float | None = None
    kind: ClassVar[str] = "http"


def parse(spec: str, rest: str) -> HttpCheck:
    """The words after `http`; raise HttpSpecError naming the bad word."""
    head, found, service = rest.partition("service:")
    if found and not service.strip():
        raise HttpSpecError("`service:` needs the command that starts the service")
    try:
        words = shlex.split(head)
    except ValueError as exc:
        raise HttpSpecError(str(exc)) from None
    if not words:
        raise HttpSpecError("expected `http <url> [status=200] [p95<200ms] [samples=20] [service: <command>]`")
    url, options = words[0], words[1:]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpSpecError(f"`{url}` is not an http:// or https:// URL")
    fields: dict[str, Any] = {}
    latency: list[tuple[str, float]] = []
    for word in options:
        bound = _LATENCY.fullmatch(word)
        key, eq, value = word.partition("=")
        if bound:
            latency.append((bound.group(1), seconds(bound.group(2))))
        elif eq and key == "status":
            if not re.fullmatch(r"\d{3}(,\d{3})*", value):
                raise HttpSpecError(f"`{word}`: status must be codes like 200 or 200,204")
            fields["statuses"] = tuple(int(code) for code in value.split(","))
        elif eq and key == "samples":
            if not value.isdigit() or not 1 <= int(value) <= MAX_SAMPLES:
                raise HttpSpecError(f"`{word}`: samples must be a whole number from 1 to {MAX_SAMPLES}")
            fields["samples"] = int(value)
        elif eq and key in ("wait", "timeout"):
            fields[key] = seconds(value)
        else:
            raise HttpSpecError(f"unknown option `{word}` (expected status=, samples=, wait=, timeout=, "
                                "p50<, p95<, p99<, max< or service:)")
    return HttpCheck(spec, url, latency=tuple(latency), service=service.strip() or None, **fields)


def payload(check: HttpCheck) -> str:
    """The probe script's one argument."""
    return json.dumps({"url": check.url, "samples": check.samples, "wait": check.wait, "service": check.service})


def percentile(values: list[float], name: str) -> float:
    """Nearest-rank percentile (`p95`) or `max` of a non-empty list."""
    ordered = sorted(values)
    if name == "max":
        return ordered[-1]
    rank = math.ceil(int(name[1:]) / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def _ms(value: float) -> str:
    return f"{value * 1000:.0f}ms"


def judge(check: HttpCheck, measured: Mapping[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """(passed, what was measured vs wanted, details) from the probe's JSON."""
    where = f"{urlsplit(check.url).hostname}:{urlsplit(check.url).port or 80}"
    service_output = str(measured.get("service_output") or "").strip()
    tail = f"\nservice output:\n{service_output}" if service_output else ""
    details: dict[str, Any] = {"url": check.url, "wanted_status": list(check.statuses),
                               "wanted_latency_ms": {n: round(v * 1000, 1) for n, v in check.latency}}
    if not measured.get("ready"):
        exited = measured.get("service_exit")
        why = (f"the service `{check.service}` exited with code {exited} before {where} answered" if exited is not None
               else f"nothing answered at {where} within {check.wait:g}s"
               + (f" (service: `{check.service}`)" if check.service else ""))
        return False, f"{why}{tail}", {**details, "ready": False}
    samples = measured.get("samples") or []
    statuses = [s[0] for s in samples]
    latencies = [float(s[1]) for s in samples if s[0] is not None]
    errors = [str(s[1]) for s in samples if s[0] is None]
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status or "error")] = counts.get(str(status or "error"), 0) + 1
    summary = {name: percentile(latencies, name) for name in ("p50", "p95", "max")} if latencies else {}
    for name, _ in check.latency:
        if latencies:
            summary[name] = percentile(latencies, name)
    problems = [f"{n} status {code}" for code, n in counts.items()
                if code == "error" or int(code) not in check.statuses]
    if errors:
        problems.append(f"first error: {errors[0]}")
    for name, bound in check.latency:
        if name in summary and summary[name] >= bound:
            problems.append(f"{name} {_ms(summary[name])} is not below {_ms(bound)}")
    seen = ", ".join(f"{code} ×{n}" for code, n in counts.items())
    lines = [f"GET {check.url} ×{len(samples)}: status {seen} (wanted {'/'.join(map(str, check.statuses))})",
             "latency " + ", ".join(f"{n} {_ms(v)}" for n, v in summary.items())
             + (f" (wanted {', '.join(f'{n} < {_ms(v)}' for n, v in check.latency)})" if check.latency else "")]
    if problems:
        lines.append("FAILED: " + "; ".join(problems))
    details.update(ready=True, samples=len(samples), statuses=counts, errors=len(errors),
                   latency_ms={n: round(v * 1000, 2) for n, v in summary.items()})
    return not problems, "\n".join(lines) + (tail if problems else ""), details


def measurement(stdout: str) -> dict[str, Any] | None:
    """The probe's JSON line from its stdout, or None when it printed none (it crashed or was killed)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                found = json.loads(line[len(MARKER):])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


# Runs inside the sandbox with the sandbox's python3; standard library only. The service shares the
# probe's process group, so the sandbox's kill of the group after the run reaches whatever it forked
# (the probe itself only stops the service's shell).
PROBE = r"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.error, urllib.parse, urllib.request
spec = json.loads(sys.argv[1])
url = spec["url"]
parts = urllib.parse.urlsplit(url)
address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
out = {"ready": False, "service_exit": None, "samples": [], "service_output": ""}
log = tempfile.TemporaryFile()
service = None
if spec["service"]:
    service = subprocess.Popen(["sh", "-c", spec["service"]], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT)
deadline = time.monotonic() + spec["wait"]
while True:
    try:
        socket.create_connection(address, timeout=1).close()
        out["ready"] = True
        break
    except OSError:
        pass
    if service is not None and service.poll() is not None:
        out["service_exit"] = service.returncode
        break
    if time.monotonic() >= deadline:
        break
    time.sleep(0.05)
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is the answer: it is what the status is compared with
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
for _ in range(spec["samples"] if out["ready"] else 0):
    started = time.monotonic()
    try:
        with opener.open(url, timeout=10) as response:
            response.read()
            out["samples"].append([response.status, time.monotonic() - started])
    except urllib.error.HTTPError as exc:
        exc.read()
        out["samples"].append([exc.code, time.monotonic() - started])
    except Exception as exc:
        out["samples"].append([None, repr(exc)[:300]])
if service is not None:
    log.seek(max(0, os.fstat(log.fileno()).st_size - 2000))
    out["service_output"] = log.read().decode("utf-8", "replace")
print("CLARITY-HTTP " + json.dumps(out), flush=True)
if service is not None and service.poll() is None:
    service.terminate()
    try:
        service.wait(2)
    except subprocess.TimeoutExpired:
        service.kill()
"""
