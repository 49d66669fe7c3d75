"""The command allowlist (DESIGN §11): which programs agents, checks, setup and gates may start.

The app's `CLARITY_COMMAND_ALLOWLIST` (program names or globs) is the outer bound; a repository's
`allowed_commands:` may only narrow it: a program must match both lists (an empty list allows all).

A shell command is read with POSIX sh quoting (quotes and backslashes honoured, `#` comments
dropped) and split at `;`, `&&`, `||`, `|`, `&`, `(`, `)` and newlines; the first word of each segment is its program, after leading
`NAME=value` assignments, redirections (`>out cmd`) and the keywords `if then else elif fi while
until do done ! { } time`. `for`/`select` headers hold no program. What is *not* caught, by design:
a program started by an allowed program (`sh -c`, `python -c`, `make`, `xargs`, `env`, `npm run`),
so allowing such a program allows everything it can start. What cannot be read is refused while an
allowlist is set: command substitution (`$(...)`, backticks), process substitution (`<(...)`),
here-documents, `case` statements and a program named by a variable (`$TOOL`), even inside quotes.
Words are matched as written (`fnmatch`): `pytest` does not match `/usr/bin/pytest`; list `*/pytest`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

APP_SETTING = "CLARITY_COMMAND_ALLOWLIST"
REPO_SETTING = "`allowed_commands` in .github/clarity.yml"
# Shell builtins that start nothing: always allowed, so `cd sub && pytest` needs only pytest listed.
ALWAYS = frozenset({"cd", "true", "false", "test", "[", "echo", "printf", "exit", "export", "set", "unset",
                    "pwd", ":", "wait", "shift", "read", "return"})
SEPARATORS = frozenset({";", "&&", "||", "|", "&", "|&", "(", ")", "\n", ";;", ";&"})
REDIRECTIONS = frozenset({"<", ">", ">>", ">&", "<&", "&>", ">|", "<>"})
# Longest first, so `&&` is never read as two `&`.
_OPERATORS = tuple(sorted({*SEPARATORS, *REDIRECTIONS, "<<"}, key=len, reverse=True))
KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "while", "until", "do", "done", "!", "{", "}", "time"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
_HIDDEN = (("$(", "command substitution `$(...)`"), ("`", "command substitution with backticks"),
           ("<(", "process substitution `<(...)`"), (">(", "process substitution `>(...)`"),
           ("<<", "a here-document"))


class UnreadableCommand(ValueError):
    """A shell command whose programs cannot be told without running it; the message says why."""


def _double_quoted(command: str, start: int) -> tuple[str, int]:
    """The text of a "..." starting at `start` (backslash escapes as sh reads them) and the index after it."""
    text: list[str] = []
    index = start + 1
    while index < len(command) and command[index] != '"':
        if command[index] == "\\" and command[index + 1 : index + 2] in ('"', "\\", "$", "`"):
            index += 1
        text.append(command[index])
        index += 1
    if index >= len(command):
        raise UnreadableCommand("it has an unclosed double quote")
    return "".join(text), index + 1


def tokens(command: str) -> list[tuple[str, bool]]:
    """POSIX sh words and operators: (text, is_operator). Quotes and backslashes make words, never
    operators, so `find . -exec rm {} ';'` has no separator in it. `#` at a word's start comments out
    the rest of the line."""
    found: list[tuple[str, bool]] = []
    word: list[str] = []
    in_word = False
    index = 0
    while index < len(command):
        char = command[index]
        if char == "'":
            end = command.find("'", index + 1)
            if end < 0:
                raise UnreadableCommand("it has an unclosed single quote")
            word.append(command[index + 1 : end])
            in_word, index = True, end + 1
        elif char == '"':
            text, index = _double_quoted(command, index)
            word.append(text)
            in_word = True
        elif char == "\\":
            if command[index + 1 : index + 2] not in ("", "\n"):
                word.append(command[index + 1])
                in_word = True
            index += 2
        elif char == "#" and not in_word:  # a comment, up to the newline (which still separates)
            end = command.find("\n", index)
            index = len(command) if end < 0 else end
        elif char in " \t\r":
            if in_word:
                found.append(("".join(word), False))
                word, in_word = [], False
            index += 1
        else:
            operator = next((op for op in _OPERATORS if command.startswith(op, index)), None)
            if operator is None:
                word.append(char)
                in_word, index = True, index + 1
                continue
            if in_word:
                found.append(("".join(word), False))
                word, in_word = [], False
            found.append((operator, True))
            index += len(operator)
    if in_word:
        found.append(("".join(word), False))
    return found


def program_words(command: str) -> tuple[str, ...]:
    """The program word of every segment of a shell command, in order (duplicates kept)."""
    for marker, what in _HIDDEN:
        if marker in command:
            raise UnreadableCommand(f"it uses {what}, which hides what it runs")
    programs: list[str] = []
    expect, skip_header, skip_target = True, False, False
    for text, operator in tokens(command):
        if skip_target and not operator:
            skip_target = False
        elif operator and text in SEPARATORS:
            expect, skip_header, skip_target = True, False, False
        elif operator:
            skip_target = expect  # a redirection before the program: its target is no program
        elif skip_header or not expect or text in KEYWORDS or _ASSIGNMENT.fullmatch(text):
            continue
        elif text in ("for", "select"):
            skip_header = True
        elif text == "case":
            raise UnreadableCommand("`case` statements are not read by the allowlist")
        elif "$" in text:
            raise UnreadableCommand(f"the program `{text}` is only known when the shell runs")
        else:
            programs.append(text)
            expect = False
    return tuple(programs)


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The app's patterns and the repository's narrowing of them; both empty means allow all."""

    app: tuple[str, ...] = ()
    repo: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether anything is restricted at all."""
        return bool(self.app or self.repo)

    def refuse_program(self, program: str) -> str | None:
        """None when the program may run, else a message naming it and the setting that refuses it."""
        if program in ALWAYS:
            return None
        for patterns, setting in ((self.app, APP_SETTING), (self.repo, REPO_SETTING)):
            if patterns and not any(fnmatch.fnmatchcase(program, p) for p in patterns):
                return f"`{program}` is not allowed by {setting} (allowed: {', '.join(patterns)})"
        return None

    def refuse_command(self, command: str) -> str | None:
        """None when every program of a shell command may run, else why the command is refused."""
        if not self.active:
            return None
        try:
            words = program_words(command)
        except UnreadableCommand as exc:
            return f"`{command}` is refused while {APP_SETTING} or allowed_commands is set: {exc}"
        return next((why for why in map(self.refuse_program, words) if why), None)

    def refuse_argv(self, argv: Sequence[str]) -> str | None:
        """None when argv[0] (an agent's program, no shell) may run, else why not."""
        if not self.active or not argv:
            return None
        return self.refuse_program(argv[0])
