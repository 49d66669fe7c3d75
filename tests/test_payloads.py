"""Typed reads of webhook payloads (github_app.payloads): each bad shape is refused with a reason naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from github_app.payloads import Installation, Payload, PayloadError

GOOD = {"action": "created", "installation": {"id": 7, "account": {"login": "acme"}},
        "repository": {"full_name": "acme/widgets"}, "sender": {"login": "ada"},
        "repositories": [{"full_name": "acme/a"}, {"full_name": "acme/b"}],
        "issue": {"number": 3, "locked": False, "pull_request": {"url": "x"}}}


def test_a_well_formed_payload_reads_back() -> None:
    read = Payload("issue_comment", GOOD)
    assert read.installation() == Installation(7, "acme")
    assert (read.repo(), read.login("sender.login"), read.number("issue.number")) == ("acme/widgets", "ada", 3)
    assert (read.flag("issue.locked"), read.present("issue.pull_request")) == (False, True)
    assert read.repos("repositories") == ("acme/a", "acme/b")
    assert read.text("missing.path", default="") == "" and read.repos("absent") == ()
    assert read.optional_repo("nowhere.full_name") is None and read.login("nobody.login", default="github") == "github"


# (how the payload is changed, what is read, the reason)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"repository": {"full_name": "widgets"}}, "repo", "'repository.full_name' (the text 'widgets', not an owner/name)"),
    ({"repository": {"full_name": "a/b/c"}}, "repo", "not an owner/name"),
    ({"repository": {"full_name": 42}}, "repo", "'repository.full_name' (the number 42, not a text)"),
    ({"repository": ["acme/widgets"]}, "repo", "'repository' (a list, not an object)"),
    ({"repository": None}, "repo", "'repository' (absent or null)"),
    ({"installation": [7]}, "installation", "'installation' (a list, not an object)"),
    ({"installation": {"id": "7"}}, "installation", "'installation.id' (the text '7', not an id)"),
    ({"installation": {"id": True}}, "installation", "'installation.id' (the boolean true, not an id)"),
    ({"installation": {"id": 0}}, "installation", "not an id"),
    ({"installation": {"id": 2**64}}, "installation", "not an id"),
    ({"installation": {"id": 7, "account": "acme"}}, "installation", "'installation.account' (the text 'acme'"),
    ({"installation": {}}, "installation", "the issue_comment payload has no installation id (is the app installed?)"),
    ({"sender": {"login": ["ada"]}}, "sender", "'sender.login' (a list, not a text)"),
    ({"sender": {"login": "../../orgs"}}, "sender", "not a login"),
    ({"issue": {"number": 1.5}}, "number", "'issue.number' (the number 1.5, not an id)"),
    ({"issue": {"number": 3, "locked": "no"}}, "flag", "'issue.locked' (the text 'no', not a boolean)"),
    ({"issue": {"number": 3, "pull_request": "yes"}}, "present", "'issue.pull_request' (the text 'yes', not an object)"),
    ({"repositories": {"full_name": "acme/a"}}, "repos", "'repositories' (an object, not a list)"),
    ({"repositories": ["acme/a"]}, "repos", "'repositories.0' (the text 'acme/a', not an object)"),
    ({"repositories": [{"full_name": "acme"}]}, "repos", "'repositories.0.full_name' (the text 'acme', not an owner/name)"),
    ({"repository": {"full_name": "x" * 500}}, "repo", "(the text 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'…, not a"),
]
READS = {"repo": lambda r: r.repo(), "installation": lambda r: r.installation(),
         "sender": lambda r: r.login("sender.login", default="github"), "number": lambda r: r.number("issue.number"),
         "flag": lambda r: r.flag("issue.locked"), "present": lambda r: r.present("issue.pull_request"),
         "repos": lambda r: r.repos("repositories")}


@pytest.mark.parametrize(("change", "what", "reason"), BAD, ids=lambda v: repr(v)[:50])
def test_each_bad_shape_is_refused_with_its_field_named(change: dict[str, Any], what: str, reason: str) -> None:
    with pytest.raises(PayloadError) as refused:
        READS[what](Payload("issue_comment", {**GOOD, **change}))
    assert reason in str(refused.value)


@pytest.mark.parametrize("data", [[], "text", 7, None])
def test_a_payload_that_is_not_an_object_is_refused(data: object) -> None:
    with pytest.raises(PayloadError, match="the push payload is .*, not a JSON object"):
        Payload("push", data)
