"""What git needs of the worker's environment to reach GitHub: the proxy and the certificate authorities.

The worker's git runs with a pinned environment (runner.workspace): no system or global config, no
credential helper, PATH and HOME only. Behind a corporate proxy or a private CA (common with GitHub
Enterprise Server) REST worked, because httpx reads `HTTPS_PROXY`/`NO_PROXY` and `SSL_CERT_FILE`, while
clone, fetch and push failed. This hands the same settings to git, in the names git and libcurl read:

- proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, upper or lower case, passed in both
  cases (libcurl reads `http_proxy` only in lower case);
- certificate authorities: `GIT_SSL_CAINFO`/`GIT_SSL_CAPATH` when set, else `SSL_CERT_FILE`/`SSL_CERT_DIR`
  (what httpx and Python use) as `GIT_SSL_CAINFO`/`GIT_SSL_CAPATH` (libcurl reads neither of the latter
  itself). `GIT_SSL_NO_VERIFY` is never passed: a worker that does not check GitHub's certificate would
  hand its installation token to whoever answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

PROXIES = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
CA_NAMES = (("GIT_SSL_CAINFO", "SSL_CERT_FILE"), ("GIT_SSL_CAPATH", "SSL_CERT_DIR"))


def network_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy and CA variables of `environ` for a git process that talks to the remote."""
    env: dict[str, str] = {}
    for name in PROXIES:
        value = environ.get(name) or environ.get(name.upper())
        if value:
            env[name] = env[name.upper()] = value
    for git_name, python_name in CA_NAMES:
        value = environ.get(git_name) or environ.get(python_name)
        if value:
            env[git_name] = value
    return env


def secrets_in(env: Mapping[str, str]) -> set[str]:
    """The credentials a proxy URL of `env` carries (`http://user:password@proxy:3128`), to be redacted."""
    found: set[str] = set()
    for name in PROXIES[:3]:
        value = env.get(name)
        if not value:
            continue
        try:
            password = urlsplit(value if "://" in value else f"http://{value}").password
        except ValueError:
            continue
        if password:
            found.update({password, unquote(password)})
    return found
