"""Budgets (DESIGN §15): the pure decisions, the grammar, the config, the meter, and the whole stack."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

import devstack
from clarity import budget, repoconfig, tasklist
from clarity.budget import Budget, BudgetError, Usage
from clarity.models import Execution
from clarity.status import ExecutionStatus
from clarity.store import Store
from github_app.commands import Command, Reply, Verb, help_text, parse
from jobs import budgets
from jobs.attempts import AttemptPlan, attempt_task
from jobs.failures import ErrorClass, classify_run
from runner.sandbox import Limits, LocalSandbox
from tests.e2e import REPO, branch_file, check_for, git, store_of, wait_comment, wait_settled

# --- pure decisions -------------------------------------------------------------------------------

EXHAUSTED = [
    (Budget(), Usage(time=1e6, attempts=10**6, cost=1e6, tokens=10**9), False, None),
    (Budget(time=5), Usage(time=3.9), False, None),
    (Budget(time=5), Usage(time=4.2), False, "time budget of 5s used up (4.2s active)"),  # < 1 s left
    (Budget(time=5), Usage(time=5.3), False, "time budget of 5s used up (5.3s active)"),
    (Budget(time=5), Usage(time=1.0), True, "time budget of 5s used up (5.0s active)"),  # its clock killed it
    (Budget(time=5400), Usage(time=5500), False, "time budget of 1h30m used up (1h31m40s active)"),
    (Budget(attempts=3), Usage(attempts=2), False, None),
    (Budget(attempts=3), Usage(attempts=3), False, "attempt budget of 3 used up (3 attempts made)"),
    (Budget(cost=1), Usage(cost=0.99), False, None),
    (Budget(cost=1), Usage(cost=1.2), False, "cost budget $1.00 reached ($1.20 spent)"),
    (Budget(cost=1), Usage(cost=1.0), False, "cost budget $1.00 reached ($1.00 spent)"),
    (Budget(tokens=2000), Usage(tokens=2500), False, "token budget of 2,000 reached (2,500 used)"),
    (Budget(time=60, cost=1), Usage(time=70, cost=2), False, "time budget of 1m used up (1m10s active)"),
    (Budget(time=60, cost=1), Usage(time=10, cost=2), False, "cost budget $1.00 reached ($2.00 spent)"),
]


@pytest.mark.parametrize(("limits", "used", "killed", "reason"), EXHAUSTED)
def test_exhausted_names_the_first_used_up_limit(limits: Budget, used: Usage, killed: bool,
                                                 reason: str | None) -> None:
    assert budget.exhausted(limits, used, killed) == reason


@pytest.mark.parametrize(("task_timeout", "left", "clock"), [
    (900.0, None, (900.0, False)),
    (900.0, 5.0, (5.0, True)),
    (10.0, 30.0, (10.0, False)),
    (10.0, 10.0, (10.0, False)),  # equal: the task's own timeout, a plain `timeout` if it fires
])
def test_an_attempts_clock_is_the_shorter_of_task_timeout_and_time_left(task_timeout: float, left: float | None,
                                                                        clock: tuple[float, bool]) -> None:
    assert budget.attempt_timeout(task_timeout, left) == clock


def test_a_kill_by_the_budgets_clock_is_classified_budget_not_timeout() -> None:
    assert classify_run(143, True, "timeout", budget_clock=True) is ErrorClass.BUDGET
    assert classify_run(143, True, "timeout") is ErrorClass.TIMEOUT
    assert classify_run(1, False, None, budget_clock=True) is ErrorClass.AGENT_CRASHED


@pytest.mark.parametrize(("words", "parsed"), [
    ("30m", Budget(time=1800)),
    ("$5", Budget(cost=5)),
    ("30m $5", Budget(time=1800, cost=5)),
    ("1h30m attempts=40 tokens=500k", Budget(time=5400, attempts=40, tokens=500_000)),
    ("time=90s cost=0.5 tokens=2m", Budget(time=90, cost=0.5, tokens=2_000_000)),
    ("$0.25 TOKENS=1500", Budget(cost=0.25, tokens=1500)),
])
def test_budget_words_read_into_limits_and_back(words: str, parsed: Budget) -> None:
    assert budget.parse_spec(words) == parsed
    assert budget.parse_spec(parsed.spec()) == parsed


@pytest.mark.parametrize(("words", "problem"), [
    ("", "a budget needs at least one limit"),
    ("30", "`30` is not a budget limit; write a duration"),
    ("30m 1h", "the time limit is given twice"),
    ("$0", "`cost` must be more than $0"),
    ("$five", "`cost` must be an amount in US dollars"),
    ("attempts=0", "`attempts` must be a whole number from 1"),
    ("tokens=1.0001k", "`tokens` must be a whole number"),
    ("money=5", "`money` is not a budget limit; the limits are `time`, `attempts`, `cost`, `tokens`"),
    ("time=400d", "`time` must be a duration like 90s, 30m, 2h or 1h30m"),
])
def test_bad_budget_words_say_what_a_good_one_looks_like(words: str, problem: str) -> None:
    with pytest.raises(BudgetError) as caught:
        budget.parse_spec(words)
    assert str(caught.value).startswith(problem)


def test_an_executions_own_limits_win_over_the_repositorys_one_by_one() -> None:
    repo = Budget(time=7200, attempts=40, cost=20)
    assert Budget(cost=5).over(repo) == Budget(time=7200, attempts=40, cost=5)
    assert Budget().over(repo) == repo
    assert budget.from_api({"time": "30m", "cost": 5}) == Budget(time=1800, cost=5)
    assert budget.from_api("30m $5") == Budget(time=1800, cost=5)
    assert budget.from_api(None) == Budget()


@pytest.mark.parametrize(("report", "usage"), [
    ('{"tokens": 1234, "cost_usd": 0.05}', Usage(tokens=1234, cost=0.05)),
    ('{"tokens": 7, "model": "x"}', Usage(tokens=7)),
    ("{}", Usage()),
])
def test_a_usage_report_is_read(report: str, usage: Usage) -> None:
    assert budget.parse_usage(report) == usage


@pytest.mark.parametrize("report", ["{not json", "[1, 2]", '{"tokens": -1}', '{"tokens": 1.5}',
                                    '{"cost_usd": "a lot"}', '{"tokens": true}', '{"cost_usd": NaN}'])
def test_a_garbled_usage_report_is_refused(report: str) -> None:
    with pytest.raises(BudgetError):
        budget.parse_usage(report)


# --- the comment grammar -----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "fields"), [
    ("/clarity run until 2.3 budget 30m", {"until": "2.3", "budget": "time=30m"}),
    ("/clarity run budget $5", {"budget": "cost=$5"}),
    ("/clarity run budget 30m $5 until 2.3", {"until": "2.3", "budget": "time=30m cost=$5"}),
    ("/clarity run until 2.3 budget 30m $5 attempts=10.", {"until": "2.3", "budget": "time=30m attempts=10 cost=$5"}),
    ("/clarity run budget tokens=500k tool aider", {"tool": "aider", "budget": "tokens=500000"}),
])
def test_run_takes_a_budget_of_one_or_more_limits(body: str, fields: dict[str, str]) -> None:
    [command] = parse(body)
    assert isinstance(command, Command) and command.verb is Verb.RUN
    assert {k: getattr(command, k) for k in fields} == fields


def test_resume_takes_a_budget_too() -> None:
    [command] = parse("/clarity resume budget 1h")
    assert command == Command(Verb.RESUME, 1, "/clarity resume budget 1h", budget="time=1h")


NOT_A_LIMIT = ("is not a budget limit; write a duration (`30m`, `2h`), an amount (`$5`), `attempts=40`"
               " or `tokens=500k`.")


@pytest.mark.parametrize(("body", "problem"), [
    ("/clarity run budget", "`/clarity run budget` needs a budget limit, like `/clarity run budget 30m $5`."),
    ("/clarity run budget until 2", "`/clarity run budget` needs a budget limit, like `/clarity run budget 30m $5`."),
    ("/clarity run budget 30m budget $5", "`budget` is given more than once; give each option at most once."),
    ("/clarity run budget 30m 2h", "the time limit is given twice; give each limit at most once."),
    ("/clarity run budget soon", f"`soon` {NOT_A_LIMIT}"),
    ("/clarity run budget @org/team", f"`@org/team` {NOT_A_LIMIT}"),
])
def test_a_bad_budget_in_a_comment_names_its_problem(body: str, problem: str) -> None:
    [reply] = parse(body)
    assert isinstance(reply, Reply) and reply.problem == problem


def test_help_shows_the_budget_option_of_run_and_resume() -> None:
    text = help_text()
    assert "[priority <1-10>] [budget <limits>]`" in text
    assert "`/clarity resume [budget <limits>]`" in text
    assert "- `budget <limits>`: limit the execution's active time (`30m`, `2h`), agent cost (`$5`)" in text


# --- the repository's config ---------------------------------------------------------------------

def test_the_repositorys_budget_is_read_from_clarity_yml() -> None:
    config = repoconfig.parse('budget: {time: 2h, attempts: 40, cost: "$20", tokens: 2000000}\n')
    assert config.budget == Budget(time=7200, attempts=40, cost=20, tokens=2_000_000)
    assert repoconfig.parse("retries: 1\n").budget == Budget()
    assert repoconfig.parse("budget: {cost: 0.5, tokens: 500k}\n").budget == Budget(cost=0.5, tokens=500_000)


@pytest.mark.parametrize(("text", "message"), [
    ("budget: 5\n", "`budget` must be a mapping of limits (`time`, `attempts`, `cost`, `tokens`)"),
    ("budget: {money: 5}\n", "`budget.money` is not a budget limit"),
    ("budget: {time: soon}\n", "`budget.time` must be a duration like 90s, 30m, 2h or 1h30m, got 'soon'"),
    ("budget: {time: 0}\n", "`budget.time` must be more than 0s"),
    ("budget: {cost: free}\n", "`budget.cost` must be an amount in US dollars like $5 or $0.50, got 'free'"),
    ("budget: {attempts: 0}\n", "`budget.attempts` must be a whole number from 1 to 1,000,000"),
    ("budget: {tokens: true}\n", "`budget.tokens` must be a whole number from 1"),
])
def test_a_bad_budget_in_the_config_names_the_key(text: str, message: str) -> None:
    with pytest.raises(repoconfig.ConfigError) as caught:
        repoconfig.parse(text)
    assert str(caught.value).startswith(f"{repoconfig.CONFIG_PATH}: {message}")


# --- the meter against a real Redis and a real sandbox ---------------------------------------------

def _execution(store: Store, **fields: object) -> Execution:
    return store.create(Execution(id="", installation_id=1, repo=REPO, account="acme", issue_number=1,
                                  is_pull_request=False, branch="b", base_branch="main", requester="ada",
                                  **fields), actor="test")  # type: ignore[arg-type]


def test_usage_reports_add_up_and_a_garbled_one_is_logged_and_ignored(store: Store, tmp_path: Path) -> None:
    ex = _execution(store)
    meter = budgets.Meter(store, ex, Budget(cost=1), time.monotonic())
    for n, report in enumerate(['{"tokens": 1000, "cost_usd": 0.6}', "{oops", '{"tokens": 500, "cost_usd": 0.5}']):
        (tmp_path / str(n)).mkdir()
        (tmp_path / str(n) / budgets.USAGE_FILE).write_text(report)
        meter.charge(tmp_path / str(n), "1")
    meter.charge(tmp_path / "none", "1")  # no report: no usage
    after = store.get(ex.id)
    assert (after.tokens_used, round(after.cost_usd, 6)) == (1500, 1.1)
    assert any("usage report was ignored: not JSON" in line.get("message", "") for line in store.log_lines(ex.id))
    with pytest.raises(budgets.Exhausted, match=r"^cost budget \$1\.00 reached \(\$1\.10 spent\)$"):
        meter.check()
    assert any(a["kind"] == "budget.exhausted" and a["execution"] == ex.id for a in store.audit())


def test_the_time_budget_kills_the_running_attempt_at_its_deadline(store: Store, tmp_path: Path) -> None:
    ex = _execution(store, time_used=8.5)  # earlier steps used 8.5 s of a 10 s budget: 1.5 s are left
    workdir = tmp_path / "ws"
    workdir.mkdir()
    task = tasklist.parse("- [ ] 1 Sleep\n").get("1")
    plan = AttemptPlan(task=task, agent="command",
                       agent_options={"command": f"{sys.executable} -c 'import time; time.sleep(60)'"},
                       checks=(), workdir=workdir, artifacts=tmp_path / "artifacts", repo=REPO, branch="b",
                       limits=Limits(timeout=60), retries=3, backoff=0.0,
                       meter=budgets.Meter(store, ex, Budget(time=10), time.monotonic()))
    events: list[tuple[str, int]] = []
    started = time.monotonic()
    with pytest.raises(budgets.Exhausted, match=r"^time budget of 10s used up"):
        attempt_task(plan, LocalSandbox(isolation="none"), threading.Event(),
                     lambda event, attempt, _: events.append((event, attempt)))
    assert 1.4 <= time.monotonic() - started <= 1.5 + 2.0  # killed within 2 s of the deadline
    assert events == [("attempt", 1)]  # never retried, never counted as a failed attempt
    verdict = json.loads((tmp_path / "artifacts" / "attempt-1" / "result.json").read_text())
    assert (verdict["error_class"], verdict["killed_by"]) == ("budget", "timeout")


# --- the whole stack ----------------------------------------------------------------------------------

def _repo(stack: devstack.Stack, tmp_path: Path, tasks: list[tuple[str, str]], config: str = "") -> None:
    source = tmp_path / "src"
    (source / ".github").mkdir(parents=True)
    lines = ["# Tasks", ""]
    for task_id, title in tasks:
        lines += [f"- [ ] {task_id} {title}", f"  - {check_for(task_id)}"]
    (source / "tasks_list.md").write_text("\n".join(lines) + "\n")
    (source / "README.md").write_text("# widgets\n")
    if config:
        (source / ".github" / "clarity.yml").write_text(config)
    stack.create_repo(REPO, source)
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})


def test_a_time_budget_kills_a_slow_agent_at_the_deadline_and_pauses(stack, tmp_path: Path) -> None:
    _repo(stack, tmp_path, [("1", "Think hard [slow:60]")])
    stack.comment(REPO, 1, "/clarity run budget 5s", user="ada")
    ex = wait_settled(stack, timeout=40)
    assert ex.status is ExecutionStatus.PAUSED, ex.reason
    assert ex.reason.startswith("time budget of 5s used up (")
    assert ex.budget == "time=5s" and ex.attempts == 1
    lines = store_of(stack).log_lines(ex.id, 500)
    started = next(line["time"] for line in lines if line["kind"] == "step.started")
    killed = next(line["time"] for line in lines if line.get("message", "").startswith("budget: time budget"))
    assert 5.0 - 0.1 <= killed - started <= 5.0 + 2.0, killed - started  # the deadline is 5 s of active time
    assert 5.0 <= store_of(stack).get(ex.id).time_used < 10
    verdict = json.loads((stack.settings.artifacts_dir / ex.id / "1" / "attempt-1" / "result.json").read_text())
    assert verdict["error_class"] == "budget"
    assert str(store_of(stack).task(ex.id, "1").status) == "pending"  # it runs again once the budget allows
    comment = wait_comment(stack, "time budget of 5s used up")
    assert "paused" in comment["body"] and "/clarity resume budget" in comment["body"]
    runs = stack.admin("GET", "/state")["check_runs"]
    [task_run] = [r for r in runs if r["name"] == "Clarity: 1 Think hard [slow:60]"]
    assert task_run["conclusion"] == "neutral" and "time budget of 5s used up" in task_run["summary"]
    assert any("time budget of 5s used up" in (r.get("summary") or "") for r in runs
               if r["name"].startswith("Clarity: run"))


def test_a_cost_budget_pauses_before_the_next_attempt_and_a_raised_one_finishes(stack, tmp_path: Path) -> None:
    usage = "[usage:tokens=1000,cost=0.6]"
    _repo(stack, tmp_path, [("1", f"One {usage}"), ("2", f"Two {usage}"), ("3", f"Three {usage}")],
          config="budget: {cost: 1, time: 10m}\n")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.PAUSED, ex.reason
    assert ex.reason.startswith("cost budget $1.00 reached ($1.20 spent)")
    assert (ex.tasks_completed, ex.attempts, ex.tokens_used) == (2, 2, 2000)  # task 3 never started
    assert round(ex.cost_usd, 6) == 1.2
    assert "- [ ] 3 Three" in branch_file(stack, "tasks_list.md")
    assert any(a["kind"] == "budget.exhausted" and a["execution"] == ex.id for a in store_of(stack).audit())
    wait_comment(stack, "cost budget $1.00 reached ($1.20 spent)")

    stack.comment(REPO, 1, "/clarity resume", user="ada")
    refusal = wait_comment(stack, "stays paused")
    assert "cost budget $1.00 reached ($1.20 spent)" in refusal["body"]
    assert store_of(stack).get(ex.id).status is ExecutionStatus.PAUSED

    since = time.time()
    stack.comment(REPO, 1, "/clarity resume budget $5", user="ada")
    ex = wait_settled(stack, since=since)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert ex.budget == "cost=$5" and round(ex.cost_usd, 6) == 1.8 and ex.tokens_used == 3000
    assert git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()[0] == f"clarity: 3 Three {usage}"
