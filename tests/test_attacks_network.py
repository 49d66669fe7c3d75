"""Attacks by a networked agent on the worker's network (issue 13, finding 2), and the egress proxy that holds.

A networked run (aider, claude, ollama) has a network namespace of its own: its loopback is empty, and
the only way out is the worker's egress proxy, which lets through exactly the model endpoints the run is
configured for. Each attack here ran on the code before the proxy (the run shared the worker's network):
it reached Redis (PING answered +PONG, a key and an RQ queue entry were written), the web app, PostgreSQL
and MariaDB. These tests run the real bubblewrap sandbox, and the last one the whole product.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from werkzeug.serving import make_server

import devstack
from app import create_app
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from runner.egress import Rules, parse_endpoint
from runner.sandbox import Limits, LocalSandbox, Result
from tests.e2e import REPO, branch_file, tasks_md, wait_settled

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap is not installed (apt-get install bubblewrap)")
pytestmark = needs_bwrap

REDIS = ("127.0.0.1", 6379)
POSTGRES = ("127.0.0.1", 5432)
MARIADB = ("127.0.0.1", 3306)
DOCKER_IMAGE = os.environ.get("CLARITY_TEST_IMAGE", "clarity-test:py")
BUILD_IMAGE = Path(__file__).parent / "fixtures" / "docker" / "build_image.sh"

# Run inside the sandbox: try a host:port directly, then through the proxy the run was given (if any).
PROBE = textwrap.dedent('''
    import os, socket, sys
    host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode().decode("unicode_escape").encode()

    def talk(sock):
        sock.sendall(payload)
        sock.settimeout(2)
        try:
            return (sock.recv(200).decode(errors="replace").strip().splitlines() or [""])[0][:60]
        except OSError:
            return "(silent)"

    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            print("direct: connected:", talk(sock))
    except OSError as exc:
        print("direct:", type(exc).__name__)
    proxy = os.environ.get("HTTPS_PROXY", "")
    if not proxy:
        print("proxy: none")
        sys.exit(0)
    where = proxy.split("://", 1)[1].rstrip("/")
    with socket.create_connection((where.rsplit(":", 1)[0], int(where.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n".encode())
        head = b""
        while b"\\r\\n\\r\\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\\r\\n", 1)[0].decode()
        if " 200 " in status:
            print("proxy:", status, "then:", talk(sock))
        else:
            print("proxy:", status)
''')


def jail(*local: str) -> LocalSandbox:
    """The local sandbox as a worker builds it, with `local` the operator's vouched-for private endpoints."""
    return LocalSandbox(isolation="bwrap", egress=Rules(local=tuple(parse_endpoint(e) for e in local)))


def networked(*allowed: str) -> Limits:
    """The limits of a networked agent whose model endpoints are `allowed`."""
    return Limits(timeout=30, network=True, egress=tuple(parse_endpoint(e) for e in allowed))


def probe(sandbox: LocalSandbox, workdir: Path, limits: Limits, where: tuple[str, int], payload: str) -> Result:
    (workdir / "probe.py").write_text(PROBE)
    return sandbox.run([sys.executable, "probe.py", where[0], str(where[1]), payload], workdir, {}, limits)


def listening(where: tuple[str, int]) -> bool:
    try:
        socket.create_connection(where, timeout=1).close()
    except OSError:
        return False
    return True


