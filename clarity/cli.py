"""The `clarity` command line: one function per subcommand, listed in SUBCOMMANDS.

To add a subcommand, write `def cmd_name(args) -> int` and add one `Subcommand` line to SUBCOMMANDS.
A subcommand returns the exit status: 0 for success, 2 for input the user has to fix.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clarity.tasklist import Task, TaskList, TaskListError, parse

if TYPE_CHECKING:
    from clarity.apitokens import ApiTokens
    from clarity.vault import Vault

USAGE_ERROR = 2


@dataclass(frozen=True, slots=True)
class Arg:
    """One `add_argument` call: its flags or name, and its keyword arguments."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    """Describe an argument exactly as `ArgumentParser.add_argument` takes it."""
    return Arg(flags, options)


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A subcommand: the function that runs it, its one-line help and its arguments."""

    run: Callable[[argparse.Namespace], int]
    help: str
    args: tuple[Arg, ...] = ()


def cmd_tasks(args: argparse.Namespace) -> int:
    """Show the task tree of a tasks_list.md and the order its tasks would run in."""
    try:
        text = Path(args.file).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return _fail(f"cannot read {args.file}: {getattr(err, 'strerror', None) or err}")
    try:
        tasks = parse(text, filename=args.file)
        order = tasks.run_order(args.until)
        until = tasks.get(args.until).id if args.until is not None else None
    except TaskListError as err:
        return _fail(str(err))
    if args.json:
        print(json.dumps(_tasks_json(tasks, order, until), ensure_ascii=False, indent=2))
    else:
        print("\n".join(_tasks_tree(tasks, order, until)))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Process Clarity's queues (the `worker` process of the Procfile)."""
    from clarity.settings import SettingsError

    try:
        from jobs.worker import work  # the CLI is an edge: it composes the engine lazily

        return work(role=args.role, burst=args.burst)
    except SettingsError as err:
        return _fail(str(err))


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the self-contained demo: forge, web, worker, a sample repo and a `/clarity run` comment."""
    from devstack.demo import main as demo_main  # composition root, like app.py

    return demo_main(until=args.until, keep=args.keep)


def cmd_setup(args: argparse.Namespace) -> int:
    """Create the GitHub App from Clarity's manifest and store its id, key and secrets in the vault."""
    import os

    from redis import RedisError

    from clarity.settings import Settings, SettingsError
    from clarity.vault import Vault, VaultError

    try:
        settings = Settings.from_env(args.env, require_github=False)
        vault = Vault.from_settings(settings)
        vault.names()  # reach Redis now, not after the person has clicked through GitHub
    except (SettingsError, VaultError) as err:
        return _fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return _fail(f"Redis (REDIS_URL) failed: {err}")
    from github_app.setup import SetupError, run_setup  # the CLI composes lazily

    try:
        return run_setup(settings, vault, name=args.name, org=args.org, port=args.port,
                         open_browser=not args.no_browser, timeout=args.timeout,
                         env=os.environ if args.env is None else args.env)
    except SetupError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print("\nstopped: no app was stored", file=sys.stderr)
        return 130


SECRETS_ACTIONS = ("generate-key", "set", "list", "rotate", "delete")


def cmd_secrets(args: argparse.Namespace) -> int:
    """Manage encrypted secrets; needs only REDIS_URL, CLARITY_NAMESPACE and CLARITY_SECRET_KEYS."""
    from redis import RedisError

    from clarity.settings import Settings, SettingsError
    from clarity.vault import Vault, VaultError, generate_key

    if args.action == "generate-key":
        print(generate_key())
        return 0
    needs_name = args.action in ("set", "delete")
    if needs_name != (args.name is not None):
        return _fail(f"secrets {args.action} {'takes a NAME' if needs_name else 'takes no NAME'}")
    try:
        vault = Vault.from_settings(Settings.from_env(args.env, require_github=False))
        return _SECRETS_RUN[args.action](vault, args)
    except (SettingsError, VaultError) as err:
        return _fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return _fail(f"Redis (REDIS_URL) failed: {err}")


