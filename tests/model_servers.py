"""Scripted model servers for the real agent CLIs: OpenAI chat completions, Ollama, Anthropic Messages.

Each server listens on a loopback port, records every request, and answers the way its real
counterpart does (JSON or a stream: SSE for OpenAI and Anthropic, NDJSON for Ollama, with token
usage). What it answers is scripted per test: by default the task's canned reply, which writes the
task's output file `done/<id>.txt` with `ok <id>` (what the e2e checks look for), or a fault for
every request or for one task's: HTTP 500, a hang, or a nonsense body.

- OpenAI and Ollama answer in aider's `whole` edit format: the file's path, then its whole content
  in a fence.
- Anthropic answers as Claude Code expects: a `tool_use` block calling `Write` with the file (its
  absolute path, under the working directory Claude Code names in its prompt), then, once the tool's
  result comes back, a final text. Requests without tools (Claude Code's side questions) get a short
  text.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_SECONDS = 120.0  # a hung request answers nothing for this long at most (or until the server stops)
TASK = re.compile(r"# Task (\S+): ([^\n]*)")
WORKDIR = re.compile(r"(?im)^\s*(?:-\s*)?(?:primary )?working directory:\s*(/\S+)")


class Fault(StrEnum):
    """What a scripted server does instead of answering well."""

    NONE = "none"
    HTTP_500 = "http_500"  # an internal server error, in the API's own error shape
    HANG = "hang"  # the request is read, then nothing comes back
    NONSENSE = "nonsense"  # 200 with a body that is not what the API returns


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens one answer reports (fixed, so tests can add up what the budget must hold)."""

    prompt: int = 1200
    completion: int = 34

    @property
    def total(self) -> int:
        return self.prompt + self.completion


@dataclass
class Recorded:
    """One request as the server saw it, and the usage it reported back (None: no answer)."""

    path: str
    body: Any
    headers: dict[str, str]
    usage: Usage | None = None


@dataclass
class Script:
    """The server's behaviour: a fault for every request, or for one task's (by task id)."""

    fault: Fault = Fault.NONE
    by_task: dict[str, Fault] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)

    def fault_for(self, task_id: str | None) -> Fault:
        """The fault of a request about `task_id` (None: a request that names no task)."""
        if task_id is not None and task_id in self.by_task:
            return self.by_task[task_id]
        return self.fault


def task_of(text: str) -> tuple[str, str] | None:
    """(task id, title) of the Clarity prompt in `text`, if any."""
    found = TASK.search(text)
    return (found.group(1), found.group(2).strip()) if found else None


def canned_file(task_id: str) -> tuple[str, str]:
    """(path, content) the canned reply writes for a task: what tests.e2e.check_for looks for."""
    return f"done/{task_id}.txt", f"ok {task_id}\n"


