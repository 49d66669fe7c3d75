"""An execution's budget (DESIGN §15): its limits, what it used, and whether it may go on. Pure.

A budget has up to four limits; an unset limit is no limit:
- `time`: the execution's active time in seconds, the sum of its steps' durations (time spent
  paused, queued or waiting for a worker is not counted, so a budget means work, not calendar time);
- `attempts`: agent attempts over the whole execution (every tool's, every task's);
- `cost`: US dollars the agents reported spending (`CLARITY_USAGE_FILE`);
- `tokens`: tokens the agents reported using.

Layers, later wins limit by limit: the app's `CLARITY_BUDGET`, the repo's `budget:` in
`.github/clarity.yml`, then the execution's own (`/clarity run budget 30m $5`, the API's `budget`).
The same words serve the comment and the app setting: `30m`, `2h`, `1h30m`, `$5`, `attempts=40`,
`tokens=500k`, or any of them as `key=value` (`time=30m`, `cost=5`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEYS = ("time", "attempts", "cost", "tokens")
MIN_ATTEMPT_SECONDS = 1.0  # no attempt starts with less time left than this: it could only be killed
MAX_TIME = 366 * 24 * 3600.0
MAX_ATTEMPTS = 1_000_000
MAX_COST = 1_000_000.0
MAX_TOKENS = 10**12
_DURATION = re.compile(r"(?:(\d{1,6}(?:\.\d{1,3})?)h)?(?:(\d{1,7}(?:\.\d{1,3})?)m)?(?:(\d{1,9}(?:\.\d{1,3})?)s)?")
_MONEY = re.compile(r"\$?(\d{1,9}(?:\.\d{1,4})?)")
_COUNT = re.compile(r"(\d{1,13}(?:\.\d{1,3})?)([km]?)")


class BudgetError(ValueError):
    """A budget or a usage report that cannot be read; the message says what a good one looks like."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits of one execution; None means no limit of that kind."""

    time: float | None = None  # seconds of active time
    attempts: int | None = None
    cost: float | None = None  # US dollars
    tokens: int | None = None

    def over(self, base: Budget) -> Budget:
        """This budget laid over `base`: each limit set here wins, the others come from `base`."""
        return Budget(*(getattr(self, k) if getattr(self, k) is not None else getattr(base, k) for k in KEYS))

    @property
    def is_empty(self) -> bool:
        """True when no limit is set."""
        return all(getattr(self, key) is None for key in KEYS)

    def spec(self) -> str:
        """Canonical words that `parse_spec` reads back: `time=30m attempts=40 cost=$5 tokens=500000`."""
        words = []
        if self.time is not None:
            words.append(f"time={duration_text(self.time)}")
        if self.attempts is not None:
            words.append(f"attempts={self.attempts}")
        if self.cost is not None:
            words.append(f"cost=${self.cost:g}")
        if self.tokens is not None:
            words.append(f"tokens={self.tokens}")
        return " ".join(words)

    def describe(self) -> str:
        """For people: `30m of active time, $5.00, 40 attempts`, or `no limits`."""
        parts = []
        if self.time is not None:
            parts.append(f"{duration_text(self.time)} of active time")
        if self.attempts is not None:
            parts.append(f"{self.attempts} attempts")
        if self.cost is not None:
            parts.append(money_text(self.cost))
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True, slots=True)
class Usage:
    """What an execution used so far (or what one attempt reported)."""

    time: float = 0.0
    attempts: int = 0
    cost: float = 0.0
    tokens: int = 0


def duration_text(seconds: float, precise: bool = False) -> str:
    """`5s`, `90s` → `1m30s`, `2h`, `1h30m`; `precise` shows tenths under a minute (`5.3s`)."""
    if seconds < 60:
        return f"{seconds:.1f}s" if precise else f"{seconds:g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value)


def money_text(dollars: float) -> str:
    """`$1.20`."""
    return f"${dollars:,.2f}"