def _secrets_set(vault: Vault, args: argparse.Namespace) -> int:
    # The value comes from stdin (piped) or a hidden prompt, never from argv where `ps` would show it.
    if sys.stdin.isatty():
        value = getpass.getpass(f"value for {args.name}: ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    vault.set(args.name, value, scope=args.scope)
    print(f"stored {args.name} ({args.scope})")
    return 0


def _secrets_list(vault: Vault, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    infos = vault.names()
    if not infos:
        print("no secrets stored")
        return 0
    rows = [("NAME", "SCOPE", "UPDATED (UTC)", "KEY")]
    for info in infos:
        when = datetime.fromtimestamp(info.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        key = ("not in CLARITY_SECRET_KEYS" if info.key_position is None
               else f"{info.key_position}{' (current)' if info.key_position == 1 else ''}")
        rows.append((info.name, info.scope, when, key))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _secrets_rotate(vault: Vault, args: argparse.Namespace) -> int:
    report = vault.rotate()
    print(f"rotated {report.rotated}, already under key 1: {report.already_current}, "
          f"unreadable: {len(report.unreadable)}, total {report.total}")
    if report.unreadable:
        return _fail(f"{len(report.unreadable)} secret(s) were encrypted with a key that is not in "
                     f"CLARITY_SECRET_KEYS and were left as they are: {', '.join(report.unreadable)}")
    return 0


def _secrets_delete(vault: Vault, args: argparse.Namespace) -> int:
    vault.delete(args.name)
    print(f"deleted {args.name}")
    return 0


_SECRETS_RUN: dict[str, Callable[[Vault, argparse.Namespace], int]] = {
    "set": _secrets_set,
    "list": _secrets_list,
    "rotate": _secrets_rotate,
    "delete": _secrets_delete,
}


TOKENS_ACTIONS = ("create", "list", "revoke")


def cmd_tokens(args: argparse.Namespace) -> int:
    """API tokens for scripts (`Authorization: Bearer …`); needs only REDIS_URL and CLARITY_NAMESPACE."""
    from redis import RedisError

    from clarity.apitokens import ApiTokens, TokenError
    from clarity.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(args.env, require_github=False)
        tokens = ApiTokens.from_url(settings.redis_url, settings.namespace)
        return _TOKENS_RUN[args.action](tokens, args)
    except (SettingsError, TokenError) as err:
        return _fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return _fail(f"Redis (REDIS_URL) failed: {err}")


def _tokens_create(tokens: ApiTokens, args: argparse.Namespace) -> int:
    if args.target is not None:
        return _fail("tokens create takes no positional argument; use --installation and --role")
    token, record = tokens.create(args.role, args.installation or (), name=args.name or "",
                                  everything=args.all_installations)
    scope = "every installation" if record.everything else \
        "installation" + ("s " if len(record.installations) > 1 else " ") + ", ".join(map(str, record.installations))
    print(token)
    print(f"created token {record.id} ({record.name}): {record.role} on {scope}. "
          "It is shown only now: keep it somewhere safe.", file=sys.stderr)
    return 0


def _tokens_list(tokens: ApiTokens, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    def when(stamp: float | None) -> str:
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M") if stamp else "never"

    records = tokens.records()
    if not records:
        print("no API tokens")
        return 0
    rows = [("ID", "NAME", "ROLE", "INSTALLATIONS", "CREATED (UTC)", "LAST USED (UTC)")]
    rows += [(t.id, t.name, t.role, "all" if t.everything else ",".join(map(str, t.installations)),
              when(t.created), when(t.last_used)) for t in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _tokens_revoke(tokens: ApiTokens, args: argparse.Namespace) -> int:
    if not args.target:
        return _fail("tokens revoke takes the token's ID (or the start of it; see `clarity tokens list`)")
    record = tokens.revoke(args.target)
    print(f"revoked token {record.id} ({record.name})")
    return 0


_TOKENS_RUN: dict[str, Callable[[ApiTokens, argparse.Namespace], int]] = {
    "create": _tokens_create,
    "list": _tokens_list,
    "revoke": _tokens_revoke,
}


def cmd_sessions(args: argparse.Namespace) -> int:
    """`sessions revoke LOGIN`: end every dashboard session of a person at once; needs only REDIS_URL."""
    from redis import RedisError

    from clarity.sessions import Sessions
    from clarity.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(args.env, require_github=False)
        ended = Sessions.from_url(settings.redis_url, settings.namespace).end_all(args.login)
    except SettingsError as err:
        return _fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return _fail(f"Redis (REDIS_URL) failed: {err}")
    print(f"ended {ended} dashboard session(s) of {args.login}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """`history prune`: forget finished executions older than the retention; needs only REDIS_URL."""
    import time

    from redis import RedisError

    from clarity import history
    from clarity.settings import Settings, SettingsError
    from clarity.store import Store

    try:
        settings = Settings.from_env(args.env, require_github=False)
        days = settings.history_retention_days if args.days is None else args.days
        if days < 0:
            return _fail(f"--days must not be negative, got {days:g}")
        gone = history.prune(Store.from_url(settings.redis_url, settings.namespace), time.time(), days)
    except SettingsError as err:
        return _fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return _fail(f"Redis (REDIS_URL) failed: {err}")
    for execution_id in gone:
        print(execution_id)
    print(f"removed {len(gone)} finished execution(s) older than {days:g} days" if days > 0 else
          "retention is 0 (keep forever): nothing removed", file=sys.stderr)
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    """`deliveries reconcile`: one delivery reconciler pass now (ask GitHub for the deliveries Clarity missed)."""
    import httpx
    from githubkit.exception import GitHubException
    from redis import RedisError

    from clarity.app_credentials import load_settings
    from clarity.settings import SettingsError

    try:
        from github_app.client import describe_error  # the CLI is an edge: it composes the engine lazily
        from jobs import context, redelivery

        report = redelivery.reconcile(context.build(load_settings(args.env)))
    except SettingsError as err:
        return _fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return _fail(f"Redis (REDIS_URL) failed: {err}")
    except (GitHubException, httpx.HTTPError) as err:
        print(f"clarity: could not read the app's webhook deliveries: {describe_error(err)}", file=sys.stderr)
        return 1
    if report.skipped:
        print("another process is reconciling deliveries now: nothing done", file=sys.stderr)
        return 0
    for guid in report.asked:
        print(guid)
    print(f"read {report.read} delivery attempt(s); asked GitHub to redeliver {len(report.asked)}"
          + (f"; refused {len(report.refused)}" if report.refused else "")
          + (f"; to try again {len(report.failed)}" if report.failed else "")
          + (f"; given up {len(report.given_up)}" if report.given_up else ""), file=sys.stderr)
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "tasks": Subcommand(
        cmd_tasks,
        "show the tasks of a tasks_list.md and their run order",
        (
            arg("file", help="path to tasks_list.md"),
            arg("--until", metavar="ID", help="stop point: a task or group id"),
            arg("--json", action="store_true", help="print JSON instead of a tree"),
        ),
    ),
    "worker": Subcommand(
        cmd_worker,
        "process jobs from Redis (settings from the environment)",
        (
            arg("--role", choices=("all", "intake", "steps"), default="all",
                help="all (default): an intake worker and a steps worker; or just one of them"),
            arg("--burst", action="store_true", help="exit when the queues are empty"),
        ),
    ),
    "demo": Subcommand(
        cmd_demo,
        "run the end-to-end demo against a local GitHub stand-in",
        (
            arg("--until", default="1.3", metavar="ID", help="stop point for the demo run (default 1.3)"),
            arg("--keep", action="store_true", help="keep the servers running after the run"),
        ),
    ),
    "setup": Subcommand(
        cmd_setup,
        "create the GitHub App from Clarity's manifest; its key and secrets go to the vault",
        (
            arg("--org", metavar="ORG", help="create the app in this organization (default: your account)"),
            arg("--name", default="Clarity", help="the app's name (unique on GitHub; editable on its page)"),
            arg("--port", type=int, default=0,
                help="local port for the page and GitHub's redirect back (default: any free port)"),
            arg("--no-browser", action="store_true", help="print the page's URL instead of opening a browser"),
            arg("--timeout", type=float, metavar="SECONDS", help="give up after this long (default: wait)"),
        ),
    ),
    "secrets": Subcommand(
        cmd_secrets,
        "encrypted secrets: generate-key | set NAME (value on stdin) | list | rotate | delete NAME",
        (
            arg("action", choices=SECRETS_ACTIONS,
                help="generate-key: print a new key for CLARITY_SECRET_KEYS; set: store the value read "
                     "from stdin; list: names, scopes, dates and keys (never values); rotate: re-encrypt "
                     "everything under the first key; delete: forget a secret"),
            arg("name", nargs="?", metavar="NAME", help="the secret's name (set and delete)"),
            arg("--scope", default="global",
                help="who may use it: global (default), installation:<id> or repo:<owner>/<name>"),
        ),
    ),
    "tokens": Subcommand(
        cmd_tokens,
        "API tokens for scripts: create --role R --installation ID | list | revoke ID",
        (
            arg("action", choices=TOKENS_ACTIONS,
                help="create: print a new token once (Redis keeps only its SHA-256); list: ids, names, "
                     "roles, installations, dates (never tokens); revoke: forget a token by its id"),
            arg("target", nargs="?", metavar="ID", help="revoke: the token's id or the start of it"),
            arg("--role", choices=("viewer", "team_member", "manager", "admin"), default="viewer",
                help="what the token may do (default viewer)"),
            arg("--installation", type=int, action="append", metavar="ID",
                help="an installation the token may see (repeatable)"),
            arg("--all-installations", action="store_true", help="every installation (an operator's token)"),
            arg("--name", help="a name to tell tokens apart (default token-<id>)"),
        ),
    ),
    "sessions": Subcommand(
        cmd_sessions,
        "dashboard sessions: revoke LOGIN ends every session of that person (their cookies stop working)",
        (
            arg("action", choices=("revoke",), help="revoke: end every signed-in session of LOGIN now"),
            arg("login", metavar="LOGIN", help="the person's GitHub login"),
        ),
    ),
    "deliveries": Subcommand(
        cmd_deliveries,
        "webhook deliveries: reconcile asks GitHub to redeliver the ones Clarity never got (workers do it "
        "every CLARITY_REDELIVER_EVERY seconds)",
        (
            arg("action", choices=("reconcile",),
                help="reconcile: read the app webhook's deliveries since the last pass and ask GitHub to "
                     "redeliver each one that failed (never one that reached Clarity); prints their guids"),
        ),
    ),
    "history": Subcommand(
        cmd_history,
        "execution history: prune [--days N] forgets finished executions older than the retention",
        (
            arg("action", choices=("prune",),
                help="prune: forget completed, failed and stopped executions that finished more than N days "
                     "ago (live, queued, paused and blocked ones stay); prints their ids"),
            arg("--days", type=float, metavar="N",
                help="retention in days (default CLARITY_HISTORY_RETENTION_DAYS, 90; 0 keeps everything)"),
        ),
    ),
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the clarity command line and return its exit status; `env` replaces os.environ for settings."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors; report it as a status
        return exit_.code if isinstance(exit_.code, int) else USAGE_ERROR
    args.env = env
    return int(args.run(args))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clarity", description="Clarity: works through tasks_list.md.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        for a in command.args:
            child.add_argument(*a.flags, **a.options)
        child.set_defaults(run=command.run)
    return parser


def _fail(message: str) -> int:
    print(f"clarity: {message}", file=sys.stderr)
    return USAGE_ERROR


def _tasks_json(tasks: TaskList, order: list[str], until: str | None) -> dict[str, Any]:
    """`done` is the effective state: a parent or group is done when all its leaves are."""
    return {
        "tasks": [
            {
                "id": t.id,
                "title": t.title,
                "done": tasks.is_done(t.id),
                "depends": list(t.depends),
                "checks": list(t.checks),
                "tool": t.tool,
                "parent": t.parent,
                "is_group": t.is_group,
                "line": t.line,
            }
            for t in tasks.tasks
        ],
        "order": order,
        "until": until,
    }


def _tasks_tree(tasks: TaskList, order: list[str], until: str | None) -> list[str]:
    leaves = tasks.leaves()
    done = sum(1 for leaf in leaves if leaf.done)
    lines = [f"{tasks.filename}: {len(leaves)} leaf tasks, {done} done"]
    depth: dict[str, int] = {}
    for t in tasks.tasks:
        depth[t.id] = depth[t.parent] + 1 if t.parent in depth else 0
        lines += _task_lines(t, tasks.is_done(t.id), "  " * depth[t.id])
    scope = f"until {until}" if until is not None else "all"
    lines.append("")
    lines.append(f"Run order ({scope}): " + (" → ".join(order) if order else "nothing to do"))
    return lines


def _task_lines(task: Task, done: bool, indent: str) -> list[str]:
    mark = "[x]" if done else "[ ]"
    title = f"{indent}{mark} {task.id} {task.title}".rstrip()
    if task.is_group:
        return [f"{title}  (group)"]
    details = [f"depends: {', '.join(task.depends)}"] if task.depends else []
    details += [f"tool: {task.tool}"] if task.tool else []
    details += [f"timeout: {task.timeout}"] if task.timeout else []
    lines = [f"{title}  ({'; '.join(details)})" if details else title]
    lines += [f"{indent}      check: {check}" for check in task.checks]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
