"""Whether a repository lets a run start: `enabled` and `maxParallelTasks` of `.github/clarity.yml`.

Read when a run is asked for (a comment, a button, the REST API), from the branch the execution
works on, else the default branch: the same files `unknown_task` reads. A config that cannot be read
or parsed admits the run, and the step then blocks with the exact error, as it does today.
"""

from __future__ import annotations

from githubkit.exception import RequestFailed

from clarity import repoconfig
from clarity.repoconfig import CONFIG_PATH, RepoConfig
from github_app import repos
from github_app.reporting import Reporter

REFUSED = "refused: disabled"  # what a control returns when the repository turned Clarity off


def config_at(reporter: Reporter, repo: str, refs: tuple[str, ...]) -> RepoConfig | None:
    """The repository's config at the first of `refs` that has one (defaults when none has); None when
    it cannot be read or parsed (the step reports that)."""
    try:
        for ref in refs:
            data = repos.read_file(reporter.gh, repo, CONFIG_PATH, ref)
            if data is not None:
                return repoconfig.parse(data)
        return RepoConfig()
    except (RequestFailed, repoconfig.ConfigError):
        return None


def refusal(config: RepoConfig | None) -> str | None:
    """Why no run may start here (for the person who asked), or None when runs may."""
    if config is None or config.enabled:
        return None
    return (f"Clarity is turned off for this repository: `{CONFIG_PATH}` says `enabled: false`. "
            "Nothing was started; set `enabled: true` (or remove the key) to run tasks here.")


def parallel_note(config: RepoConfig | None) -> str:
    """What the start reply adds when `maxParallelTasks` asks for more than runs ("" otherwise)."""
    if config is None or config.max_parallel_tasks <= config.parallel_executions:
        return ""
    return (f" `maxParallelTasks: {config.max_parallel_tasks}` in `{CONFIG_PATH}` is read as "
            f"{config.parallel_executions}: Clarity runs one execution per repository at a time "
            "(one lease and one working tree per repository); others wait in line.")
