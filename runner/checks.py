"""Acceptance checks: parse `check:` lines and gates, run them all, report each one.

Grammar of one check (a task's `check:` line or a gate):

    [timeout=30s, junit=reports/junit.xml] <check>     options block, optional, any kind
    file <path>                                         the path exists in the workspace
    regex <path> /<pattern>/<imsx>                      the file's text matches
    http <url> [status=200] [p95<200ms] ... [service: <command>]   see runner.httpcheck
    <anything else>                                     a shell command (`sh -c`), passes on exit 0

The options block starts with `[` directly followed by a `key=` word (so the shell's `[ -f x ]`
stays a command). `timeout=` bounds the check's sandbox run (else the repo's `check_timeout`, else
the task's timeout); `junit=` names a JUnit XML report the command writes. A command with
`--junitxml=<path>` (pytest) names its report itself. Every program of a command check, and an http
check's service, must pass the command allowlist (runner.allowlist) or the check fails unrun.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from runner import httpcheck, junit
from runner.allowlist import Allowlist
from runner.httpcheck import HttpCheck, HttpSpecError
from runner.sandbox import Limits, Result, Sandbox

OUTPUT_CHARS = 4000
REGEX_READ_BYTES = 10 * 1024**2
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_OPTIONS = re.compile(r"\[(\w+=[^\]]*)\]\s*(.*)", re.DOTALL)
_JUNIT_FLAGS = ("--junitxml", "--junit-xml")
ALLOW_ALL = Allowlist()


class CheckError(ValueError):
    """A check line that cannot be understood; the message names the line and the problem."""


@dataclass(frozen=True, slots=True)
class CommandCheck:
    """A shell command run with `sh -c` in the workspace; passes on exit code 0."""

    spec: str
    command: str
    timeout: float | None = None
    junit: str | None = None  # a JUnit XML report the command writes, relative to the workspace
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


Check = CommandCheck | FileCheck | RegexCheck | HttpCheck


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How one check went, with an output excerpt fit for a prompt or a check run."""

    name: str
    kind: str
    passed: bool
    exit_code: int | None
    output: str
    duration: float
    details: Mapping[str, Any] = field(default_factory=dict)  # http: measurements; junit: counts


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


def _options(spec: str, block: str) -> dict[str, str]:
    """`timeout=30s, junit=r.xml` → {"timeout": "30s", "junit": "r.xml"}; unknown keys are errors."""
    found: dict[str, str] = {}
    for word in block.replace(",", " ").split():
        key, eq, value = word.partition("=")
        if not eq or key not in ("timeout", "junit") or not value:
            raise CheckError(f"check `{spec}`: unknown option `{word}` (expected timeout=<duration> or junit=<path>)")
        found[key] = value
    return found


def _junit_flag(command: str) -> str | None:
    """The report path of a `--junitxml=<path>` (or `--junitxml <path>`) in the command, if any."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for index, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if flag in _JUNIT_FLAGS:
            path = value if eq else (words[index + 1] if index + 1 < len(words) else "")
            raw = PurePosixPath(path)
            return str(raw) if path and not raw.is_absolute() and ".." not in raw.parts else None
    return None


def parse_check(spec: str) -> Check:
    """`file`, `regex` and `http` are built in; anything else is a shell command (see the module doc)."""
    text = spec.strip()
    if not text:
        raise CheckError("empty check")
    options: dict[str, str] = {}
    block = _OPTIONS.fullmatch(text)
    if block:
        options, text = _options(spec.strip(), block.group(1)), block.group(2).strip()
        if not text:
            raise CheckError(f"check `{spec.strip()}`: nothing to check after the options")
    try:
        timeout = httpcheck.seconds(options["timeout"]) if "timeout" in options else None
    except HttpSpecError as exc:
        raise CheckError(f"check `{spec.strip()}`: timeout {exc}") from None
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word == "file":
        try:
            parts = shlex.split(rest)
        except ValueError as exc:
            raise CheckError(f"check `{spec}`: {exc}") from None
        if len(parts) != 1:
            raise CheckError(f"check `{spec}`: expected `file <path>`")
        return FileCheck(spec.strip(), _relative_path(text, parts[0]))
    if word == "regex":
        return dataclasses.replace(_parse_regex(text, rest), spec=spec.strip())
    if word == "http":
        try:
            check = httpcheck.parse(spec.strip(), rest)
        except HttpSpecError as exc:
            raise CheckError(f"check `{spec.strip()}`: {exc}") from None
        return dataclasses.replace(check, timeout=timeout) if timeout is not None else check
    report = _relative_path(spec.strip(), options["junit"]) if "junit" in options else _junit_flag(text)
    return CommandCheck(spec.strip(), text, timeout, report)


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


def _limits_for(check: CommandCheck | HttpCheck, limits: Limits, default_timeout: float | None) -> Limits:
    timeout = check.timeout or default_timeout
    return dataclasses.replace(limits, timeout=timeout) if timeout else limits


def _timed_out(result: Result, limits: Limits, check: CommandCheck | HttpCheck) -> str:
    if not result.timed_out:
        return ""
    source = "its `timeout=`" if check.timeout else "the check timeout"
    return f"timed out after {limits.timeout:g}s ({source}); the check failed\n"


def _read_junit(check: CommandCheck, workdir: Path, since: float) -> tuple[str, dict[str, Any]]:
    """The report's summary line and details, when the run wrote one (older files are stale)."""
    if check.junit is None:
        return "", {}
    target = _inside(workdir, check.junit)
    if target is None or not target.is_file() or target.stat().st_mtime < since - 1:
        return (f"\njunit: no report written at {check.junit}", {"junit": None}) if target is not None else ("", {})
    try:
        summary = junit.parse(target.read_bytes()[: junit.MAX_BYTES + 1])
    except junit.JUnitError as exc:
        return f"\njunit: {check.junit}: {exc}", {"junit": None}
    return f"\n{summary.line()}", {"junit": {"path": check.junit, **summary.as_dict()}}