# -- reading limits --------------------------------------------------------------------------------
def read_time(value: object, key: str = "time") -> float:
    """`30m`, `2h`, `1h30m`, `90s` or a number of seconds → seconds (more than 0)."""
    text = "" if isinstance(value, bool) else str(value).strip().lower()
    match = _DURATION.fullmatch(text)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif match and _is_duration(text):
        hours, minutes, secs = (float(group or 0) for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise BudgetError(f"`{key}` must be a duration like 90s, 30m, 2h or 1h30m, got {_shown(value)}")
    if not 0 < seconds <= MAX_TIME or not math.isfinite(seconds):
        raise BudgetError(f"`{key}` must be more than 0s and at most 366 days, got {_shown(value)}")
    return seconds


def read_cost(value: object, key: str = "cost") -> float:
    """`$5`, `$0.50`, `5` or a number → US dollars (more than 0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        dollars = float(value)
    else:
        match = _MONEY.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
        if not match:
            raise BudgetError(f"`{key}` must be an amount in US dollars like $5 or $0.50, got {_shown(value)}")
        dollars = float(match[1])
    if not 0 < dollars <= MAX_COST or not math.isfinite(dollars):
        raise BudgetError(f"`{key}` must be more than $0 and at most $1,000,000, got {_shown(value)}")
    return dollars


def read_count(value: object, key: str, maximum: int) -> int:
    """A whole number more than 0, written `40`, `500k` or `2m` (thousands, millions)."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    else:
        match = _COUNT.fullmatch(str(value).strip().lower()) if not isinstance(value, bool) else None
        number = float(match[1]) * {"": 1, "k": 1000, "m": 1_000_000}[match[2]] if match else -1.0
        if number != int(number):
            number = -1.0
        count = int(number)
    if not 0 < count <= maximum:
        raise BudgetError(f"`{key}` must be a whole number from 1 to {maximum:,} (like 40, 500k or 2m), "
                          f"got {_shown(value)}")
    return count


def _read(key: str, value: object, shown: str) -> float | int:
    if key == "time":
        return read_time(value, shown)
    if key == "cost":
        return read_cost(value, shown)
    return read_count(value, shown, MAX_ATTEMPTS if key == "attempts" else MAX_TOKENS)


def parse_spec(text: str) -> Budget:
    """Budget words from a comment or a setting: `30m $5`, `attempts=40 tokens=500k`, `time=2h`."""
    found: dict[str, float | int] = {}
    for word in text.split():
        key, value = _classify(word)
        if key in found:
            raise BudgetError(f"the {key} limit is given twice; give each limit at most once")
        found[key] = _read(key, value, key)
    if not found:
        raise BudgetError("a budget needs at least one limit, like `30m`, `$5`, `attempts=40` or `tokens=500k`")
    return _budget(found)


def _classify(word: str) -> tuple[str, str]:
    """Which limit a word sets: `key=value`, `$…` (cost) or a duration (time)."""
    if "=" in word:
        key, _, value = word.partition("=")
        key = key.lower()
        if key not in KEYS:
            raise BudgetError(f"`{_cut(key)}` is not a budget limit; the limits are {_listed()}")
        return key, value
    if word.startswith("$"):
        return "cost", word
    if _is_duration(word):
        return "time", word
    raise BudgetError(f"`{_cut(word)}` is not a budget limit; write a duration (`30m`, `2h`), an amount (`$5`), "
                      "`attempts=40` or `tokens=500k`")


def parse_config(value: Any, prefix: str = "budget") -> Budget:
    """The `budget:` mapping of `.github/clarity.yml`; errors name the key (`budget.cost`)."""
    if value is None:
        return Budget()
    if not isinstance(value, Mapping):
        raise BudgetError(f"`{prefix}` must be a mapping of limits ({_listed()})")
    unknown = sorted(str(key) for key in value if key not in KEYS)
    if unknown:
        raise BudgetError(f"`{prefix}.{unknown[0]}` is not a budget limit; the limits are {_listed()}")
    return _budget({key: _read(key, raw, f"{prefix}.{key}") for key, raw in value.items()})


def _budget(found: Mapping[str, float | int]) -> Budget:
    """A Budget from read limits, each of its own type."""
    time, cost = found.get("time"), found.get("cost")
    attempts, tokens = found.get("attempts"), found.get("tokens")
    return Budget(time=None if time is None else float(time), attempts=None if attempts is None else int(attempts),
                  cost=None if cost is None else float(cost), tokens=None if tokens is None else int(tokens))


def from_api(value: str | Mapping[str, Any] | None) -> Budget:
    """The REST API's `budget`: words (`"30m $5"`) or a mapping (`{"time": "30m", "cost": 5}`)."""
    if value is None or value == "":
        return Budget()
    if isinstance(value, str):
        return parse_spec(value)
    return parse_config(value, "budget")


def stored(spec: str) -> Budget:
    """An execution's own budget as stored (`Execution.budget`, canonical words); "" is no limits."""
    return parse_spec(spec) if spec.strip() else Budget()


# -- deciding -----------------------------------------------------------------------------------------
def time_left(budget: Budget, used: Usage) -> float | None:
    """Seconds of active time left (never below 0); None without a time limit."""
    return None if budget.time is None else max(0.0, budget.time - used.time)


def exhausted(budget: Budget, used: Usage, out_of_time: bool = False) -> str | None:
    """Why no further attempt may start (the limit, for the pause and the comment), or None.

    `out_of_time` says the budget's wall clock just killed an attempt, so time is used up whatever
    the clocks read.
    """
    left = time_left(budget, used)
    if budget.time is not None and left is not None and (out_of_time or left < MIN_ATTEMPT_SECONDS):
        return (f"time budget of {duration_text(budget.time)} used up "
                f"({duration_text(max(used.time, budget.time if out_of_time else 0), precise=True)} active)")
    if budget.attempts is not None and used.attempts >= budget.attempts:
        return f"attempt budget of {budget.attempts} used up ({used.attempts} attempts made)"
    if budget.cost is not None and used.cost >= budget.cost:
        return f"cost budget {money_text(budget.cost)} reached ({money_text(used.cost)} spent)"
    if budget.tokens is not None and used.tokens >= budget.tokens:
        return f"token budget of {budget.tokens:,} reached ({used.tokens:,} used)"
    return None


def attempt_timeout(task_timeout: float, left: float | None) -> tuple[float, bool]:
    """The wall clock of one attempt, min(task timeout, time left), and whether the budget set it."""
    if left is not None and left < task_timeout:
        return left, True
    return task_timeout, False


# -- usage reports ----------------------------------------------------------------------------------
def parse_usage(text: str) -> Usage:
    """An agent's usage report: a JSON object with `tokens` and/or `cost_usd` (others ignored)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BudgetError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BudgetError("expected a JSON object like {\"tokens\": 1234, \"cost_usd\": 0.05}")
    tokens = data.get("tokens", 0)
    cost = data.get("cost_usd", 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= MAX_TOKENS:
        raise BudgetError(f"`tokens` must be a whole number from 0 to {MAX_TOKENS:,}, got {_shown(tokens)}")
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost) \
            or not 0 <= cost <= MAX_COST:
        raise BudgetError(f"`cost_usd` must be a number of dollars from 0 to 1,000,000, got {_shown(cost)}")
    return Usage(cost=float(cost), tokens=tokens)


def add(used: Usage, more: Usage) -> Usage:
    """Two usages summed."""
    return Usage(*(getattr(used, f.name) + getattr(more, f.name) for f in dataclasses.fields(Usage)))


def _is_duration(word: str) -> bool:
    match = _DURATION.fullmatch(word.lower())
    return bool(match and any(match.groups()))


def _listed() -> str:
    return ", ".join(f"`{key}`" for key in KEYS)


def _cut(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


def _shown(value: object) -> str:
    return _cut(repr(value))
