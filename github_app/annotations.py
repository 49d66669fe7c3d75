"""Check-run annotations read from failing checks' output: pytest, ruff/flake8, eslint (unix), tsc."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_PER_REQUEST = 50  # GitHub accepts at most 50 annotations per create/update request

_PATH = r"(?P<path>[\w@./+-]+?\.[A-Za-z0-9]+)"
# Order matters: the first pattern that matches a line wins.
_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # tsc: src/app.ts(12,5): error TS2322: Type 'string' is not assignable to type 'number'.
    ("tsc", re.compile(rf"^{_PATH}\((?P<line>\d+),(?P<col>\d+)\): (?P<level>error|warning) (?P<msg>TS\d+: .+)$")),
    # ruff (concise) / flake8 / eslint -f unix: path:line:col: CODE message
    ("lint", re.compile(rf"^{_PATH}:(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")),
    # pytest traceback: tests/test_x.py:12: AssertionError
    ("pytest", re.compile(rf"^{_PATH}:(?P<line>\d+): (?P<msg>[A-Z]\w*(?:Error|Exception|Failed|Warning)\b.*|in \w+.*)$")),
)


@dataclass(frozen=True, slots=True)
class Annotation:
    """One line-level finding, shaped for GitHub's check-run `output.annotations`."""

    path: str
    line: int
    message: str
    level: str = "failure"
    title: str = ""

    def to_github(self) -> dict[str, object]:
        """The JSON GitHub expects."""
        data: dict[str, object] = {"path": self.path, "start_line": self.line, "end_line": self.line,
                                   "annotation_level": self.level, "message": self.message[:64000]}
        if self.title:
            data["title"] = self.title[:255]
        return data


def parse(output: str, workdir: str = "", title: str = "") -> list[Annotation]:
    """Annotations for every line of `output` that names a file and a line; paths made repo-relative."""
    found: list[Annotation] = []
    seen: set[tuple[str, int, str]] = set()
    prefix = workdir.rstrip("/") + "/" if workdir else ""
    for raw in output.splitlines():
        line = raw.strip()
        for kind, pattern in _FORMATS:
            match = pattern.match(line)
            if not match:
                continue
            path = match["path"]
            if prefix and path.startswith(prefix):
                path = path[len(prefix):]
            if path.startswith(("/", "../")) or kind == "pytest" and match["msg"].startswith("in "):
                break  # outside the repository, or a traceback frame rather than the failure itself
            level = "warning" if match.groupdict().get("level") == "warning" else "failure"
            key = (path.removeprefix("./"), int(match["line"]), match["msg"])
            if key not in seen:
                seen.add(key)
                found.append(Annotation(key[0], key[1], key[2], level, title))
            break
    return found


def batches(annotations: Iterable[Annotation], size: int = MAX_PER_REQUEST) -> list[list[dict[str, object]]]:
    """Split into GitHub-sized requests (the first batch goes with the completing update)."""
    items = [a.to_github() for a in annotations]
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