def whole_reply(task_id: str) -> str:
    """An answer in aider's `whole` edit format that creates the task's output file."""
    path, content = canned_file(task_id)
    return f"Here is the file.\n\n{path}\n```\n{content}```\n"


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text(part.get("text", part.get("content", ""))) for part in content
                         if isinstance(part, dict))
    return ""


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1 with a script; subclasses answer one API."""

    name = "model"

    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._records: dict[int, Recorded] = {}  # the request each handler is answering
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._serve(self, None)

            def do_HEAD(self) -> None:
                owner._send(self, 200, b"", "text/plain")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"unreadable": raw.decode("utf-8", "replace")}
                owner._serve(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name=f"{self.name}-server",
                                       daemon=True)
        self.thread.start()

    # -- what tests use ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """host:port, as CLARITY_EGRESS_ALLOW takes it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a tool is pointed at."""
        return f"http://{self.endpoint}"

    def reset(self, script: Script | None = None) -> None:
        """Forget the requests seen so far and follow `script` (default: canned replies)."""
        with self._lock:
            self.requests = []
            self.script = script or Script()

    def answered(self) -> list[Recorded]:
        """The requests that got a real answer (with usage)."""
        with self._lock:
            return [r for r in self.requests if r.usage is not None]

    def tokens(self) -> int:
        """Every token the server reported using, over all its answers."""
        return sum(r.usage.total for r in self.answered() if r.usage is not None)

    def stop(self) -> None:
        """Release hung requests and stop listening."""
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # -- serving ----------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        record = Recorded(handler.path, body, {k.lower(): v for k, v in handler.headers.items()})
        with self._lock:
            self.requests.append(record)
            script = self.script
        task = self.task_of(body)
        fault = script.fault_for(task[0] if task else None) if self.is_model_call(handler.path, body) else Fault.NONE
        if fault is Fault.HANG:
            self._stopping.wait(HANG_SECONDS)
            handler.close_connection = True
            return
        if fault is Fault.HTTP_500:
            self._send(handler, 500, json.dumps(self.error_body("the scripted server failed")).encode())
            return
        if fault is Fault.NONSENSE:
            self._send(handler, 200, b"<html>Bad gateway? \x00 {not: json]</html>", "application/json")
            return
        self._records[id(handler)] = record
        try:
            self.answer(handler, body, task, script.usage)
        finally:
            self._records.pop(id(handler), None)

    def _count(self, handler: BaseHTTPRequestHandler, usage: Usage | None) -> None:
        """Record the usage of an answer before it is sent: a client that has it may ask `tokens()` at once."""
        if usage is not None:
            with self._lock:
                self._records[id(handler)].usage = usage

    def _send(self, handler: BaseHTTPRequestHandler, status: int, data: bytes,
              content_type: str = "application/json", usage: Usage | None = None) -> None:
        self._count(handler, usage)
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _stream(self, handler: BaseHTTPRequestHandler, content_type: str, chunks: Iterator[bytes],
                usage: Usage | None = None) -> None:
        """A streamed answer: chunked transfer, each chunk flushed as it is made."""
        self._count(handler, usage)
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for chunk in chunks:
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")

    # -- what each API decides --------------------------------------------------------------------
    def task_of(self, body: Any) -> tuple[str, str] | None:
        """The Clarity task a request is about, from its messages."""
        if not isinstance(body, dict):
            return None
        return task_of("\n".join(_text(m.get("content")) for m in body.get("messages", []) if isinstance(m, dict)))

    def is_model_call(self, path: str, body: Any) -> bool:
        """Whether the request asks the model (faults apply to these only)."""
        return body is not None

    def error_body(self, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error"}}

    def answer(self, handler: BaseHTTPRequestHandler, body: Any, task: tuple[str, str] | None,
               usage: Usage) -> None:
        raise NotImplementedError


class OpenAIServer(ScriptedServer):
    """`POST /v1/chat/completions` (and without `/v1`), streaming or not; `GET /v1/models`."""

    name = "openai"

    def is_model_call(self, path: str, body: Any) -> bool:
        return path.rstrip("/").endswith("/chat/completions")

    def answer(self, handler: BaseHTTPRequestHandler, body: Any, task: tuple[str, str] | None,
               usage: Usage) -> None:
        if not self.is_model_call(handler.path, body):
            if handler.path.rstrip("/").endswith("/models"):
                self._send(handler, 200, json.dumps({"object": "list", "data": []}).encode())
            else:
                self._send(handler, 404, json.dumps(self.error_body(f"no route {handler.path}")).encode())
            return
        content = whole_reply(task[0]) if task else "Nothing to do."
        model = body.get("model", "scripted")
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        counts = {"prompt_tokens": usage.prompt, "completion_tokens": usage.completion, "total_tokens": usage.total}
        if not body.get("stream"):
            self._send(handler, 200, json.dumps({
                "id": ident, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": counts}).encode(), usage=usage)
            return

        def chunks() -> Iterator[bytes]:
            def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
                data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
                return f"data: {json.dumps(data)}\n\n".encode()
            yield event({"role": "assistant", "content": ""})
            for piece in re.findall(r".{1,16}", content, re.DOTALL):
                yield event({"content": piece})
            yield event({}, "stop", usage=counts)
            yield b"data: [DONE]\n\n"

        self._stream(handler, "text/event-stream", chunks(), usage=usage)


class OllamaServer(ScriptedServer):
    """`POST /api/chat` (NDJSON stream or one object), `/api/show`, `/api/generate`; `GET /api/tags`, `/api/version`."""

    name = "ollama"
    model_name = "qwen2.5-coder:7b"

    def is_model_call(self, path: str, body: Any) -> bool:
        return path in ("/api/chat", "/api/generate")

    def error_body(self, message: str) -> dict[str, Any]:
        return {"error": message}

    def answer(self, handler: BaseHTTPRequestHandler, body: Any, task: tuple[str, str] | None,
               usage: Usage) -> None:
        path = handler.path
        if path == "/api/tags":
            self._send(handler, 200, json.dumps({"models": [{"name": self.model_name, "model": self.model_name,
                                                             "size": 1, "digest": "0" * 64}]}).encode())
            return
        if path == "/api/version":
            self._send(handler, 200, b'{"version": "0.6.0"}')
            return
        if path == "/api/show":
            self._send(handler, 200, json.dumps({
                "modelfile": "", "parameters": "num_ctx 32768", "template": "{{ .Prompt }}",
                "details": {"family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"},
                "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
                "capabilities": ["completion", "tools"]}).encode())
            return
        if not self.is_model_call(path, body):
            self._send(handler, 404, json.dumps(self.error_body(f"no route {path}")).encode())
            return
        content = whole_reply(task[0]) if task else "Nothing to do."
        model = body.get("model", self.model_name)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        final = {"model": model, "created_at": now, "done": True, "done_reason": "stop", "total_duration": 1000,
                 "prompt_eval_count": usage.prompt, "eval_count": usage.completion}
        key = "message" if path == "/api/chat" else "response"
        piece_of = (lambda text: {"role": "assistant", "content": text}) if key == "message" else (lambda text: text)
        if body.get("stream") is False:
            self._send(handler, 200, json.dumps({**final, key: piece_of(content)}).encode(), usage=usage)
            return

        def chunks() -> Iterator[bytes]:
            for piece in re.findall(r".{1,16}", content, re.DOTALL):
                yield (json.dumps({"model": model, "created_at": now, key: piece_of(piece), "done": False})
                       + "\n").encode()
            yield (json.dumps({**final, key: piece_of("")}) + "\n").encode()

        self._stream(handler, "application/x-ndjson", chunks(), usage=usage)


class AnthropicServer(ScriptedServer):
    """`POST /v1/messages` (SSE stream or one object) with tool use; `/v1/messages/count_tokens`."""

    name = "anthropic"

    def is_model_call(self, path: str, body: Any) -> bool:
        return path.split("?")[0].rstrip("/").endswith("/v1/messages")

    def error_body(self, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "api_error", "message": message}}

    def task_of(self, body: Any) -> tuple[str, str] | None:
        if not isinstance(body, dict):
            return None
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        return task_of("\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user"))

    def answer(self, handler: BaseHTTPRequestHandler, body: Any, task: tuple[str, str] | None,
               usage: Usage) -> None:
        path = handler.path.split("?")[0].rstrip("/")
        if path.endswith("/count_tokens"):
            self._send(handler, 200, json.dumps({"input_tokens": usage.prompt}).encode())
            return
        if not self.is_model_call(handler.path, body):
            self._send(handler, 404, json.dumps(self.error_body(f"no route {handler.path}")).encode())
            return
        blocks = self.blocks(body, task)
        model = body.get("model", "claude-sonnet-4-5")
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message = {"id": f"msg_{uuid.uuid4().hex[:20]}", "type": "message", "role": "assistant", "model": model,
                   "content": blocks, "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": usage.prompt, "output_tokens": usage.completion,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        if not body.get("stream"):
            self._send(handler, 200, json.dumps(message).encode(), usage=usage)
            return
        self._stream(handler, "text/event-stream", self.events(message, usage), usage=usage)

    def blocks(self, body: dict[str, Any], task: tuple[str, str] | None) -> list[dict[str, Any]]:
        """The answer's content: Write the task's file; after the tool's result, say it is done."""
        tools = {t.get("name") for t in body.get("tools", []) if isinstance(t, dict)}
        last = (body.get("messages") or [{}])[-1]
        content = last.get("content") if isinstance(last, dict) else None
        answered = isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                                     for b in content)
        if task is None or "Write" not in tools:
            return [{"type": "text", "text": "Clarity task"}]
        if answered:
            return [{"type": "text", "text": f"Task {task[0]} is done: I wrote {canned_file(task[0])[0]}."}]
        path, text = canned_file(task[0])
        # Claude Code names its working directory in the system prompt or in a reminder in the first message.
        said = "\n".join([_text(body.get("system")), *(_text(m.get("content")) for m in body.get("messages", [])
                                                     if isinstance(m, dict))])
        where = WORKDIR.search(said)
        absolute = f"{where.group(1).rstrip('/')}/{path}" if where else path
        return [{"type": "text", "text": f"I will write {path}."},
                {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": "Write",
                 "input": {"file_path": absolute, "content": text}}]

    def events(self, message: dict[str, Any], usage: Usage) -> Iterator[bytes]:
        """The SSE events of a streamed message, as the Messages API sends them."""
        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**message["usage"], "output_tokens": 1}}
        yield event("message_start", {"message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                yield event("content_block_delta", {"index": index,
                                                    "delta": {"type": "text_delta", "text": block["text"]}})
            else:
                yield event("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
                raw = json.dumps(block["input"])
                for piece in re.findall(r".{1,24}", raw, re.DOTALL):
                    yield event("content_block_delta", {"index": index,
                                                        "delta": {"type": "input_json_delta", "partial_json": piece}})
            yield event("content_block_stop", {"index": index})
        yield event("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                      "usage": {"output_tokens": usage.completion}})
        yield event("message_stop", {})
