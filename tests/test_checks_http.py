"""The `http` check, per-check timeouts and JUnit reports, run for real in the local sandbox.

The services are real servers started by the check's own `service:` command inside the sandbox
(bubblewrap when it works here, with the network off: loopback still answers there).
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from runner import docker_sandbox, httpcheck, junit
from runner.checks import CheckError, CommandCheck, parse_check, run_checks
from runner.httpcheck import HttpCheck
from runner.sandbox import Limits, LocalSandbox

LIMITS = Limits(timeout=30)
DOCKER_IMAGE = os.environ.get("CLARITY_TEST_IMAGE", "clarity-test:py")  # as tests/test_docker_sandbox.py
BUILD_IMAGE = Path(__file__).parent / "fixtures" / "docker" / "build_image.sh"
SLOW_SERVER = """
import http.server, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(float(sys.argv[2]))
        self.send_response(200); self.end_headers(); self.wfile.write(b"slow")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
"""


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<h1>hello</h1>")
    (tmp_path / "slow.py").write_text(SLOW_SERVER)
    return tmp_path


def _serve(port: int) -> str:
    return f"service: python3 -m http.server {port} --bind 127.0.0.1"


@pytest.mark.parametrize(("spec", "expected"), [
    ("http http://127.0.0.1:8000/health",
     HttpCheck("http http://127.0.0.1:8000/health", "http://127.0.0.1:8000/health")),
    ("http http://localhost:9/ status=200,204 samples=5 p95<200ms max<1s wait=5s service: ./run.sh --port 9",
     HttpCheck("http http://localhost:9/ status=200,204 samples=5 p95<200ms max<1s wait=5s service: ./run.sh --port 9",
               "http://localhost:9/", (200, 204), 5, (("p95", 0.2), ("max", 1.0)), 5.0, "./run.sh --port 9")),
    ("[timeout=1m] http http://127.0.0.1:1/",
     HttpCheck("[timeout=1m] http http://127.0.0.1:1/", "http://127.0.0.1:1/", timeout=60.0)),
    ("[timeout=30s] pytest -q", CommandCheck("[timeout=30s] pytest -q", "pytest -q", 30.0)),
    ("[junit=out/j.xml, timeout=2m] make test",
     CommandCheck("[junit=out/j.xml, timeout=2m] make test", "make test", 120.0, "out/j.xml")),
    ("pytest -q --junitxml=reports/junit.xml",
     CommandCheck("pytest -q --junitxml=reports/junit.xml", "pytest -q --junitxml=reports/junit.xml",
                  junit="reports/junit.xml")),
    ("pytest --junitxml /tmp/x.xml", CommandCheck("pytest --junitxml /tmp/x.xml", "pytest --junitxml /tmp/x.xml")),
    ("[ -f setup.py ]", CommandCheck("[ -f setup.py ]", "[ -f setup.py ]")),
])
def test_parse_http_and_options_table(spec: str, expected: object) -> None:
    assert parse_check(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("http", "expected `http <url>"),
    ("http ftp://x/", "`ftp://x/` is not an http:// or https:// URL"),
    ("http http://x/ status=ok", "status must be codes like 200"),
    ("http http://x/ samples=0", "samples must be a whole number from 1 to 1000"),
    ("http http://x/ p95<fast", "`fast` is not a duration"),
    ("http http://x/ colour=red", "unknown option `colour=red`"),
    ("http http://x/ service:", "`service:` needs the command"),
    ("[timeout=soon] true", "timeout `soon` is not a duration"),
    ("[retries=3] true", "unknown option `retries=3`"),
    ("[timeout=3s]", "nothing to check after the options"),
    ("[junit=../x.xml] true", "must stay inside the repository"),
])
def test_bad_http_and_option_checks_say_why(spec: str, message: str) -> None:
    with pytest.raises(CheckError) as caught:
        parse_check(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(("values", "name", "expected"), [
    ([0.1], "p95", 0.1), ([0.3, 0.1, 0.2], "p50", 0.2), ([0.3, 0.1, 0.2], "max", 0.3),
    ([float(i) for i in range(1, 21)], "p95", 19.0), ([float(i) for i in range(1, 101)], "p99", 99.0),
])
def test_nearest_rank_percentiles(values: list[float], name: str, expected: float) -> None:
    assert httpcheck.percentile(values, name) == expected


def test_judge_names_what_was_measured_and_what_was_wanted() -> None:
    check = httpcheck.parse("http …", "http://127.0.0.1:1/ status=200 p95<100ms")
    passed, output, details = httpcheck.judge(check, {"ready": True, "samples": [[200, 0.01], [500, 0.3]]})
    assert not passed
    assert "status 200 ×1, 500 ×1 (wanted 200)" in output
    assert "FAILED: 1 status 500; p95 300ms is not below 100ms" in output
    assert details["statuses"] == {"200": 1, "500": 1} and details["latency_ms"]["p95"] == 300.0


def test_http_check_passes_against_a_service_it_started(sandbox: LocalSandbox, site: Path, port: int) -> None:
    spec = f"http http://127.0.0.1:{port}/ status=200 p95<2s samples=8 {_serve(port)}"
    [result] = run_checks([spec], sandbox, site, {}, LIMITS)
    assert result.passed, result.output
    assert (result.kind, result.exit_code) == ("http", None)
    assert f"GET http://127.0.0.1:{port}/ ×8: status 200 ×8 (wanted 200)" in result.output
    assert result.details["samples"] == 8 and set(result.details["latency_ms"]) >= {"p50", "p95", "max"}


def test_http_check_fails_on_the_wrong_status(sandbox: LocalSandbox, site: Path, port: int) -> None:
    [result] = run_checks([f"http http://127.0.0.1:{port}/missing samples=3 {_serve(port)}"],
                          sandbox, site, {}, LIMITS)
    assert not result.passed
    assert "status 404 ×3 (wanted 200)" in result.output and "FAILED: 3 status 404" in result.output


def test_http_check_fails_on_latency(sandbox: LocalSandbox, site: Path, port: int) -> None:
    spec = f"http http://127.0.0.1:{port}/ samples=3 p95<100ms service: python3 slow.py {port} 0.3"
    [result] = run_checks([spec], sandbox, site, {}, LIMITS)
    assert not result.passed, result.output
    assert "status 200 ×3" in result.output
    assert "is not below 100ms" in result.output and result.details["latency_ms"]["p95"] >= 300


def test_a_service_that_never_comes_up_fails_clearly(sandbox: LocalSandbox, site: Path, port: int) -> None:
    never, crashes = run_checks([f"http http://127.0.0.1:{port}/ wait=1s service: sleep 30",
                                 f"http http://127.0.0.1:{port}/ service: echo no config >&2; exit 3"],
                                sandbox, site, {}, LIMITS)
    assert not never.passed and never.duration < 10
    assert never.output == f"nothing answered at 127.0.0.1:{port} within 1s (service: `sleep 30`)"
    assert not crashes.passed
    assert crashes.output.startswith("the service `echo no config >&2; exit 3` exited with code 3 before")
    assert "no config" in crashes.output


def test_a_check_over_its_timeout_fails_with_a_clear_message(sandbox: LocalSandbox, tmp_path: Path) -> None:
    own, repo_wide, quick = run_checks(["[timeout=0.5s] sleep 20", "sleep 20", "[timeout=5s] true"],
                                       sandbox, tmp_path, {}, LIMITS, default_timeout=0.5)
    assert not own.passed and own.output.startswith("timed out after 0.5s (its `timeout=`); the check failed")
    assert not repo_wide.passed and repo_wide.output.startswith("timed out after 0.5s (the check timeout)")
    assert quick.passed


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
  <testcase classname="tests.test_a" name="test_ok" time="0.1"/>
  <testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2">trace</failure></testcase>
  <testcase classname="tests.test_b" name="test_boom"><error message="fixture">trace</error></testcase>
  <testcase classname="tests.test_b" name="test_later"><skipped message="todo"/></testcase>
</testsuite></testsuites>
"""


