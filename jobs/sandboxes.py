"""Which sandbox runs a task's agent and checks: CLARITY_SANDBOX chooses `local` (default) or `docker`."""

from __future__ import annotations

import logging
from pathlib import Path

from clarity.repoconfig import RepoConfig
from clarity.settings import Settings
from runner import docker_sandbox
from runner.docker_sandbox import LABEL_EXECUTION, LABEL_TASK, DockerConfig, DockerSandbox
from runner.exchange import fresh
from runner.sandbox import LocalSandbox, Sandbox
from runner.workspace import sandbox_view

log = logging.getLogger(__name__)


def docker_config(settings: Settings, config: RepoConfig, execution_id: str, task_id: str) -> DockerConfig:
    """The docker sandbox's settings for one task: the repo's image, else the app's; labels for cleanup."""
    return DockerConfig(image=config.image or settings.docker_image, cpus=settings.docker_cpus,
                        pids=settings.docker_pids, labels={LABEL_EXECUTION: execution_id, LABEL_TASK: task_id})


def for_task(settings: Settings, config: RepoConfig, exchange: Path, execution_id: str, task_id: str,
             workdir: Path) -> Sandbox:
    """The sandbox for one task: its workspace read-write, the workspace's git read-only at `.git`, and an
    emptied `exchange` folder read-write; nothing else of the data dir (other customers' workspaces,
    every artifact, the worker's git directories).

    Docker: raises DockerError (an IsolationError) when no engine answers or the image cannot be had,
    which blocks the execution with that message. Leftover containers of dead workers on this host
    are removed first, so a recovered task never shares its workspace with its predecessor's agent.
    """
    exchange = fresh(exchange)
    view = sandbox_view(workdir)
    if settings.sandbox == "docker":
        client = docker_sandbox.connect()
        docker_sandbox.remove_leftovers(client)
        sandbox = DockerSandbox(client, docker_config(settings, config, execution_id, task_id),
                                writable=(exchange.absolute(),), readonly=view)
        sandbox.ensure_image()
        return sandbox
    hidden = (settings.data_dir.resolve(), *([settings.private_key_path] if settings.private_key_path else []))
    return LocalSandbox(hide=hidden, writable=(exchange.resolve(),), readonly=view)


def sweep(settings: Settings) -> list[str]:
    """Remove the sandbox containers of this host's dead workers (for a worker's start); [] when local.

    Never raises: a worker whose docker engine is down still starts, and its tasks block with the reason.
    """
    if settings.sandbox != "docker":
        return []
    try:
        return docker_sandbox.remove_leftovers(docker_sandbox.connect())
    except docker_sandbox.DockerError as exc:
        log.warning("docker sandbox: %s", exc)
        return []
