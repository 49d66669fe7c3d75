"""The record of every call made to the forge, for tests to assert on (credentials never stored)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

MAX_CALLS = 20_000


class CallLog:
    """A bounded, thread-safe list of call records (plain dicts, JSON-ready)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)

    def record(self, call: dict[str, Any]) -> None:
        """Append one call."""
        with self._lock:
            self._calls.append(call)

    def all(self) -> list[dict[str, Any]]:
        """Every recorded call, oldest first."""
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        """Forget every call."""
        with self._lock:
            self._calls.clear()


class RateMeter:
    """Counts calls per principal in hourly windows, for realistic `x-ratelimit-*` headers."""

    LIMIT = 5000
    WINDOW = 3600

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key → (window reset epoch, used)

    def hit(self, key: str) -> tuple[int, int, int]:
        """Count one call; returns (limit, used, reset epoch)."""
        current = int(time.time())
        with self._lock:
            reset, used = self._windows.get(key, (current + self.WINDOW, 0))
            if reset <= current:
                reset, used = current + self.WINDOW, 0
            self._windows[key] = (reset, used + 1)
            return self.LIMIT, used + 1, reset