def test_junit_report_is_counted_with_failing_names() -> None:
    summary = junit.parse(JUNIT.encode())
    assert summary == junit.JUnitSummary(4, 1, 1, 1, ("tests.test_a::test_bad", "tests.test_b::test_boom"))
    assert summary.line() == "junit: 4 tests, 1 failed, 1 errors, 1 skipped: tests.test_a::test_bad, tests.test_b::test_boom"


@pytest.mark.parametrize(("data", "message"), [
    (b"<html/>", "expected <testsuites> or <testsuite>, found <html>"),
    (b"<testsuite", "not valid XML"),
])
def test_bad_junit_reports_say_why(data: bytes, message: str) -> None:
    with pytest.raises(junit.JUnitError) as caught:
        junit.parse(data)
    assert message in str(caught.value)


def test_a_command_check_reads_the_junit_report_it_wrote(sandbox: LocalSandbox, tmp_path: Path) -> None:
    (tmp_path / "report.xml").write_text(JUNIT)
    (tmp_path / "stale.xml").write_text(JUNIT)
    os.utime(tmp_path / "stale.xml", (1, 1))  # written long before the check ran: not this run's report
    wrote, stale = run_checks(["cp report.xml out.xml; exit 1 # --junitxml=out.xml",
                               "[junit=stale.xml] true"], sandbox, tmp_path, {}, LIMITS)
    assert not wrote.passed
    assert wrote.output.endswith("junit: 4 tests, 1 failed, 1 errors, 1 skipped: "
                                 "tests.test_a::test_bad, tests.test_b::test_boom")
    assert wrote.details["junit"]["failed"] == ["tests.test_a::test_bad", "tests.test_b::test_boom"]
    assert stale.passed and stale.output == "junit: no report written at stale.xml"


