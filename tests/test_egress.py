"""The egress proxy's decisions as tables, and its protocol spoken to it directly over its unix socket.

The attacks through the real sandbox are in tests/test_attacks_network.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clarity.agentconfig import NETWORKED
from clarity.settings import Settings, SettingsError
from jobs import sandboxes
from runner import agents, egress
from runner.egress import EgressError, Endpoint, Gate, Rules, admit, parse_endpoint, parse_request

E = Endpoint


@pytest.mark.parametrize(("text", "expected"), [
    ("api.anthropic.com:443", E("api.anthropic.com", 443)),
    ("https://api.openai.com/v1", E("api.openai.com", 443)),
    ("http://GPU.lan:11434", E("gpu.lan", 11434)),
    ("http://127.0.0.1", E("127.0.0.1", 80)),
    ("[::1]:8080", E("::1", 8080)),
    ("models.example.:8443", E("models.example", 8443)),
])
def test_endpoints_are_read_from_urls_and_host_port(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["gpu", "redis://127.0.0.1:6379", "http://", "host:99999", "a b:80", "ftp://x"])
def test_what_is_not_an_endpoint_is_refused_by_name(text: str) -> None:
    with pytest.raises(EgressError) as caught:
        parse_endpoint(text)
    assert repr(text) in str(caught.value)


MODEL = E("models.example", 443)
LOCAL = E("127.0.0.1", 11434)
PUBLIC = ("93.184.216.34", 443)
PRIVATE = "it resolves to a loopback or private address the operator has not allowed (CLARITY_EGRESS_ALLOW)"


@pytest.mark.parametrize(("target", "allow", "rules", "addresses", "expected"), [
    (MODEL, {MODEL}, Rules(), [PUBLIC], ([PUBLIC], "")),
    (E("evil.example", 443), {MODEL}, Rules(), [PUBLIC], ([], "not a model endpoint of this run")),
    # DNS rebinding: an allowed name that resolves to loopback or a private address is refused...
    (MODEL, {MODEL}, Rules(), [("127.0.0.1", 443)], ([], PRIVATE)),
    (MODEL, {MODEL}, Rules(), [("10.0.0.5", 443), PUBLIC], ([PUBLIC], "")),  # ...and only the public one is used
    (MODEL, {MODEL}, Rules(), [("::ffff:127.0.0.1", 443)], ([], PRIVATE)),
    (MODEL, {MODEL}, Rules(), [("169.254.169.254", 443)], ([], PRIVATE)),
    (MODEL, {MODEL}, Rules(), [], ([], "the name does not resolve")),
    # ...unless the operator vouched for that exact endpoint
    (LOCAL, {LOCAL}, Rules(local=(LOCAL,)), [("127.0.0.1", 11434)], ([("127.0.0.1", 11434)], "")),
    (LOCAL, {LOCAL}, Rules(local=(E("127.0.0.1", 11435),)), [("127.0.0.1", 11434)], ([], PRIVATE)),
    # The worker's Redis: never, not even vouched for, on any loopback address of its port.
    (E("127.0.0.2", 6379), {E("127.0.0.2", 6379)}, Rules(local=(E("127.0.0.2", 6379),)), [("127.0.0.2", 6379)],
     ([], "it is one of the worker's own services")),
    (E("0.0.0.0", 6379), {E("0.0.0.0", 6379)}, Rules(local=(E("0.0.0.0", 6379),)), [("0.0.0.0", 6379)],
     ([], "it is one of the worker's own services")),
])
def test_admit(target: Endpoint, allow: set[Endpoint], rules: Rules, addresses: list[tuple[str, int]],
               expected: tuple[list[tuple[str, int]], str]) -> None:
    assert admit(target, allow, rules, addresses, {("127.0.0.1", 6379)}) == expected


def test_a_plain_request_goes_on_in_origin_form_without_proxy_headers_and_closes() -> None:
    request = parse_request(b"POST http://gpu.lan:11434/api/chat?x=1 HTTP/1.1\r\nHost: gpu.lan:11434\r\n"
                            b"Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n"
                            b"Content-Length: 2")
    assert request.target == E("gpu.lan", 11434) and not request.tunnel
    assert request.first == (b"POST /api/chat?x=1 HTTP/1.1\r\nHost: gpu.lan:11434\r\nContent-Length: 2\r\n"
                             b"Connection: close\r\n\r\n")
    assert parse_request(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: x") == egress.Request(
        E("api.anthropic.com", 443), tunnel=True)


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\nHost: x", b"GET https://x/ HTTP/1.1", b"garbage",
                                  b"CONNECT nowhere HTTP/1.1"])
def test_other_requests_are_bad_requests(head: bytes) -> None:
    with pytest.raises(EgressError):
        parse_request(head)


def test_model_apis_follow_the_tool_its_options_and_its_environment() -> None:
    assert set(agents.DEFAULT_MODEL_APIS) == NETWORKED  # every networked tool has its endpoints
    assert agents.model_apis("command", {"api_base": "http://x:1"}) == ()
    assert agents.model_apis("claude") == ("https://api.anthropic.com",)
    assert agents.model_apis("claude", {}, {"ANTHROPIC_BASE_URL": "https://gw.corp:8443"}) == (
        "https://api.anthropic.com", "https://gw.corp:8443")
    assert agents.model_apis("ollama") == ("http://127.0.0.1:11434",)
    assert agents.model_apis("ollama", {"api_base": "http://gpu:11434"}) == ("http://gpu:11434",)
    assert agents.model_apis("aider", {}, {"OPENROUTER_API_KEY": "k", "OPENAI_API_BASE": "http://llm:8000/v1"}) == (
        "https://api.openai.com", "https://api.anthropic.com", "http://llm:8000/v1", "https://openrouter.ai")
    # `api_base` in a tool's options is where build() points it (OPENAI_API_BASE, ANTHROPIC_BASE_URL): admitted too.
    assert agents.model_apis("claude", {"api_base": "http://gw.lan:4000"}) == (
        "https://api.anthropic.com", "http://gw.lan:4000")
    assert agents.model_apis("aider", {"api_base": "http://llm.lan:8000/v1"})[-1] == "http://llm.lan:8000/v1"


# -- the proxy, spoken to over its socket ----------------------------------------------------------
class Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        received = 0
        while received < length:  # read in pieces: the body streams through the proxy
            received += len(self.rfile.read(min(65536, length - received)))
        body = f"{self.path} {received}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def ask(gate: Gate, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(gate.path))
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_a_large_body_streams_through_and_the_answer_comes_back(echo: int) -> None:
    allowed = E("127.0.0.1", echo)
    with egress.gate({allowed}, Rules(local=(allowed,))) as gate:
        size = 8 * 1024**2
        head = f"POST http://127.0.0.1:{echo}/api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        answer = ask(gate, head.encode() + b"x" * size)
    assert answer.startswith(b"HTTP/1.0 200 OK") and answer.endswith(f"/api/chat {size}".encode())
    assert not gate.folder.exists()  # the socket's folder goes with the run


def test_refusals_say_why_and_are_logged(echo: int, caplog: pytest.LogCaptureFixture) -> None:
    with egress.gate({E("127.0.0.1", echo)}, Rules()) as gate:
        refused = ask(gate, f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\n\r\n".encode())
        other = ask(gate, b"CONNECT 127.0.0.1:6379 HTTP/1.1\r\n\r\n")
        bad = ask(gate, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 403 Forbidden") and b"loopback or private address" in refused
    assert other.startswith(b"HTTP/1.1 403 Forbidden") and b"not a model endpoint of this run" in other
    assert bad.startswith(b"HTTP/1.1 400 Bad Request")
    assert f"egress refused: 127.0.0.1:{echo}" in caplog.text and "egress refused: 127.0.0.1:6379" in caplog.text


def test_a_client_that_never_finishes_its_request_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "HEAD_TIMEOUT", 0.3)
    with egress.gate(set(), Rules()) as gate, socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(gate.path))
        conn.sendall(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\n")  # and nothing more
        assert conn.recv(100) == b""  # closed by the proxy, not by our 5 s timeout


# -- what the operator configures ------------------------------------------------------------------
def test_the_operator_vouches_for_private_endpoints_and_the_workers_redis_is_never_reachable(
        settings: Settings) -> None:
    base = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": settings.private_key, "GITHUB_WEBHOOK_SECRET": "s",
            "REDIS_URL": "redis://clarity-worker:pw@Redis.internal:6380/0"}
    assert Settings.from_env(base).egress_allow == ("127.0.0.1:11434",)  # a local Ollama, unless said otherwise
    assert Settings.from_env({**base, "CLARITY_EGRESS_ALLOW": ""}).egress_allow == ()
    configured = Settings.from_env({**base, "CLARITY_EGRESS_ALLOW": "gpu.lan:11434, http://10.0.0.5:8000"})
    assert sandboxes.egress_rules(configured) == Rules(local=(E("gpu.lan", 11434), E("10.0.0.5", 8000)),
                                                       never=(E("redis.internal", 6380),))
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**base, "CLARITY_EGRESS_ALLOW": "gpu.lan"})
    assert "CLARITY_EGRESS_ALLOW: 'gpu.lan' is not host:port (or an http/https URL)" in str(caught.value)
