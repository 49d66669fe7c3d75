"""The `/clarity` commands: one row each, holding its grammar, help, the role it needs and its handler.

After Prow's plugins (a handler registers with its help, which names who may use it) and Atlantis'
comment parser (`parse` returns Commands and Replies, or nothing; it never acts). `GRAMMAR` is the only
list of commands: the parser (github_app.command_parser) and the help (github_app.command_help) read
it, intake refuses a command to anyone below its row's `role`, and jobs.comments runs its row's
`handler`. This module holds the table and is what callers import. Pure and I/O free.

Decisions where the grammar is silent:
- Task ids also accept their own trailing dot (`1.` is task 1), and `N.0` means `N`, `02` means `2`;
  ids are returned in that canonical form (the one clarity.tasklist uses). Existence is checked later.
- Aliases: `to` and `stop after` mean `until`; `stop-point` is also `stop_point`, `stoppoint`,
  `stop point` and `stop after` (`/clarity stop after 2.3` moves the stop point, it never stops).
- `only X` runs just X and combines with `tool` and `priority`; with `until` it is an error.
- `budget` takes every word up to the next option (`budget 30m $5 until 2.3`); the words are
  clarity.budget's (`30m`, `$5`, `attempts=40`, `tokens=500k`) and come back in its canonical form.
- Tool names are lower-cased (agents are named in lower case).
- The reads (status, help) change nothing, so whoever may read the repository may ask; managers
  re-prioritise the queue; every other command needs team_member (DESIGN §5).
"""

from __future__ import annotations

from clarity import stopping
from github_app import command_help, command_parser
from github_app.command_parser import MAX_BODY_CHARS, MAX_COMMANDS
from github_app.command_spec import (
    LIMITS,
    OUTCOME,
    PREFIX,
    PRIORITY,
    REASON_CHARS,
    TASK_ID,
    TOOL_NAME,
    WHY,
    Command,
    OptionSpec,
    Reply,
    ValueSpec,
    Verb,
    VerbSpec,
)
from github_app.roles import Role

__all__ = [
    "GRAMMAR", "MAX_BODY_CHARS", "MAX_COMMANDS", "PREFIX", "REASON_CHARS", "TASK_ID", "Command", "OptionSpec",
    "Reply", "ValueSpec", "Verb", "VerbSpec", "help_text", "needed", "parse",
]

BUDGET = OptionSpec(
    "budget", (("budget",),), LIMITS,
    "limit the execution's active time (`30m`, `2h`), agent cost (`$5`), `attempts=40` or `tokens=500k`,"
    " one or more of them like `budget 30m $5`; they replace the same limits of `.github/clarity.yml`",
    many=True,
)

GRAMMAR: tuple[VerbSpec, ...] = (
    VerbSpec(
        Verb.RUN,
        (("run",),),
        "Start working through `tasks_list.md`, one task after another.",
        Role.TEAM_MEMBER,
        "jobs.verbs:run",
        options=(
            OptionSpec(
                "until",
                (("until",), ("to",), ("stop", "after")),
                TASK_ID,
                "run the open tasks in order up to and including this one (every task under it if it"
                " is a group), then pause",
            ),
            OptionSpec("only", (("only",),), TASK_ID, "run just this task"),
            OptionSpec("tool", (("tool",),), TOOL_NAME, "use this agent instead of the configured one"),
            OptionSpec("priority", (("priority",),), PRIORITY, "queue priority, a whole number from 1 to 10 (10 runs first)"),
            BUDGET,
        ),
        conflicts=(("only", "until", "`only` runs one task, `until` runs every task up to a stop point"),),
    ),
    VerbSpec(
        Verb.STOP_POINT,
        (("stop-point",), ("stop_point",), ("stoppoint",), ("stop", "point"), ("stop", "after")),
        "Change the stop point of the running execution.",
        Role.TEAM_MEMBER,
        "jobs.verbs:set_stop_point",
        argument=TASK_ID,
        argument_required=True,
    ),
    VerbSpec(Verb.PAUSE, (("pause",),), "Pause the running execution after the task in progress.",
             Role.TEAM_MEMBER, "jobs.verbs:pause"),
    VerbSpec(Verb.RESUME, (("resume",),), "Resume a paused execution; one paused by its budget resumes only"
             " once the budget allows it (raise it with `budget`).", Role.TEAM_MEMBER, "jobs.verbs:resume",
             options=(BUDGET,)),
    VerbSpec(Verb.STOP, (("stop",),), stopping.MEANS, Role.TEAM_MEMBER, "jobs.verbs:stop"),
    VerbSpec(
        Verb.RETRY,
        (("retry",),),
        "Run a failed or skipped task again (without an id: every failed task) and continue the execution;"
        " a named task that did not fail is refused, with the reason.",
        Role.TEAM_MEMBER,
        "jobs.verbs:retry",
        argument=TASK_ID,
    ),
    VerbSpec(Verb.STATUS, (("status",),), "Reply with the state of this issue's execution and the command that"
             " moves it on; anyone who can read the repository may ask.", Role.VIEWER, "jobs.verbs:status"),
    VerbSpec(
        Verb.PRIORITY,
        (("priority",),),
        "Change the queue priority of this issue's execution, 1 to 10 (10 runs first; managers only).",
        Role.MANAGER,
        "jobs.verbs:prioritise",
        argument=PRIORITY,
        argument_required=True,
        argument_field="priority",
    ),
    VerbSpec(
        Verb.OVERRIDE,
        (("override",), ("manual-override",)),
        "Mark a blocked, failed or open task as done (ticked and committed by Clarity, without the agent)"
        " or skipped (never run; tasks that depend on it cannot run either), then continue the execution."
        " Either way `task_outcomes.md`, the PR and the commit record who, when and why.",
        Role.TEAM_MEMBER,
        "jobs.verbs:override",
        argument=TASK_ID,
        argument_required=True,
        second=OUTCOME,
        second_field="outcome",
        options=(OptionSpec("reason", (("because",), ("reason",), ("reason:",)), WHY,
                            "why, in your words: the rest of the line", rest=True),),
    ),
    VerbSpec(Verb.HELP, (("help",),), "Show this help.", Role.VIEWER, "jobs.verbs:show_help"),
)
_ROWS = {spec.verb: spec for spec in GRAMMAR}


def parse(body: str, grammar: tuple[VerbSpec, ...] = GRAMMAR) -> list[Command | Reply]:
    """Commands and problem replies in a comment body, in line order; [] when it is not for us."""
    return command_parser.parse(body, grammar)


def help_text(grammar: tuple[VerbSpec, ...] = GRAMMAR) -> str:
    """Markdown help, generated from the same grammar table the parser reads."""
    return command_help.help_text(grammar)


def needed(verb: Verb) -> Role:
    """The least role that may give a command: its row's `role`."""
    return _ROWS[verb].role
