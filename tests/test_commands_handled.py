"""Every `/clarity` command is one row of github_app.commands.GRAMMAR, and every row's handler is real.

The row names its handler by dotted name (github_app may not import jobs); jobs.comments resolves the
names at import. These tests hold each name to a function of jobs that takes what jobs.comments passes.
"""

from __future__ import annotations

import inspect
import typing
from collections import Counter

import pytest

from github_app.commands import GRAMMAR, Command, Verb, needed
from github_app.reporting import Reporter
from github_app.roles import Role
from jobs import comments
from jobs.comment_event import CommentEvent
from jobs.context import Engine

EXPECTED = {"eng": Engine, "reporter": Reporter, "event": CommentEvent, "command": Command, "return": str}


def test_every_verb_has_exactly_one_row() -> None:
    assert Counter(spec.verb for spec in GRAMMAR) == Counter(set(Verb))


@pytest.mark.parametrize("spec", GRAMMAR, ids=lambda spec: str(spec.verb))
def test_each_rows_handler_resolves_to_a_function_of_jobs_taking_what_intake_passes(spec: typing.Any) -> None:
    module, colon, name = spec.handler.partition(":")
    assert colon and module.startswith("jobs.") and name, spec.handler
    handler = comments.resolve(spec.handler)
    assert inspect.isfunction(handler) and handler.__module__ == module
    assert list(inspect.signature(handler).parameters) == ["eng", "reporter", "event", "command"]
    assert typing.get_type_hints(handler) == EXPECTED
    assert comments.HANDLERS[spec.verb] is handler


def test_a_handler_name_that_names_nothing_fails_to_resolve() -> None:
    with pytest.raises(AttributeError):
        comments.resolve("jobs.verbs:no_such_verb")
    with pytest.raises(ModuleNotFoundError):
        comments.resolve("jobs.no_such_module:run")


def test_the_roles_of_design_section_5_are_in_the_rows() -> None:
    """Managers re-prioritise; the reads (status, help) are for anyone who can read; the rest, team_member."""
    assert {verb: needed(verb) for verb in Verb} == {
        **{verb: Role.TEAM_MEMBER for verb in Verb}, Verb.PRIORITY: Role.MANAGER,
        Verb.STATUS: Role.VIEWER, Verb.HELP: Role.VIEWER}
