"""Which sandbox runs a task's agent and checks: CLARITY_SANDBOX chooses `local` (the default), `docker`
or `none`.

`local` is bubblewrap plus a cgroup for every run; when either cannot be had here the task is refused
(blocked, class `infra`, with what is missing and how to fix it), never quietly run without isolation.
`docker` needs an engine and an image that holds the repository's tools, so it is chosen, not guessed.
`none` runs tasks unsandboxed because the operator said so; every check run then says "unsandboxed".
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from clarity.repoconfig import RepoConfig
from clarity.settings import Settings
from runner import cgroups, docker_sandbox
from runner.docker_sandbox import LABEL_EXECUTION, LABEL_TASK, DockerConfig, DockerSandbox
from runner.egress import Endpoint, Rules, endpoints
from runner.exchange import fresh
from runner.isolation import unavailable_reason
from runner.sandbox import IsolationError, LocalConfig, LocalSandbox, Sandbox
from runner.workspace import sandbox_view

log = logging.getLogger(__name__)

REDIS_PORT = 6379
AGENT_PROGRAMS = ("aider", "claude")  # what the aider, ollama and claude agents run unless told otherwise
UNSANDBOXED = ("⚠️ **unsandboxed**: this worker runs tasks without isolation (CLARITY_SANDBOX=none); agents and "
               "checks could read its secrets and reach its services.")


def docker_config(settings: Settings, config: RepoConfig, execution_id: str, task_id: str) -> DockerConfig:
    """The docker sandbox's settings for one task: the repo's image, else the app's; labels for cleanup."""
    return DockerConfig(image=config.image or settings.docker_image, cpus=settings.docker_cpus,
                        pids=settings.docker_pids, labels={LABEL_EXECUTION: execution_id, LABEL_TASK: task_id})


def egress_rules(settings: Settings) -> Rules:
    """The operator's egress rules: CLARITY_EGRESS_ALLOW may be private; the worker's own Redis never."""
    redis = urlsplit(settings.redis_url)
    never = (Endpoint(redis.hostname.rstrip("."), redis.port or REDIS_PORT),) if redis.hostname else ()
    return Rules(local=endpoints(settings.egress_allow), never=never)


def operator_tools(settings: Settings) -> tuple[Path, ...]:
    """The programs the operator configured, which local runs see where they are installed: the absolute
    paths (and the program) of CLARITY_AGENT_COMMAND, the agents' programs on the worker's PATH, and
    CLARITY_SANDBOX_TOOLS. Never a path a repository names: it could name any file on the host."""
    found: list[Path] = []
    try:
        words = shlex.split(settings.agent_command)
    except ValueError:
        words = []
    for index, word in enumerate(words):
        if "{" in word:
            continue
        if index > 0 and words[index - 1] == "-m":  # `python -m pkg.tool`: the package, where it is installed
            found += _package_folders(word)
            continue
        program = word if os.path.isabs(word) else shutil.which(word) if index == 0 else None
        if program and os.path.exists(program):
            found.append(Path(program))
    found += [Path(program) for name in AGENT_PROGRAMS if (program := shutil.which(name))]
    return tuple(dict.fromkeys([*found, *settings.sandbox_tools]))


def _package_folders(module: str) -> list[Path]:
    """The folders of the top-level package a `-m` module belongs to (in this worker's Python)."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(folder) for folder in spec.submodule_search_locations]
    return [Path(spec.origin)] if spec.origin and os.path.isabs(spec.origin) else []


def shortfall(settings: Settings) -> str | None:
    """Why the local sandbox cannot isolate tasks on this machine (bubblewrap, cgroups), or None."""
    reason = unavailable_reason()
    if reason is not None:
        return f"bubblewrap cannot run here: {reason}"
    found = cgroups.layout(settings.cgroup_parent)
    return f"no cgroup can be made for the runs: {found}" if isinstance(found, str) else None


def local_config(settings: Settings) -> LocalConfig:
    """The local sandbox's limits and tools from CLARITY_SANDBOX_*: cgroups required unless `none`."""
    return LocalConfig(pids=settings.sandbox_pids, memory_bytes=settings.sandbox_memory,
                       cpus=settings.sandbox_cpus or None, tmp_bytes=settings.sandbox_tmp,
                       disk_bytes=settings.sandbox_disk or None, tools=operator_tools(settings),
                       cgroups="auto" if settings.sandbox == "none" else "required",
                       cgroup_parent=settings.cgroup_parent)


def refusal(problem: str) -> IsolationError:
    """The error that refuses a task this worker cannot isolate: what is missing and the ways out."""
    return IsolationError(
        f"the task was not run: this worker cannot isolate it ({problem}). Install bubblewrap 0.8 or later "
        "(apt-get install bubblewrap) and run the worker where it can use cgroups, or choose CLARITY_SANDBOX=docker; "
        "to run tasks without isolation on purpose, set CLARITY_SANDBOX=none (every check run then says unsandboxed)."
    )


def for_task(settings: Settings, config: RepoConfig, exchange: Path, execution_id: str, task_id: str,
             workdir: Path) -> Sandbox:
    """The sandbox for one task: its workspace read-write, the workspace's git read-only at `.git`, and an
    emptied `exchange` folder read-write; nothing else of the data dir (other customers' workspaces,
    every artifact, the worker's git directories).

    Local: raises an IsolationError (the refusal) when bubblewrap or the runs' cgroups cannot be had,
    which blocks the execution with that message. Docker: raises DockerError (an IsolationError) when no
    engine answers or the image cannot be had, which blocks the execution the same way. Leftover
    containers of dead workers on this host are removed first, so a recovered task never shares its
    workspace with its predecessor's agent.
    """
    exchange = fresh(exchange)
    view = sandbox_view(workdir)
    if settings.sandbox == "docker":
        client = docker_sandbox.connect()
        docker_sandbox.remove_leftovers(client)
        sandbox = DockerSandbox(client, docker_config(settings, config, execution_id, task_id),
                                writable=(exchange.absolute(),), readonly=view, egress=egress_rules(settings))
        sandbox.ensure_image()
        return sandbox
    if settings.sandbox != "none" and (reason := unavailable_reason()) is not None:
        raise refusal(f"bubblewrap cannot run here: {reason}")
    hidden = (settings.data_dir.resolve(), *([settings.private_key_path] if settings.private_key_path else []))
    try:
        return LocalSandbox(isolation="none" if settings.sandbox == "none" else "bwrap", hide=hidden,
                            writable=(exchange.resolve(),), readonly=view, egress=egress_rules(settings),
                            config=local_config(settings))
    except IsolationError as exc:
        raise refusal(str(exc)) from None


def sweep(settings: Settings) -> list[str]:
    """Remove the sandbox containers of this host's dead workers (for a worker's start); [] when local.

    Local: say at once, not at the first task, when this worker cannot isolate tasks (each would be
    refused) or runs them unsandboxed on purpose; looking also primes the checks its work horses inherit.
    Never raises: a worker whose docker engine is down still starts, and its tasks block with the reason.
    """
    if settings.sandbox == "none":
        log.warning("CLARITY_SANDBOX=none: tasks run unsandboxed; every check run says so")
        return []
    if settings.sandbox != "docker":
        if (problem := shortfall(settings)) is not None:
            log.error("%s", refusal(problem))
        return []
    try:
        return docker_sandbox.remove_leftovers(docker_sandbox.connect())
    except docker_sandbox.DockerError as exc:
        log.warning("docker sandbox: %s", exc)
        return []