@pytest.fixture
def sandbox() -> LocalSandbox:
    return LocalSandbox()


@pytest.mark.docker
def test_http_check_in_the_docker_sandbox_uses_the_containers_loopback(site: Path, port: int) -> None:
    try:
        client = docker_sandbox.connect()
    except docker_sandbox.DockerError as exc:
        pytest.skip(f"no docker engine answers: {exc}")
    subprocess.run([str(BUILD_IMAGE), DOCKER_IMAGE], check=True, capture_output=True, timeout=300)
    label = f"t-{uuid.uuid4().hex[:10]}"
    sandbox = docker_sandbox.DockerSandbox(client, docker_sandbox.DockerConfig(
        image=DOCKER_IMAGE, pids=128, labels={docker_sandbox.LABEL_EXECUTION: label}), kill_grace=0.5)
    up, down = run_checks([f"http http://127.0.0.1:{port}/ samples=3 {_serve(port)}",
                           f"http http://127.0.0.1:{port}/ wait=1s service: sleep 30"], sandbox, site, {}, LIMITS)
    assert up.passed, up.output
    assert not down.passed and down.output.startswith(f"nothing answered at 127.0.0.1:{port} within 1s")
    assert client.containers.list(all=True, filters={"label": f"{docker_sandbox.LABEL_EXECUTION}={label}"}) == []


def test_a_redirect_is_the_status_not_followed(sandbox: LocalSandbox, site: Path, port: int) -> None:
    (site / "docs").mkdir()  # http.server answers /docs with 301 to /docs/
    [result] = run_checks([f"http http://127.0.0.1:{port}/docs status=301 samples=2 {_serve(port)}"],
                          sandbox, site, {}, LIMITS)
    assert result.passed, result.output
    assert "status 301 ×2 (wanted 301)" in result.output
