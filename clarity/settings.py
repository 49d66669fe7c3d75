"""Settings read once from the environment (12-factor) into a frozen dataclass."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet

# The REST API version Clarity names in every request unless CLARITY_GITHUB_API_VERSION says another: the one
# both github.com and every GitHub Enterprise Server release know (GHES answers 400 to versions it does not).
GITHUB_API_VERSION = "2022-11-28"

class SettingsError(ValueError):
    """A missing or malformed setting; the message names the variable and what is wrong."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the processes need to know about their environment."""

    app_id: int
    private_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    github_api_url: str = "https://api.github.com"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    data_dir: Path = Path(".clarity")
    public_url: str = "http://127.0.0.1:8000"
    # CLARITY_BOT_LOGIN: the app's bot login, `<slug>[bot]`; empty (the default): asked of GitHub (`GET /app`)
    bot_login: str = ""
    default_agent: str = "command"
    agent_command: str = ""
    retries: int = 3
    retry_backoff: float = 2.0
    task_timeout: float = 900.0
    delivery_ttl: int = 7 * 24 * 3600
    redeliver_every: float = 60.0  # CLARITY_REDELIVER_EVERY: seconds between delivery reconciler passes (0: off)
    redeliver_max: int = 20  # CLARITY_REDELIVER_MAX: redeliveries one reconciler pass asks GitHub for at most
    lease_ttl: int = 60  # seconds a repo lease outlives its last heartbeat (a lost worker's, too)
    # CLARITY_SECONDARY_LIMIT_WAIT: seconds a step waits (back in line) after a secondary rate limit that names
    # no time; GitHub asks for "at least one minute"
    secondary_limit_wait: float = 60.0
    log_level: str = "INFO"
    namespace: str = "clarity"
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    private_key_path: Path | None = None  # where the key came from, so sandboxes can hide the file
    log_format: str = "text"  # CLARITY_LOG_FORMAT: "text" (default) or "json", one object per line
    ready_worker_age: int = 480  # /readyz: a worker counts if its RQ heartbeat is this recent (seconds)
    metrics_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR: gunicorn workers and RQ horses share metrics
    github_web_url: str = ""  # GitHub's web pages (`clarity setup`); empty: derived from github_api_url
    # CLARITY_GITHUB_API_VERSION: the REST API version every request names (GHES knows only 2022-11-28)
    github_api_version: str = GITHUB_API_VERSION
    # CLARITY_SANDBOX: "local" (bubblewrap and a cgroup per run; a task is refused when either cannot be had),
    # "docker" (a container per run), or "none" (no isolation at all, on purpose: every check run says so)
    sandbox: str = "local"
    sandbox_pids: int = 512  # CLARITY_SANDBOX_PIDS: processes and threads a local run may have at once
    sandbox_memory: int = 2 * 1024**3  # CLARITY_SANDBOX_MEMORY: bytes of memory a local run may use, no swap
    sandbox_cpus: float = 1.0  # CLARITY_SANDBOX_CPUS: CPU cores a local run may use (0: no cap)
    sandbox_tmp: int = 256 * 1024**2  # CLARITY_SANDBOX_TMP: bytes of a local run's /tmp (HOME is in it)
    sandbox_disk: int = 1024**3  # CLARITY_SANDBOX_DISK: bytes a run's workspace may hold while it runs (0: no cap)
    sandbox_tools: tuple[Path, ...] = ()  # CLARITY_SANDBOX_TOOLS: more programs or folders runs see read-only
    cgroup_parent: str = "clarity"  # CLARITY_CGROUP_PARENT: where run cgroups go (a name, or a v2 folder path)
    docker_image: str = "python:3.12-slim"  # CLARITY_DOCKER_IMAGE: the sandbox image when a repo names none
    docker_cpus: float = 1.0  # CLARITY_DOCKER_CPUS: CPU cores per sandbox container (0: no cap)
    docker_pids: int = 512  # CLARITY_DOCKER_PIDS: processes per sandbox container, unless a limit says less
    artifact_max_bytes: int = 1_000_000  # CLARITY_ARTIFACT_MAX_BYTES: cap of each artifact file
    artifact_retention_days: float = 30.0  # CLARITY_ARTIFACT_RETENTION_DAYS: older execution folders go (0: keep)
    history_retention_days: float = 90.0  # CLARITY_HISTORY_RETENTION_DAYS: finished executions kept (0: forever)
    max_recoveries: int = 3  # CLARITY_MAX_RECOVERIES: a task losing its worker this often blocks its execution
    command_allowlist: tuple[str, ...] = ()  # CLARITY_COMMAND_ALLOWLIST: programs (globs) agents/checks may run
    github_client_id: str = ""  # CLARITY_GITHUB_CLIENT_ID: the app's OAuth client (dashboard sign-in)
    github_client_secret: str = field(default="", repr=False)  # CLARITY_GITHUB_CLIENT_SECRET
    session_secret: str = field(default="", repr=False)  # CLARITY_SESSION_SECRET; empty: derived from other secrets
    # CLARITY_DASHBOARD_AUTH: "github" (people sign in; the default with an OAuth client), "closed" (the default
    # without one: pages and API refuse everyone but API tokens) or "open" (anyone sees everything; asked for only)
    dashboard_auth: str = "closed"
    live_max_sockets: int = 16  # CLARITY_LIVE_MAX_SOCKETS: live sockets per web process; beyond, pages poll
    # CLARITY_EGRESS_ALLOW: loopback/private model endpoints (host:port) networked agents may reach when
    # configured for them; a repository's api_base alone never opens a private address (runner.egress)
    egress_allow: tuple[str, ...] = ("127.0.0.1:11434",)

    @property
    def web_url(self) -> str:
        """GitHub's web base URL: GITHUB_WEB_URL, else derived from the API URL (see `web_url_for`)."""
        return self.github_web_url or web_url_for(self.github_api_url)

    @property
    def intake_queue(self) -> str:
        """RQ queue for webhook deliveries."""
        return f"{self.namespace}:intake"

    @property
    def steps_queue(self) -> str:
        """RQ queue for execution steps."""
        return f"{self.namespace}:steps"

    @property
    def workspaces_dir(self) -> Path:
        """Where cached clones live, one per repository."""
        return self.data_dir / "workspaces"

    @property
    def artifacts_dir(self) -> Path:
        """Where prompts, logs and check outputs of every attempt are kept (written by the worker only)."""
        return self.data_dir / "artifacts"

    @property
    def exchange_dir(self) -> Path:
        """Where each task's sandbox may write besides its workspace (prompt in, usage report out)."""
        return self.data_dir / "exchange"

    def secret_values(self) -> tuple[str, ...]:
        """The values the redactor must never let out."""
        return tuple(v for v in (self.private_key, self.webhook_secret, self.github_client_secret,
                                 self.session_secret, *self.secret_keys, _password(self.redis_url)) if v)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_github: bool = True) -> Settings:
        """Read and validate settings; raise SettingsError naming every bad variable at once.

        `require_github=False` is for commands that never talk to GitHub (`clarity secrets`): the
        GITHUB_APP_ID, private key and webhook secret are then neither required nor read.
        """
        env = os.environ if env is None else env
        problems: list[str] = []
        reader = _Reader(env, problems)
        settings = cls(
            app_id=reader.integer("GITHUB_APP_ID", required=True, minimum=1) if require_github else 0,
            private_key=reader.private_key() if require_github else "",
            private_key_path=_key_path(env) if require_github else None,
            webhook_secret=reader.text("GITHUB_WEBHOOK_SECRET", required=True) if require_github else "",
            github_api_url=reader.url("GITHUB_API_URL", "https://api.github.com"),
            github_web_url=reader.url("GITHUB_WEB_URL", "") if reader.text("GITHUB_WEB_URL") else "",
            github_api_version=reader.api_version("CLARITY_GITHUB_API_VERSION"),
            redis_url=reader.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"),
                                 secret=True),
            data_dir=Path(reader.text("CLARITY_DATA_DIR") or ".clarity"),
            public_url=reader.url("CLARITY_PUBLIC_URL", "http://127.0.0.1:8000"),
            bot_login=reader.text("CLARITY_BOT_LOGIN"),
            default_agent=reader.text("CLARITY_DEFAULT_AGENT") or "command",
            agent_command=reader.text("CLARITY_AGENT_COMMAND") or "",
            retries=reader.integer("CLARITY_RETRIES", default=3, minimum=0),
            retry_backoff=reader.number("CLARITY_RETRY_BACKOFF", default=2.0),
            task_timeout=reader.number("CLARITY_TASK_TIMEOUT", default=900.0),
            delivery_ttl=reader.integer("CLARITY_DELIVERY_TTL", default=7 * 24 * 3600, minimum=60),
            redeliver_every=reader.number("CLARITY_REDELIVER_EVERY", default=60.0),
            redeliver_max=reader.integer("CLARITY_REDELIVER_MAX", default=20, minimum=1),
            lease_ttl=reader.integer("CLARITY_LEASE_TTL", default=60, minimum=1),
            secondary_limit_wait=reader.number("CLARITY_SECONDARY_LIMIT_WAIT", default=60.0),
            max_recoveries=reader.integer("CLARITY_MAX_RECOVERIES", default=3, minimum=1),
            log_level=(reader.text("CLARITY_LOG_LEVEL") or "INFO").upper(),
            log_format=reader.choice("CLARITY_LOG_FORMAT", ("text", "json")),
            ready_worker_age=reader.integer("CLARITY_READY_WORKER_AGE", default=480, minimum=1),
            metrics_dir=reader.directory("PROMETHEUS_MULTIPROC_DIR"),
            namespace=reader.name("CLARITY_NAMESPACE", "clarity"),
            secret_keys=reader.fernet_keys("CLARITY_SECRET_KEYS"),
            sandbox=reader.choice("CLARITY_SANDBOX", ("local", "docker", "none")),
            sandbox_pids=reader.integer("CLARITY_SANDBOX_PIDS", default=512, minimum=16),
            sandbox_memory=reader.size("CLARITY_SANDBOX_MEMORY", default=2 * 1024**3, minimum=64 * 1024**2),
            sandbox_cpus=reader.number("CLARITY_SANDBOX_CPUS", default=1.0),
            sandbox_tmp=reader.size("CLARITY_SANDBOX_TMP", default=256 * 1024**2, minimum=1024**2),
            sandbox_disk=reader.size("CLARITY_SANDBOX_DISK", default=1024**3),
            sandbox_tools=tuple(Path(p.strip()) for p in reader.text("CLARITY_SANDBOX_TOOLS").split(":")
                                if p.strip()),
            cgroup_parent=reader.text("CLARITY_CGROUP_PARENT") or "clarity",
            docker_image=reader.text("CLARITY_DOCKER_IMAGE") or "python:3.12-slim",
            docker_cpus=reader.number("CLARITY_DOCKER_CPUS", default=1.0),
            docker_pids=reader.integer("CLARITY_DOCKER_PIDS", default=512, minimum=1),
            artifact_max_bytes=reader.integer("CLARITY_ARTIFACT_MAX_BYTES", default=1_000_000, minimum=1024),
            artifact_retention_days=reader.number("CLARITY_ARTIFACT_RETENTION_DAYS", default=30.0),
            history_retention_days=reader.number("CLARITY_HISTORY_RETENTION_DAYS", default=90.0),
            command_allowlist=tuple(p.strip() for p in reader.text("CLARITY_COMMAND_ALLOWLIST").split(",")
                                    if p.strip()),
            github_client_id=reader.text("CLARITY_GITHUB_CLIENT_ID"),
            github_client_secret=reader.text("CLARITY_GITHUB_CLIENT_SECRET"),
            session_secret=reader.text("CLARITY_SESSION_SECRET"),
            dashboard_auth=reader.dashboard_auth(),
            live_max_sockets=reader.integer("CLARITY_LIVE_MAX_SOCKETS", default=16, minimum=0),
            egress_allow=reader.endpoints("CLARITY_EGRESS_ALLOW", default=("127.0.0.1:11434",)),
        )
        if problems:
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))
        return settings


