"""The `clarity` command line, a composition root like app.py: the subcommand table and `main`.

To add a subcommand, write `def cmd_name(args) -> int` in the module of its concern and add one
`Subcommand` line to SUBCOMMANDS. A subcommand returns the exit status: 0 for success, 2 for input
the user has to fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from cli.args import USAGE_ERROR, Subcommand, arg
from cli.keys import SECRETS_ACTIONS, TOKENS_ACTIONS, cmd_secrets, cmd_sessions, cmd_tokens
from cli.ops import cmd_deliveries, cmd_demo, cmd_history, cmd_setup, cmd_worker
from cli.tasks import cmd_tasks

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