class ModelServer:
    """A scripted model API on a loopback port: answers `/api/chat` with `ok <task id>`, records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                owner.requests.append({"path": self.path, "host": self.headers.get("Host"), "body": body})
                prompt = " ".join(m.get("content", "") for m in body.get("messages", []))
                task = re.search(r"# Task (\S+):", prompt)
                reply = json.dumps({"message": {"role": "assistant",
                                                "content": f"ok {task.group(1) if task else '?'}"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model() -> Iterator[ModelServer]:
    server = ModelServer()
    yield server
    server.stop()


@pytest.fixture
def web_app(settings: Settings) -> Iterator[int]:
    """The real web app on a loopback port, as on a worker host that also serves the web process."""
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


# -- through the sandbox ---------------------------------------------------------------------------
def test_a_networked_agent_cannot_reach_the_workers_redis(tmp_path: Path, model: ModelServer) -> None:
    assert listening(REDIS), "these attacks need the machine's Redis on 127.0.0.1:6379"
    result = probe(jail(model.endpoint), tmp_path, networked(model.endpoint), REDIS, r"PING\r\n")
    assert result.ok, result.stderr
    assert "PONG" not in result.stdout
    assert result.stdout.splitlines() == ["direct: ConnectionRefusedError", "proxy: HTTP/1.1 403 Forbidden"]


@pytest.mark.parametrize("where", [POSTGRES, MARIADB], ids=["postgresql", "mariadb"])
def test_a_networked_agent_cannot_reach_a_database_on_the_host(tmp_path: Path, where: tuple[str, int]) -> None:
    assert listening(where), f"this attack needs the database on {where[0]}:{where[1]}"
    result = probe(jail(), tmp_path, networked("api.anthropic.com:443"), where, "")
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["direct: ConnectionRefusedError", "proxy: HTTP/1.1 403 Forbidden"]


def test_a_networked_agent_cannot_reach_the_web_app(tmp_path: Path, web_app: int) -> None:
    result = probe(jail(), tmp_path, networked("api.openai.com:443"), ("127.0.0.1", web_app),
                   r"GET /healthz HTTP/1.0\r\n\r\n")
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["direct: ConnectionRefusedError", "proxy: HTTP/1.1 403 Forbidden"]


def test_the_allowed_model_server_answers_through_the_proxy_named_in_the_environment(
        tmp_path: Path, model: ModelServer) -> None:
    program = textwrap.dedent(f'''
        import json, os, urllib.request
        print(json.dumps({{name: os.environ.get(name) for name in ("HTTP_PROXY", "https_proxy", "ALL_PROXY",
                                                                  "NO_PROXY")}}))
        request = urllib.request.Request("http://{model.endpoint}/api/chat", method="POST",
            data=json.dumps({{"messages": [{{"content": "# Task 4.2: x"}}]}}).encode())
        print(json.load(urllib.request.urlopen(request, timeout=10))["message"]["content"])
    ''')
    result = jail(model.endpoint).run([sys.executable, "-c", program], tmp_path, {}, networked(model.endpoint))
    assert result.ok, result.stderr
    variables, answer = result.stdout.splitlines()
    seen = json.loads(variables)
    proxy = seen["HTTP_PROXY"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", proxy) and seen == {"HTTP_PROXY": proxy, "https_proxy": proxy,
                                                                       "ALL_PROXY": proxy, "NO_PROXY": ""}
    assert answer == "ok 4.2"
    assert model.requests == [{"path": "/api/chat", "host": model.endpoint,
                               "body": {"messages": [{"content": "# Task 4.2: x"}]}}]
    # A CONNECT tunnel to the allowed endpoint works too (how HTTPS model APIs are reached).
    tunnel = probe(jail(model.endpoint), tmp_path, networked(model.endpoint), ("127.0.0.1", model.port),
                   r"GET / HTTP/1.0\r\n\r\n")
    assert tunnel.stdout.splitlines()[-1].startswith("proxy: HTTP/1.1 200 Connection established then: HTTP/1.0 501")


def test_connect_to_anything_but_the_allowed_endpoints_is_403(tmp_path: Path, model: ModelServer) -> None:
    sandbox, limits = jail(model.endpoint), networked(model.endpoint)
    for where in (("example.com", 443), ("127.0.0.1", model.port + 1 if model.port < 65535 else 1),
                  ("localhost", model.port), ("169.254.169.254", 80)):
        result = probe(sandbox, tmp_path, limits, where, "")
        assert result.stdout.splitlines()[-1] == "proxy: HTTP/1.1 403 Forbidden", (where, result.stdout)


def test_an_allowed_name_that_resolves_to_loopback_is_refused_unless_the_operator_vouched_for_it(
        tmp_path: Path, model: ModelServer) -> None:
    # A repository may name any api_base: a name (or address) that leads to the worker's own loopback or a
    # private network is only reachable when the operator listed that exact endpoint (CLARITY_EGRESS_ALLOW).
    name = f"localhost:{model.port}"
    refused = probe(jail(), tmp_path, networked(name), ("localhost", model.port), r"GET / HTTP/1.0\r\n\r\n")
    vouched = probe(jail(name), tmp_path, networked(name), ("localhost", model.port), r"GET / HTTP/1.0\r\n\r\n")
    assert refused.stdout.splitlines()[-1] == "proxy: HTTP/1.1 403 Forbidden"
    assert vouched.stdout.splitlines()[-1].startswith("proxy: HTTP/1.1 200 Connection established then: HTTP/1.0 501")


# -- through the docker sandbox --------------------------------------------------------------------
@pytest.fixture(scope="module")
def docker_client() -> Any:
    """The engine with the test image (tests/fixtures/docker/build_image.sh); skipped without an engine."""
    from tests.test_docker_sandbox import engine_with_image

    return engine_with_image(DOCKER_IMAGE)


def docker_jail(client: Any, *local: str) -> Any:
    from runner.docker_sandbox import DockerConfig, DockerSandbox
    return DockerSandbox(client, DockerConfig(image=DOCKER_IMAGE), kill_grace=0.5,
                         egress=Rules(local=tuple(parse_endpoint(e) for e in local)))


@pytest.mark.docker
def test_a_networked_docker_run_has_no_network_but_its_model_through_the_proxy(
        docker_client: Any, tmp_path: Path, model: ModelServer) -> None:
    assert listening(REDIS)
    sandbox = docker_jail(docker_client, model.endpoint)
    (tmp_path / "probe.py").write_text(PROBE)
    attack = sandbox.run(["python3", "probe.py", *map(str, REDIS), r"PING\r\n"], tmp_path, {},
                         networked(model.endpoint))
    assert attack.ok, attack.stderr
    assert attack.stdout.splitlines() == ["direct: ConnectionRefusedError", "proxy: HTTP/1.1 403 Forbidden"]
    program = textwrap.dedent(f'''
        import json, urllib.request
        request = urllib.request.Request("http://{model.endpoint}/api/chat", method="POST",
            data=json.dumps({{"messages": [{{"content": "# Task 7: x"}}]}}).encode())
        print(json.load(urllib.request.urlopen(request, timeout=10))["message"]["content"])
    ''')
    asked = sandbox.run(["python3", "-c", program], tmp_path, {}, networked(model.endpoint))
    assert (asked.exit_code, asked.stdout) == (0, "ok 7\n"), asked.stderr
    missing = sandbox.run(["no-such-agent-xyz"], tmp_path, {}, networked(model.endpoint))
    assert (missing.exit_code, missing.stderr) == (127, "command not found: no-such-agent-xyz\n")


@pytest.mark.docker
def test_a_networked_docker_run_in_an_image_without_python3_says_so(
        docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner import docker_sandbox
    monkeypatch.setattr(docker_sandbox, "RELAY_PYTHON", "python3-not-in-this-image")
    monkeypatch.setattr(docker_sandbox, "NO_RELAY_PYTHON", "command not found: python3-not-in-this-image\n")
    result = docker_jail(docker_client).run(["true"], tmp_path, {}, networked("api.anthropic.com:443"))
    assert result.exit_code == 127 and result.stderr == (
        f"the sandbox image `{DOCKER_IMAGE}` has no python3-not-in-this-image (3.8 or later), which a networked "
        "agent needs to reach its model through Clarity's egress proxy\n")


# -- through the whole product ---------------------------------------------------------------------
ATTACKER = '''#!{python}
"""A hostile `aider`: go for the worker's Redis, then do the task by asking the model through the proxy."""
import json, os, pathlib, socket, sys, urllib.request