@dataclass(slots=True)
class _Reader:
    """Collects problems instead of failing on the first, so one run names them all."""

    env: Mapping[str, str]
    problems: list[str]

    def text(self, name: str, required: bool = False) -> str:
        value = self.env.get(name, "").strip()
        if required and not value:
            self.problems.append(f"{name} is not set")
        return value

    def api_version(self, name: str) -> str:
        """A GitHub REST API version (a date such as 2022-11-28); GITHUB_API_VERSION when unset."""
        value = self.text(name) or GITHUB_API_VERSION
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            self.problems.append(f"{name} must be a REST API version such as {GITHUB_API_VERSION}, got {value!r}")
        return value

    def name(self, name: str, default: str) -> str:
        value = self.text(name) or default
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
            self.problems.append(f"{name} must be letters, digits, '.', '_' or '-', got {value!r}")
        return value

    def directory(self, name: str) -> Path | None:
        """An existing directory, or None when unset."""
        raw = self.text(name)
        if raw and not Path(raw).is_dir():
            self.problems.append(f"{name} must be an existing directory, got {raw!r}")
        return Path(raw) if raw else None

    def dashboard_auth(self) -> str:
        """CLARITY_DASHBOARD_AUTH: github, closed or open; unset → github with an OAuth client, else closed.

        Never open unless asked for: the dashboard shows every customer's executions, logs and artifacts.
        """
        client_id, secret = self.text("CLARITY_GITHUB_CLIENT_ID"), self.text("CLARITY_GITHUB_CLIENT_SECRET")
        if not self.text("CLARITY_DASHBOARD_AUTH"):
            return "github" if client_id and secret else "closed"
        mode = self.choice("CLARITY_DASHBOARD_AUTH", ("github", "closed", "open"))
        if mode == "github" and not (client_id and secret):
            self.problems.append("CLARITY_DASHBOARD_AUTH=github needs CLARITY_GITHUB_CLIENT_ID and "
                                 "CLARITY_GITHUB_CLIENT_SECRET (the app's OAuth client; `clarity setup` stores them)")
        return mode

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """One of `choices` (case-insensitive); the first when unset."""
        value = (self.text(name) or choices[0]).lower()
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {value!r}")
            return choices[0]
        return value

    def integer(self, name: str, default: int = 0, required: bool = False, minimum: int | None = None) -> int:
        raw = self.text(name, required)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {raw!r}")
            return default
        if minimum is not None and value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
        return value

    def size(self, name: str, default: int, minimum: int = 0) -> int:
        """A number of bytes: digits, or digits with K, M or G (powers of 1024), e.g. `2G`."""
        raw = self.text(name).upper().removesuffix("B").removesuffix("I")
        if not raw:
            return default
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(raw[-1:], 1)
        digits = raw[:-1] if scale > 1 else raw
        if not digits.isdigit():
            self.problems.append(f"{name} must be a number of bytes such as 536870912 or 512M, "
                                 f"got {self.text(name)!r}")
            return default
        value = int(digits) * scale
        if value and value < minimum:
            self.problems.append(f"{name} must be at least {minimum} bytes (or 0), got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if value < 0:
            self.problems.append(f"{name} must not be negative, got {raw}")
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...] = ("http", "https"), secret: bool = False) -> str:
        raw = self.text(name) or default
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        if scheme not in schemes:
            shown = without_password(raw) if secret else raw
            self.problems.append(f"{name} must be a {'/'.join(schemes)} URL, got {shown!r}")
        return raw.rstrip("/") if scheme in ("http", "https") else raw

    def endpoints(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated `host:port` (or http/https URLs); unset: `default`, set but empty: none."""
        if name not in self.env:
            return default
        found = []
        for item in (part.strip() for part in self.env[name].split(",")):
            if not item:
                continue
            parts = urlsplit(item if "://" in item else f"//{item}")
            try:
                port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
            except ValueError:
                port = None
            if not parts.hostname or port is None or parts.scheme not in ("", "http", "https"):
                self.problems.append(f"{name}: {item!r} is not host:port (or an http/https URL)")
                continue
            found.append(item)
        return tuple(found)

    def fernet_keys(self, name: str) -> tuple[str, ...]:
        """Comma-separated Fernet keys (the first encrypts); a bad one is named by position, never echoed."""
        keys = tuple(part.strip() for part in self.text(name).split(",") if part.strip())
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                self.problems.append(f"{name}: key {position} of {len(keys)} is not a valid Fernet key "
                                     "(32 url-safe base64-encoded bytes; make one with "
                                     "`clarity secrets generate-key`)")
        return keys

    def private_key(self) -> str:
        """GITHUB_PRIVATE_KEY (PEM, literal \\n allowed) or GITHUB_PRIVATE_KEY_PATH; never echoed back."""
        pem = self.env.get("GITHUB_PRIVATE_KEY", "").strip()
        path = self.env.get("GITHUB_PRIVATE_KEY_PATH", "").strip()
        if not pem and path:
            try:
                pem = Path(path).read_text().strip()
            except OSError as exc:
                self.problems.append(f"GITHUB_PRIVATE_KEY_PATH cannot be read: {exc.strerror} ({path})")
                return ""
        if not pem:
            self.problems.append("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set")
            return ""
        pem = pem.replace("\\n", "\n")
        if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
            source = "GITHUB_PRIVATE_KEY_PATH" if path and not self.env.get("GITHUB_PRIVATE_KEY") else "GITHUB_PRIVATE_KEY"
            self.problems.append(f"{source} is not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----')")
        return pem + "\n"


def _password(url: str) -> str:
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def without_password(url: str) -> str:
    """The URL with the password of its user part replaced by ***: `redis://clarity-web:***@redis:6379/0`."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, where = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{where}"


def web_url_for(api_url: str) -> str:
    """GitHub's web URL for a REST base: api.github.com → github.com, `https://host/api/v3` → `https://host`."""
    base = api_url.strip().rstrip("/")
    scheme, _, rest = base.partition("://")
    host, _, path = rest.partition("/")
    if host.lower() == "api.github.com":
        return f"{scheme}://github.com"
    if host.lower().startswith("api.") and not path:  # GitHub Enterprise Cloud with data residency
        return f"{scheme}://{host[4:]}"
    prefix = path.removesuffix("api/v3").strip("/")  # GitHub Enterprise Server and the forge: <web>/api/v3
    return f"{scheme}://{host}/{prefix}" if prefix else f"{scheme}://{host}"


def _key_path(env: Mapping[str, str]) -> Path | None:
    raw = env.get("GITHUB_PRIVATE_KEY_PATH", "").strip()
    return Path(raw).resolve() if raw and not env.get("GITHUB_PRIVATE_KEY", "").strip() else None
