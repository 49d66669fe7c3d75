"""Per-customer model API keys from the vault, for the agent process's environment only.

A secret reaches an agent when its name is one of AGENT_KEYS, optionally followed by `.` and any
suffix so several customers can each store one (`ANTHROPIC_API_KEY.acme`), and its scope is the
task's repository (`repo:owner/name`) or installation (`installation:<id>`). The repository's wins
over the installation's; two of one scope: the first by name. Global secrets are never handed out.
"""

from __future__ import annotations

from collections.abc import Iterable

from clarity.vault import SecretInfo, Vault

AGENT_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY",
              # Where a customer's model lives, when it is theirs (a gateway, a GPU box): over `api_base`.
              "OLLAMA_API_BASE", "OPENAI_API_BASE", "ANTHROPIC_BASE_URL")


def choose(infos: Iterable[SecretInfo], repo: str, installation_id: int) -> dict[str, str]:
    """Environment variable → the name of the secret that fills it, for this repository."""
    rank = {f"repo:{repo}": 0, f"installation:{installation_id}": 1}
    best: dict[str, tuple[int, str]] = {}
    for info in sorted(infos, key=lambda i: i.name):
        variable = info.name.split(".", 1)[0]
        if variable not in AGENT_KEYS or info.scope not in rank:
            continue
        candidate = (rank[info.scope], info.name)
        if variable not in best or candidate < best[variable]:
            best[variable] = candidate
    return {variable: name for variable, (_, name) in sorted(best.items())}


def agent_env(vault: Vault, repo: str, installation_id: int) -> dict[str, str]:
    """The values for the agent's environment (each taught to the redactor by `Vault.get`)."""
    return {variable: vault.get(name) for variable, name in choose(vault.names(), repo, installation_id).items()}
