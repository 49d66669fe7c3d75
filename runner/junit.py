"""JUnit XML reports (pytest `--junitxml`, most test runners): counts and the names of failing tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

try:  # defusedxml refuses entity tricks outright; without it expat's own limits still apply
    from defusedxml import DefusedXmlException as _Refused  # type: ignore[import-untyped, unused-ignore]
    from defusedxml import ElementTree as _Safe  # type: ignore[import-untyped, unused-ignore]

    _fromstring: Any = _Safe.fromstring
    _BAD: tuple[type[Exception], ...] = (ElementTree.ParseError, _Refused)
except ImportError:  # pragma: no cover - depends on the environment
    _fromstring = ElementTree.fromstring
    _BAD = (ElementTree.ParseError,)

MAX_BYTES = 20 * 1024**2
MAX_NAMES = 50


class JUnitError(ValueError):
    """A report that is not JUnit XML; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class JUnitSummary:
    """What a JUnit report says: counts and the first failing tests (`classname::name`)."""

    tests: int
    failures: int
    errors: int
    skipped: int
    failed: tuple[str, ...] = ()

    def line(self) -> str:
        """One line for a check's output: `junit: 12 tests, 1 failed, 0 errors, 2 skipped: a::b`."""
        text = f"junit: {self.tests} tests, {self.failures} failed, {self.errors} errors, {self.skipped} skipped"
        return f"{text}: {', '.join(self.failed)}" if self.failed else text

    def as_dict(self) -> dict[str, object]:
        """For checks.json and the task table."""
        return {"tests": self.tests, "failures": self.failures, "errors": self.errors,
                "skipped": self.skipped, "failed": list(self.failed)}


def parse(data: bytes) -> JUnitSummary:
    """Count every `<testcase>` under a `<testsuites>` or `<testsuite>` root (nested suites too)."""
    if len(data) > MAX_BYTES:
        raise JUnitError(f"the report is larger than {MAX_BYTES // 1024**2} MiB")
    try:
        root = _fromstring(data)
    except _BAD as exc:  # expat's ParseError, defusedxml's refusals: all mean "not a usable report"
        raise JUnitError(f"not valid XML ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"expected <testsuites> or <testsuite>, found <{root.tag}>")
    tests = failures = errors = skipped = 0
    failed: list[str] = []
    for case in root.iter("testcase"):
        tests += 1
        outcome = {child.tag for child in case}
        if "failure" in outcome or "error" in outcome:
            failures += "failure" in outcome
            errors += "error" in outcome and "failure" not in outcome
            if len(failed) < MAX_NAMES:
                name, cls = case.get("name", "?"), case.get("classname", "")
                failed.append(f"{cls}::{name}" if cls else name)
        elif "skipped" in outcome:
            skipped += 1
    return JUnitSummary(tests, failures, errors, skipped, tuple(failed))
