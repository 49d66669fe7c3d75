"""Who did something, as Clarity writes it: a GitHub user as an @-mention, anything else never as one.

Actors reach the engine as strings: a GitHub login (comments, buttons, the dashboard's signed-in people),
`token:<name>` (a script's API token, `dashboard.auth`), or `engine` (Clarity itself). Only a login is a
person GitHub can notify; a token's name is the operator's free text, so it is written inert (`token
`dev``), never after an `@` where GitHub would link, and maybe notify, whoever has that name.
"""

from __future__ import annotations

import re

TOKEN_PREFIX = "token:"
ENGINE = "engine"
# GitHub's logins: letters, digits and single hyphens, at most 39 characters (bots end in `[bot]`).
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}(?:\[bot\])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_person(actor: str) -> bool:
    """Whether `actor` is a GitHub login (someone an @-mention reaches)."""
    return actor != ENGINE and bool(_LOGIN.fullmatch(actor))


def shown(actor: str) -> str:
    """`@ada` for a person, `token `dev`` for an API token, `Clarity` for the engine; inert otherwise.

    A person may carry the engine's note after a space (`grace (pushed to `main`)`, a pause flag's value):
    the login is the mention, the note stays as written.
    """
    if actor == ENGINE:
        return "Clarity"
    if not actor:
        return "someone"
    if actor.startswith(TOKEN_PREFIX):
        return f"token {literal(actor[len(TOKEN_PREFIX):])}"
    login, _, note = actor.partition(" ")
    if is_person(login):
        return f"@{login} {note}" if note else f"@{login}"
    return literal(actor)


def literal(text: str, limit: int = 200) -> str:
    """`text` as one Markdown code span: no mention, link or formatting in it takes effect; one line, capped."""
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > limit:
        text = text[:limit] + "…"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
