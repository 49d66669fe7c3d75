"""Behind a proxy and a private CA, git reaches GitHub as REST does (runner.gitnet).

The worker's git ran with PATH and HOME only: where REST worked through `HTTPS_PROXY` and `SSL_CERT_FILE`
(httpx reads both), clone, fetch and push went around the proxy and distrusted the company's CA.
"""

from __future__ import annotations

import secrets
import ssl
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import devstack
from clarity.status import ExecutionStatus
from forge.config import ForgeConfig
from forge.server import serve_in_thread
from github_app import client as github_client
from github_app.client import GitHubApp
from runner.gitnet import network_env, secrets_in
from runner.workspace import GitError, Workspace
from tests.conftest import AGENT
from tests.conftest_forge import FORGE_APP_ID, AppKey
from tests.e2e import REPO, make_repo, tasks_md, wait_settled
from tests.netfronts import PrivateCA, RecordingProxy, server_context

PROXY_NAMES = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")


def test_proxy_and_ca_settings_are_named_as_git_reads_them() -> None:
    env = network_env({"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "ghe.internal,10.0.0.0/8",
                       "SSL_CERT_FILE": "/etc/ssl/company.pem", "SSL_CERT_DIR": "/etc/ssl/company",
                       "GIT_SSL_NO_VERIFY": "1", "PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x"})
    assert env == {"https_proxy": "http://proxy:3128", "HTTPS_PROXY": "http://proxy:3128",
                   "no_proxy": "ghe.internal,10.0.0.0/8", "NO_PROXY": "ghe.internal,10.0.0.0/8",
                   "GIT_SSL_CAINFO": "/etc/ssl/company.pem", "GIT_SSL_CAPATH": "/etc/ssl/company"}
    # git's own names win over Python's; libcurl reads http_proxy only in lower case, so both are given.
    assert network_env({"GIT_SSL_CAINFO": "/a.pem", "SSL_CERT_FILE": "/b.pem", "HTTP_PROXY": "http://p:1"}) == {
        "GIT_SSL_CAINFO": "/a.pem", "http_proxy": "http://p:1", "HTTP_PROXY": "http://p:1"}
    assert network_env({}) == {}


def test_a_proxy_password_is_a_secret_to_redact() -> None:
    env = network_env({"https_proxy": "http://svc:s3cr%40t@proxy:3128", "http_proxy": "proxy:3128"})
    assert secrets_in(env) == {"s3cr%40t", "s3cr@t"}


@pytest.fixture
def clean_network_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No proxy or CA setting of the machine's, and the process's TLS context built afresh, before and after."""
    for name in (*PROXY_NAMES, *(n.upper() for n in PROXY_NAMES), "SSL_CERT_FILE", "SSL_CERT_DIR",
                 "GIT_SSL_CAINFO", "GIT_SSL_CAPATH"):
        monkeypatch.delenv(name, raising=False)
    github_client.tls_context.cache_clear()
    yield monkeypatch
    github_client.tls_context.cache_clear()


def test_clone_and_push_go_through_the_proxy_and_trust_the_private_ca(
        tmp_path: Path, forge_app_key: AppKey, clean_network_env: pytest.MonkeyPatch) -> None:
    ca = PrivateCA(tmp_path / "ca")
    running = serve_in_thread(ForgeConfig(data_dir=tmp_path / "forge", app_id=FORGE_APP_ID,
                                          app_public_key_pem=forge_app_key.public_pem, webhook_url=None,
                                          webhook_secret=secrets.token_hex(8), public_url=""),
                              ssl_context=server_context(ca))
    proxy = RecordingProxy()
    try:
        assert running.url.startswith("https://")
        with clean_network_env.context() as env:
            env.setenv("SSL_CERT_FILE", str(ca.ca_file))
            env.setenv("HTTPS_PROXY", f"http://clarity:pr0xy-pass@127.0.0.1:{proxy.port}")
            github_client.tls_context.cache_clear()
            _create_repo(running.url, ca, "acme/gadgets")
            app = GitHubApp(FORGE_APP_ID, forge_app_key.private_pem, running.api_url)
            installation = app.installation_id_for("acme/gadgets")
            clone_url = app.clone_url(installation, "acme/gadgets")  # REST: through the proxy, trusting the CA
            assert clone_url.startswith("https://127.0.0.1:")
            rest_tunnels = len(proxy.lines)
            assert rest_tunnels >= 1 and all(line.startswith("CONNECT 127.0.0.1:") for line in proxy.lines)

            ws = Workspace(tmp_path / "ws" / "gadgets", clone_url, lambda: app.installation_token(installation))
            ws.sync("clarity/issue-1", "main")
            ws.write("hello.txt", b"hi\n")
            sha = ws.commit("clarity: 1 hello")
            ws.push("clarity/issue-1")
            assert len(proxy.lines) >= rest_tunnels + 2  # fetch and push each tunnelled through the proxy
            other = Workspace(tmp_path / "ws2" / "gadgets", clone_url, lambda: app.installation_token(installation))
            other.sync("clarity/issue-1", "main")
            assert other.synced_sha == sha
            assert ws.redact("auth: pr0xy-pass") == "auth: ***"

        # The same machine without the company's CA: git refuses the forge's certificate, as it should.
        github_client.tls_context.cache_clear()
        bare = Workspace(tmp_path / "ws3" / "gadgets", clone_url, lambda: app.installation_token(installation))
        with pytest.raises(GitError, match="(?i)certificate|ssl"):
            bare.sync("clarity/issue-1", "main")
    finally:
        proxy.close()
        running.stop()


def _create_repo(url: str, ca: PrivateCA, full_name: str) -> None:
    response = httpx.post(f"{url}/_forge/repos", json={"full_name": full_name, "files": {"README.md": "# x\n"}},
                          verify=ssl.create_default_context(cafile=ca.ca_file), timeout=30, trust_env=False)
    assert response.status_code == 201, response.text


@pytest.mark.e2e
def test_a_whole_run_reaches_the_forge_through_the_operators_proxy(redis_url: str, tmp_path: Path) -> None:
    """The worker's REST calls and its git both go through `http_proxy`; the run completes."""
    proxy = RecordingProxy()
    stack = devstack.start(tmp_path / "stack", redis_url, agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                           namespace=f"proxy-{uuid.uuid4().hex[:8]}",
                           extra_env={"CLARITY_RETRY_BACKOFF": "0.05", "http_proxy": proxy.url,
                                      "HTTP_PROXY": proxy.url, "no_proxy": "", "NO_PROXY": ""})
    try:
        make_repo(stack, tmp_path, tasks_md(("1", "Only task", False)))
        stack.comment(REPO, 1, "/clarity run", user="ada")
        ex = wait_settled(stack)
        assert ex.status is ExecutionStatus.COMPLETED, ex.reason
        lines = " ".join(proxy.lines)
        assert "/api/v3/" in lines  # REST
        assert f"/{REPO}.git/info/refs?service=git-upload-pack" in lines  # fetch
        assert f"/{REPO}.git/info/refs?service=git-receive-pack" in lines  # push
    finally:
        stack.forget()
        stack.stop()
        proxy.close()
