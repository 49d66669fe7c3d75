"""A comment → `/clarity` Commands and problem Replies, read against a grammar table (Atlantis' parser).

Pure and I/O free. Only the lines github_app.comment_lines shows are read; each is judged on its own,
so one bad line never hides a good one. A command is a line whose first word is `/clarity` (any case);
`/clarity` later in a line, or glued to other text (`/clarity:run`, `/claritybot`), is not a command.
A single `.` ending the line is dropped (end of a sentence): `/clarity run until 2.3.` is `2.3`.
`/clarity` alone is `Command(Verb.HELP)`, so every Reply from `parse` is a problem and has `problem`
set. Work is capped: the first 65,536 characters (GitHub's maximum body) and the first 10 commands.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TypeVar

from github_app import comment_lines
from github_app.command_help import help_text
from github_app.command_spec import (
    PREFIX,
    TASK_ID,
    Command,
    OptionSpec,
    Problem,
    Reply,
    Verb,
    VerbSpec,
    canonical_id,
    code,
)

MAX_BODY_CHARS = 65536
MAX_COMMANDS = 10

_Named = TypeVar("_Named", VerbSpec, OptionSpec)


def parse(body: str, grammar: tuple[VerbSpec, ...]) -> list[Command | Reply]:
    """Commands and problem replies in a comment body, in line order; [] when it is not for us."""
    items: list[Command | Reply] = []
    commands = 0
    for number, shown in comment_lines.visible(body[:MAX_BODY_CHARS]):
        item = _read_command(shown, number, grammar)
        if item is None:
            continue
        if commands == MAX_COMMANDS:
            problem = (
                f"a comment may hold at most {MAX_COMMANDS} commands; line {number} and later were not read."
            )
            items.append(_reply(problem, number, grammar))
            break
        commands += 1
        items.append(item)
    return items


def _spelled(specs: Sequence[_Named], words: list[str], at: int) -> tuple[_Named, tuple[str, ...]] | None:
    """The verb or option whose spelling the lower-cased `words` start with at `at`; longest wins."""
    found: tuple[_Named, tuple[str, ...]] | None = None
    for spec in specs:
        for name in spec.names:
            if tuple(words[at : at + len(name)]) == name and (found is None or len(name) > len(found[1])):
                found = (spec, name)
    return found


def _find_verb(grammar: tuple[VerbSpec, ...], words: list[str]) -> tuple[VerbSpec, tuple[str, ...]]:
    """The verb the words start with, or a problem naming the unknown one."""
    found = _spelled(grammar, words, 0)
    if found is not None:
        return found
    known = [name[0] for spec in grammar for name in spec.names if len(name) == 1]
    guess = difflib.get_close_matches(words[0], known, n=1)
    hint = f"; did you mean `{PREFIX} {guess[0]}`?" if guess else "."
    raise Problem(f"unknown command {code(f'{PREFIX} {words[0]}')}{hint}")


def _find_option(spec: VerbSpec, words: list[str], at: int) -> tuple[OptionSpec, tuple[str, ...]] | None:
    """The option of `spec` spelled at `at`, if any."""
    return _spelled(spec.options, words, at)


def _unexpected(spec: VerbSpec, said: str, raw: list[str], at: int) -> Problem:
    """The problem with a word that is neither the argument nor an option of the verb."""
    head = f"`{PREFIX} {said}`"
    if spec.second is not None and spec.argument is not None:  # override: two positionals, then its option
        then = ", then optionally " + " or ".join(f"`{' '.join(o.names[0])} {o.value.placeholder}`"
                                                  for o in spec.options) if spec.options else ""
        return Problem(f"{head} takes one {spec.argument.noun} and then {spec.second.noun}{then}, "
                        f"got {code(' '.join(raw))}.")
    if not spec.options:
        if spec.argument is None:
            return Problem(f"{head} takes no arguments, got {code(' '.join(raw))}.")
        count = "one" if spec.argument_required else "at most one"
        then = f" and then {spec.second.noun}" if spec.second is not None else ""
        return Problem(f"{head} takes {count} {spec.argument.noun}{then}, got {code(' '.join(raw))}.")
    word = raw[at]
    takes_id = [" ".join(o.names[0]) for o in spec.options if o.value is TASK_ID]
    if takes_id and canonical_id(word) is not None:
        keywords = " or ".join(f"`{name}`" for name in takes_id)
        example = f"`{PREFIX} {said} {takes_id[0]} {word}`"
        return Problem(
            f"{head} has no option {code(word)}; put {keywords} before a task id, like {example}."
        )
    names = [f"`{' '.join(o.names[0])}`" for o in spec.options]
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    return Problem(f"{head} has no option {code(word)}; its options are {listed}.")


def _read_arguments(spec: VerbSpec, said: str, raw: list[str], words: list[str]) -> dict[str, str | int]:
    """Validate what follows the verb into Command fields."""
    values: dict[str, str | int] = {}
    at = 0
    if spec.argument is not None:
        if at < len(raw) and _find_option(spec, words, at) is None:
            values[spec.argument_field] = spec.argument.read(raw[at])
            at += 1
        elif spec.argument_required:
            example = f"`{PREFIX} {said} {spec.argument.example}`"
            raise Problem(f"`{PREFIX} {said}` needs a {spec.argument.noun}, like {example}.")
    if spec.second is not None and spec.argument is not None:
        if at >= len(raw):
            first = values.get(spec.argument_field, spec.argument.example)
            example = f"`{PREFIX} {said} {first} {spec.second.example}`"
            raise Problem(f"`{PREFIX} {said}` needs {spec.second.noun} after the {spec.argument.noun}, "
                           f"like {example}.")
        values[spec.second_field] = spec.second.read(raw[at])
        at += 1
    while at < len(raw):
        found = _find_option(spec, words, at)
        if found is None:
            raise _unexpected(spec, said, raw, at)
        option, name = found
        if option.field in values:
            raise Problem(_repeated(option))
        value_at = at + len(name)
        if value_at >= len(raw) or (not option.rest and _find_option(spec, words, value_at) is not None):
            typed = f"{said} {' '.join(name)}"
            example = f"`{PREFIX} {typed} {option.value.example}`"
            raise Problem(f"`{PREFIX} {typed}` needs a {option.value.noun}, like {example}.")
        end = len(raw) if option.rest else value_at + 1
        while option.many and end < len(raw) and _find_option(spec, words, end) is None:
            end += 1
        values[option.field] = option.value.read(" ".join(raw[value_at:end]))
        at = end
    for first, second, why in spec.conflicts:
        if first in values and second in values:
            raise Problem(f"`{first}` and `{second}` cannot be combined: {why}.")
    return values


def _repeated(option: OptionSpec) -> str:
    """The problem with an option given twice, naming its aliases so `to 1 until 2` makes sense."""
    canonical = " ".join(option.names[0])
    text = f"`{canonical}` is given more than once; give each option at most once"
    if len(option.names) > 1:
        aliases = " and ".join(f"`{' '.join(name)}`" for name in option.names[1:])
        text += f" ({aliases} also mean `{canonical}`)"
    return text + "."


def _drop_final_period(raw: list[str]) -> list[str]:
    """Drop one sentence-ending `.` from the last word, but never turn `2..` into the id `2.`."""
    last = raw[-1]
    if len(last) > 1 and last.endswith(".") and not last.endswith(".."):
        return [*raw[:-1], last[:-1]]
    return raw


def _read_command(line: str, number: int, grammar: tuple[VerbSpec, ...]) -> Command | Reply | None:
    """A Command or Reply for a line that starts with `/clarity`; None for any other line."""
    raw = line.split()
    if not raw:
        return None
    raw = _drop_final_period(raw)
    if raw[0].lower() != PREFIX:
        return None
    text = line.strip()
    raw = raw[1:]
    if not raw:
        return Command(Verb.HELP, number, text)
    words = [word.lower() for word in raw]
    try:
        spec, name = _find_verb(grammar, words)
        values = _read_arguments(spec, " ".join(name), raw[len(name) :], words[len(name) :])
    except Problem as problem:
        return _reply(str(problem), number, grammar)
    return Command(spec.verb, number, text, **values)  # type: ignore[arg-type]


def _reply(problem: str, line: int, grammar: tuple[VerbSpec, ...]) -> Reply:
    """A Reply that states the problem, then the help."""
    return Reply(f"{problem}\n\n{help_text(grammar)}", line=line, problem=problem)