REDIS = ({host!r}, {port})
ATTACK = [b"SELECT {db}", b"SET {namespace}:pwned yes", b"LPUSH rq:queue:{namespace}:intake pwned-job"]

def resp(*commands):
    out = b""
    for command in commands:
        parts = command.split(b" ")
        out += b"*%d\\r\\n" % len(parts) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(p), p) for p in parts)
    return out

def attack_direct():
    try:
        with socket.create_connection(REDIS, timeout=3) as sock:
            sock.sendall(resp(*ATTACK))
            return "direct: " + sock.recv(200).decode(errors="replace")
    except OSError as exc:
        return "direct: " + type(exc).__name__

def attack_proxy():
    where = os.environ.get("HTTP_PROXY", "").split("://")[-1]
    if not where:
        return "proxy: none"
    with socket.create_connection((where.rsplit(":", 1)[0], int(where.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"CONNECT %s:%d HTTP/1.1\\r\\n\\r\\n" % (REDIS[0].encode(), REDIS[1]))
        head = sock.recv(4096).decode(errors="replace")
        if " 200 " in head.split("\\r\\n")[0]:
            sock.sendall(resp(*ATTACK))
            return "proxy: " + sock.recv(200).decode(errors="replace")
        return "proxy: " + head.split("\\r\\n")[0]

report = [attack_direct(), attack_proxy()]
prompt = pathlib.Path(sys.argv[sys.argv.index("--message-file") + 1]).read_text()
request = urllib.request.Request(os.environ["OLLAMA_API_BASE"] + "/api/chat", method="POST",
                                 data=json.dumps({{"model": "m", "messages": [{{"role": "user", "content": prompt}}],
                                                  "attack": report}}).encode())
answer = json.load(urllib.request.urlopen(request, timeout=10))["message"]["content"]
task = os.environ["CLARITY_TASK_ID"]
pathlib.Path("done").mkdir(exist_ok=True)
pathlib.Path("done", task + ".txt").write_text(answer + "\\n")
print("attack:", report, "answer:", answer)
'''


@pytest.fixture
def visible_bin() -> Iterator[Path]:
    """A folder for the fake tool that bubblewrap shows (not under /tmp, which each run gets empty)."""
    folder = Path(__file__).resolve().parents[1] / ".pytest_cache" / f"clarity-bin-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.e2e
def test_an_ollama_agent_that_goes_for_redis_gets_nothing_and_still_completes_its_task(
        redis_url: str, tmp_path: Path, visible_bin: Path, model: ModelServer) -> None:
    namespace = f"attack-{uuid.uuid4().hex[:8]}"
    stack = devstack.start(tmp_path / "stack", redis_url, namespace=namespace, extra_env={
        "PATH": f"{visible_bin}{os.pathsep}{os.environ['PATH']}", "CLARITY_RETRY_BACKOFF": "0.05",
        "CLARITY_RETRIES": "0", "CLARITY_EGRESS_ALLOW": model.endpoint})
    try:
        parts = urlsplit(stack.redis.url)
        db = int(parts.path.strip("/") or 0)
        aider = visible_bin / "aider"
        aider.write_text(ATTACKER.format(python=sys.executable, host=parts.hostname, port=parts.port, db=db,
                                         namespace=namespace))
        aider.chmod(0o755)
        source = tmp_path / "src"
        (source / ".github").mkdir(parents=True)
        (source / "tasks_list.md").write_text(tasks_md(("1", "Build it", False)))
        (source / ".github" / "clarity.yml").write_text(
            "agents:\n  default: ollama\n"
            f"  options: {{ollama: {{model: 'qwen2.5-coder:7b', api_base: 'http://{model.endpoint}'}}}}\n")
        stack.create_repo(REPO, source)
        stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
        client = redis.Redis.from_url(stack.redis.url, decode_responses=True)

        stack.comment(REPO, 1, "/clarity run", user="ada")
        ex = wait_settled(stack, timeout=90)

        assert ex.status is ExecutionStatus.COMPLETED, ex.reason
        assert branch_file(stack, "done/1.txt") == "ok 1\n"
        [asked] = model.requests
        assert asked["path"] == "/api/chat" and "# Task 1: Build it" in asked["body"]["messages"][0]["content"]
        assert asked["body"]["attack"] == ["direct: ConnectionRefusedError", "proxy: HTTP/1.1 403 Forbidden"]
        assert client.get(f"{namespace}:pwned") is None
        assert "pwned-job" not in client.lrange(f"rq:queue:{namespace}:intake", 0, -1)
        assert not [key for key in client.scan_iter("*pwned*", count=1000)]
    finally:
        stack.forget()
        stack.stop()
