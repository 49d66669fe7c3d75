"""The ways to run Clarity say the same thing: Procfile, Dockerfile and compose.yaml."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, command in (line.split(": ", 1) for line in lines if line)}


def test_compose_runs_redis_with_an_append_only_file_and_the_procfile_processes() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert services["worker"]["command"] == procfile()["worker"]
    assert services["web"]["build"] == services["worker"]["build"] == "."
    for name in ("web", "worker"):  # both write metrics to the directory /metrics adds up
        assert "metrics:/metrics" in services[name]["volumes"]
        # each role its own Redis ACL user and password (tests/test_redis_acl.py runs compose's ACL script)
        assert services[name]["environment"]["REDIS_URL"] == (
            f"redis://clarity-{name}:${{REDIS_{name.upper()}_PASSWORD}}@redis:6379/0")


def test_compose_gives_the_worker_what_the_local_sandbox_needs_and_the_web_process_nothing_more() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    worker, web = services["worker"], services["web"]
    # bubblewrap's namespaces and a cgroup per run: without them every task is refused (issue 13, finding 7)
    assert worker.get("privileged") is True and worker.get("cgroup") == "host" and worker.get("user") == "0:0"
    assert "privileged" not in web and "user" not in web and "cgroup" not in web


def test_the_image_serves_the_app_like_the_procfile() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    cmd = re.search(r"^CMD (\[.*?\])\s*$", text, re.MULTILINE | re.DOTALL)
    assert cmd is not None
    image = json.loads(cmd.group(1))
    web = procfile()["web"]
    assert image[0] == web[0] == "gunicorn" and image[-1] == web[-1] == "app:create_app()"
    for flag in ("--workers", "--worker-class", "--threads", "--timeout"):
        assert image[image.index(flag) + 1] == web[web.index(flag) + 1], flag
