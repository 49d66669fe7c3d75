"""Time `Redactor` on 1 MB of text with ten known secrets: the cost every artifact and log line pays.

Run: `.venv/bin/python bench/redaction_bench.py [--megabytes 1] [--repeat 20]`.
Prints a human table on stderr and ONE JSON line on stdout. The goal is each row's median well under
100 ms for 1 MB: a text holding no secret costs substring searches (the needles of every encoded and
split form), a text holding some pays for masking only those. CPU time is reported beside wall clock:
on a busy machine wall clock also counts the wait for a core.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import random
import statistics
import string
import sys
import time

from clarity.redaction import MASK, Redactor

GOAL_MS = 100.0
WORDS = ("def", "return", "self", "assert", "PASSED", "FAILED", "tests/test_api.py::test_ok", "0.31s", "==", "{",
         "}", "import", "json", "error:", "line", "42", "AssertionError", "expected", "got", "None", "True")


def secrets(rng: random.Random) -> list[str]:
    """Ten secrets shaped like Clarity's: a webhook secret, installation tokens, API keys, a password."""
    alnum = string.ascii_letters + string.digits
    return ([rng.randbytes(20).hex()]
            + ["ghs_" + "".join(rng.choices(alnum, k=36)) for _ in range(4)]
            + ["sk-ant-" + "".join(rng.choices(alnum + "-_", k=40)) for _ in range(3)]
            + ["".join(rng.choices(alnum + "+/", k=43)) + "=", "correct-horse-battery-staple"])


def texts(size: int, rng: random.Random, known: list[str]) -> dict[str, str]:
    """Log-like prose, a base64 blob, random printable text; and the prose with each secret as base64, hex, split."""
    prose = []
    while sum(map(len, prose)) < size:
        prose.append(" ".join(rng.choices(WORDS, k=12)) + "\n")
    log = "".join(prose)[:size]
    leaks = "".join(f"{base64.b64encode(s.encode()).decode()}\n{s.encode().hex()}\n{s[:9]}\n{s[9:]}\n"
                    for s in known)
    return {
        "log, no secret": log,
        "base64 blob, no secret": base64.b64encode(rng.randbytes(size * 3 // 4)).decode()[:size],
        "random printable, no secret": "".join(rng.choices(string.printable, k=size)),
        "log, every secret leaked 3 ways": log[: size // 2] + leaks + log[size // 2: size - len(leaks)],
    }


def main() -> None:
    """Parse the arguments, time every text, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(13)
    known = secrets(rng)
    redact = Redactor(known)
    size = int(args.megabytes * 1_000_000)
    results: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, text in texts(size, rng, known).items():
        redact(text)  # warm-up
        runs, cpu_runs = [], []
        for _ in range(args.repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            cleaned = redact(text)
            runs.append((time.perf_counter() - start) * 1000)
            cpu_runs.append((time.process_time() - start_cpu) * 1000)
        assert "leaked" not in name or cleaned.count(MASK) >= 3 * len(known), name
        results[name], cpu[name] = round(statistics.median(runs), 2), round(statistics.median(cpu_runs), 2)
        print(f"{name:<34} median {results[name]:7.2f} ms  max {max(runs):7.2f} ms  CPU {cpu[name]:7.2f} ms",
              file=sys.stderr)
    print(json.dumps({"bench": "redaction", "bytes": size, "secrets": len(known), "repeat": args.repeat,
                      "goal_ms": GOAL_MS, "ms": results, "cpu_ms": cpu, "python": platform.python_version()}))


if __name__ == "__main__":
    main()
