"""Acceptance checks: parse `check:` lines and gates, run them all, report each one."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from runner.sandbox import Limits, Sandbox

OUTPUT_CHARS = 4000
REGEX_READ_BYTES = 10 * 1024**2
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


class CheckError(ValueError):
    """A check line that cannot be understood; the message names the line and the problem."""


@dataclass(frozen=True, slots=True)
class CommandCheck:
    """A shell command run with `sh -c` in the workspace; passes on exit code 0."""

    spec: str
    command: str
    kind: ClassVar[str] = "command"


@dataclass(frozen=True, slots=True)
class FileCheck:
    """A path that must exist inside the workspace."""

    spec: str
    path: str
    kind: ClassVar[str] = "file"


@dataclass(frozen=True, slots=True)
class RegexCheck:
    """A file inside the workspace whose text must match a pattern."""

    spec: str
    path: str
    pattern: str
    flags: int = 0
    kind: ClassVar[str] = "regex"


Check = CommandCheck | FileCheck | RegexCheck


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How one check went, with an output excerpt fit for a prompt or a check run."""

    name: str
    kind: str
    passed: bool
    exit_code: int | None
    output: str
    duration: float


def _relative_path(spec: str, raw: str) -> str:
    """A workspace-relative path, refused when it is absolute or climbs out with `..`."""
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts or raw.startswith("~"):
        raise CheckError(f"check `{spec}`: path `{raw}` must stay inside the repository")
    return str(path)


def _parse_regex(spec: str, rest: str) -> RegexCheck:
    parts = rest.split(None, 1)
    if len(parts) != 2:
        raise CheckError(f"check `{spec}`: expected `regex <path> /<pattern>/`")
    raw_path, literal = parts
    match = re.fullmatch(r"/(.*)/([imsx]*)", literal.strip(), re.DOTALL)
    if match is None:
        raise CheckError(f"check `{spec}`: the pattern must be written between slashes, like /^version = /")
    pattern, letters = match.groups()
    flags = 0
    for letter in letters:
        flags |= _REGEX_FLAGS[letter]
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        raise CheckError(f"check `{spec}`: invalid pattern: {exc}") from None
    return RegexCheck(spec, _relative_path(spec, raw_path), pattern, flags)


def parse_check(spec: str) -> Check:
    """`file <path>` and `regex <path> /pattern/flags` are built in; anything else is a shell command."""
    text = spec.strip()
    if not text:
        raise CheckError("empty check")
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word == "file":
        try:
            parts = shlex.split(rest)
        except ValueError as exc:
            raise CheckError(f"check `{spec}`: {exc}") from None
        if len(parts) != 1:
            raise CheckError(f"check `{spec}`: expected `file <path>`")
        return FileCheck(text, _relative_path(text, parts[0]))
    if word == "regex":
        return _parse_regex(text, rest)
    return CommandCheck(text, text)


def _inside(workdir: Path, relpath: str) -> Path | None:
    """The path resolved (symlinks too), or None when it lands outside the workspace."""
    root = workdir.resolve()
    target = (root / relpath).resolve()
    return target if target == root or target.is_relative_to(root) else None


def _run_file(check: FileCheck, workdir: Path) -> CheckResult:
    started = time.monotonic()
    target = _inside(workdir, check.path)
    if target is None:
        passed, output = False, f"{check.path} points outside the repository"
    elif target.exists():
        passed, output = True, f"{check.path} exists"
    else:
        passed, output = False, f"{check.path} does not exist"
    return CheckResult(check.spec, check.kind, passed, None, output, time.monotonic() - started)


def _run_regex(check: RegexCheck, workdir: Path) -> CheckResult:
    started = time.monotonic()
    target = _inside(workdir, check.path)
    if target is None:
        passed, output = False, f"{check.path} points outside the repository"
    elif not target.is_file():
        passed, output = False, f"{check.path} does not exist"
    else:
        with target.open("rb") as handle:
            text = handle.read(REGEX_READ_BYTES).decode("utf-8", errors="replace")
        found = re.search(check.pattern, text, check.flags)
        passed = found is not None
        output = (
            f"{check.path} matches /{check.pattern}/ at: {found.group(0)[:200]!r}"
            if found
            else f"{check.path} does not match /{check.pattern}/"
        )
    return CheckResult(check.spec, check.kind, passed, None, output, time.monotonic() - started)


def run_check(
    check: Check, sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits
) -> CheckResult:
    """Run one parsed check."""
    if isinstance(check, FileCheck):
        return _run_file(check, workdir)
    if isinstance(check, RegexCheck):
        return _run_regex(check, workdir)
    result = sandbox.run(["sh", "-c", check.command], workdir, env, limits)
    return CheckResult(
        check.spec, check.kind, result.ok, result.exit_code, result.output_tail(OUTPUT_CHARS), result.duration
    )


def run_checks(
    specs: Sequence[str], sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits
) -> list[CheckResult]:
    """Run every check in order, even after a failure, so the report shows them all."""
    results = []
    for spec in specs:
        try:
            check = parse_check(spec)
        except CheckError as exc:
            results.append(CheckResult(spec, "invalid", False, None, str(exc), 0.0))
            continue
        results.append(run_check(check, sandbox, workdir, env, limits))
    return results