def _run_command(check: CommandCheck, sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits,
                 default_timeout: float | None, cancel: threading.Event | None = None) -> CheckResult:
    limits = _limits_for(check, limits, default_timeout)
    since = time.time()
    result = sandbox.run(["sh", "-c", check.command], workdir, env, limits, cancel=cancel)
    note, details = _read_junit(check, workdir, since)
    output = _timed_out(result, limits, check) + result.output_tail(OUTPUT_CHARS - len(note)) + note
    return CheckResult(check.spec, check.kind, result.ok, result.exit_code, output.strip("\n"), result.duration,
                       details)


def _run_http(check: HttpCheck, sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits,
              default_timeout: float | None, cancel: threading.Event | None = None) -> CheckResult:
    limits = _limits_for(check, limits, default_timeout)
    result = sandbox.run(["python3", "-c", httpcheck.PROBE, httpcheck.payload(check)], workdir, env, limits,
                         cancel=cancel)
    measured = httpcheck.measurement(result.stdout)
    if measured is None:
        why = _timed_out(result, limits, check) or "the http probe ended without a measurement\n"
        return CheckResult(check.spec, check.kind, False, result.exit_code,
                           (why + result.output_tail(OUTPUT_CHARS)).strip("\n"), result.duration)
    passed, output, details = httpcheck.judge(check, measured)
    return CheckResult(check.spec, check.kind, passed, None, output[-OUTPUT_CHARS:], result.duration, details)


def refusal(check: Check, allow: Allowlist) -> str | None:
    """Why the allowlist refuses the check's commands, or None; file and regex checks run nothing."""
    if isinstance(check, CommandCheck):
        return allow.refuse_command(check.command)
    if isinstance(check, HttpCheck) and check.service:
        return allow.refuse_command(check.service)
    return None


def run_check(
    check: Check, sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits,
    *, allow: Allowlist = ALLOW_ALL, default_timeout: float | None = None, cancel: threading.Event | None = None,
) -> CheckResult:
    """Run one parsed check; a command the allowlist refuses fails without running. `cancel` (a stop) kills it."""
    if isinstance(check, FileCheck):
        return _run_file(check, workdir)
    if isinstance(check, RegexCheck):
        return _run_regex(check, workdir)
    refused = refusal(check, allow)
    if refused:
        return CheckResult(check.spec, "refused", False, None, f"not run: {refused}", 0.0)
    if isinstance(check, HttpCheck):
        return _run_http(check, sandbox, workdir, env, limits, default_timeout, cancel)
    return _run_command(check, sandbox, workdir, env, limits, default_timeout, cancel)


def run_checks(
    specs: Sequence[str], sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits,
    *, allow: Allowlist = ALLOW_ALL, default_timeout: float | None = None, cancel: threading.Event | None = None,
) -> list[CheckResult]:
    """Run every check in order, even after a failure, so the report shows them all; none after a stop (`cancel`)."""
    results = []
    for spec in specs:
        if cancel is not None and cancel.is_set():
            break
        try:
            check = parse_check(spec)
        except CheckError as exc:
            results.append(CheckResult(spec, "invalid", False, None, str(exc), 0.0))
            continue
        results.append(run_check(check, sandbox, workdir, env, limits, allow=allow,
                                 default_timeout=default_timeout, cancel=cancel))
    return results
