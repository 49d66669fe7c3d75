"""Setup commands, the command allowlist, and the `pre` / `post_execution` gates of a repository.

When each runs (`.github/clarity.yml`):
- `setup:` before every task, in the task's sandbox, because every step re-syncs the workspace
  (`git clean`), so nothing setup built survives to the next step. First failure blocks.
- `gates.pre`: once when an execution starts (or is resumed), before its first task. Failure blocks.
- `gates.post_task` (or a plain `gates:` list): with every task's own checks (jobs.attempts).
- `gates.post_execution`: when the execution reaches its stop point or completes. Failure blocks,
  and the comment names the gate.
Gates are checks (runner.checks grammar: command, file, regex, http); setup lines are shell commands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from clarity.repoconfig import RepoConfig
from clarity.settings import Settings
from jobs import sandboxes
from runner import checks, exchange
from runner.allowlist import Allowlist
from runner.checks import CheckError, CheckResult
from runner.sandbox import Limits, Sandbox

EXCERPT_CHARS = 1500


def allowlist(settings: Settings, config: RepoConfig) -> Allowlist:
    """The app's allowlist narrowed by the repository's `allowed_commands:`."""
    return Allowlist(settings.command_allowlist, config.allowed_commands)


def refused(specs: Sequence[str], allow: Allowlist, what: str = "check") -> str | None:
    """The first check (or, with what="setup command", shell command) the allowlist refuses, or None.

    Checks that do not parse are left to fail as checks, with their own message.
    """
    for spec in specs:
        if what != "check":
            why = allow.refuse_command(spec)
        else:
            try:
                why = checks.refusal(checks.parse_check(spec), allow)
            except CheckError:
                continue
        if why:
            return f"{what} `{spec}` was not run: {why}"
    return None


def _excerpt(text: str) -> str:
    text = text.strip("\n")
    body = text if len(text) <= EXCERPT_CHARS else "[...]\n" + text[-EXCERPT_CHARS:]
    return f"\n```\n{body}\n```" if body else ""


def run_setup(commands: Sequence[str], sandbox: Sandbox, workdir: Path, env: Mapping[str, str], limits: Limits,
              allow: Allowlist) -> str | None:
    """Run the setup commands in order; the first failure's message (command, exit code, output), or None."""
    why = refused(commands, allow, "setup command")
    if why:
        return why
    for command in commands:
        result = sandbox.run(["sh", "-c", command], workdir, env, limits)
        if not result.ok:
            how = "timed out" if result.timed_out else f"failed (exit {result.exit_code})"
            return f"setup command `{command}` {how}{_excerpt(result.output_tail(EXCERPT_CHARS))}"
    return None


def failure(phase: str, results: Sequence[CheckResult]) -> str | None:
    """The blocking reason for a gate phase's results ("pre gate `ruff check .` failed ..."), or None."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return None
    first = failed[0]
    more = f" (and {len(failed) - 1} more gate(s))" if len(failed) > 1 else ""
    code = f" (exit {first.exit_code})" if first.exit_code is not None else ""
    return f"{phase} gate `{first.name}` failed{code}{more}{_excerpt(first.output)}"


def run_gates(phase: str, specs: Sequence[str], sandbox: Sandbox, workdir: Path, limits: Limits,
              allow: Allowlist, default_timeout: float | None) -> tuple[list[CheckResult], str | None]:
    """Run every gate of a phase (all of them, for the report) and say whether they block."""
    results = checks.run_checks(specs, sandbox, workdir, {}, limits, allow=allow, default_timeout=default_timeout)
    return results, failure(phase, results)


def before_task(setup: Sequence[str], sandbox: Sandbox, workdir: Path, specs: Sequence[str], limits: Limits,
                allow: Allowlist, say: Callable[[str], None]) -> str | None:
    """Why the task cannot start: a check the allowlist refuses (known before any attempt, so no attempt
    is spent on it) or a failed setup command; None when it can."""
    why = refused(specs, allow)
    if why or not setup:
        return why
    say(f"setup: {len(setup)} command(s)")
    return run_setup(setup, sandbox, workdir, {}, limits, allow)


def run_phase(settings: Settings, config: RepoConfig, execution_id: str, phase: str, specs: Sequence[str],
              workdir: Path, log: Callable[[str, str], None]) -> str | None:
    """Run a `pre` or `post_execution` phase in a sandbox of its own; log each gate; the blocking reason."""
    folder = settings.exchange_dir / execution_id / f"gates-{phase}"
    sandbox = sandboxes.for_task(settings, config, folder, execution_id, f"gates-{phase}", workdir)
    log(f"{phase} gates: {len(specs)} to run", "info")
    try:
        results, blocked = run_gates(phase, specs, sandbox, workdir,
                                     Limits(timeout=config.timeout or settings.task_timeout),
                                     allowlist(settings, config), config.check_timeout)
    finally:
        exchange.remove(folder)
    for result in results:
        verdict = "passed" if result.passed else "FAILED"
        log(f"{phase} gate `{result.name}`: {verdict}\n{result.output}", "info" if result.passed else "warning")
    return blocked
