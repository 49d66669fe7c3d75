"""The scripted model servers (tests/model_servers.py) answer like the APIs they stand in for, streamed or not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.model_servers import (
    AnthropicServer,
    Fault,
    OllamaServer,
    OpenAIServer,
    Script,
    ScriptedServer,
    Usage,
)

PROMPT = "# Task 2.1: Greet\n\nWrite done/2.1.txt."
WHOLE = "Here is the file.\n\ndone/2.1.txt\n```\nok 2.1\n```\n"


@pytest.fixture
def servers() -> Iterator[dict[str, ScriptedServer]]:
    running: dict[str, ScriptedServer] = {"openai": OpenAIServer(), "ollama": OllamaServer(),
                                          "anthropic": AnthropicServer()}
    yield running
    for server in running.values():
        server.stop()


def test_openai_answers_in_whole_format_with_usage_streamed_or_not(servers: dict[str, ScriptedServer]) -> None:
    server = servers["openai"]
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
    plain = httpx.post(f"{server.url}/v1/chat/completions", json=ask).json()
    assert plain["choices"][0]["message"]["content"] == WHOLE
    assert plain["usage"] == {"prompt_tokens": 1200, "completion_tokens": 34, "total_tokens": 1234}
    with httpx.stream("POST", f"{server.url}/chat/completions", json={**ask, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == WHOLE
    assert chunks[-1]["usage"]["total_tokens"] == 1234 and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert server.tokens() == 2468 and len(server.answered()) == 2


def test_ollama_answers_chat_as_ndjson_or_one_object_and_describes_its_model(
        servers: dict[str, ScriptedServer]) -> None:
    server = servers["ollama"]
    ask = {"model": "qwen2.5-coder:7b", "messages": [{"role": "user", "content": PROMPT}]}
    plain = httpx.post(f"{server.url}/api/chat", json={**ask, "stream": False}).json()
    assert plain["message"]["content"] == WHOLE and (plain["prompt_eval_count"], plain["eval_count"]) == (1200, 34)
    with httpx.stream("POST", f"{server.url}/api/chat", json=ask) as response:
        parts = [json.loads(line) for line in response.iter_lines() if line]
    assert "".join(p["message"]["content"] for p in parts) == WHOLE and parts[-1]["done"] is True
    assert httpx.post(f"{server.url}/api/show", json={"name": "qwen2.5-coder:7b"}).json()["details"]["family"]
    assert httpx.get(f"{server.url}/api/tags").json()["models"][0]["name"] == "qwen2.5-coder:7b"
    assert len(server.answered()) == 2  # /api/show and /api/tags are not model answers


def test_anthropic_writes_the_file_with_tool_use_then_says_it_is_done(servers: dict[str, ScriptedServer]) -> None:
    server = servers["anthropic"]
    tools = [{"name": "Write", "input_schema": {}}]
    first = {"model": "claude-sonnet-4-5", "tools": tools, "system": [{"type": "text", "text": "x"}],
             "messages": [{"role": "user", "content": [
                 {"type": "text", "text": "Primary working directory: /work/ws\n" + PROMPT}]}]}
    with httpx.stream("POST", f"{server.url}/v1/messages?beta=true", json={**first, "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use" and events[-1]["type"] == "message_stop"
    tool_json = "".join(e["delta"]["partial_json"] for e in events
                        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta")
    assert json.loads(tool_json) == {"file_path": "/work/ws/done/2.1.txt", "content": "ok 2.1\n"}
    second = {**first, "messages": [*first["messages"], {"role": "assistant", "content": []}, {"role": "user",
              "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}
    done = httpx.post(f"{server.url}/v1/messages", json=second).json()
    assert done["stop_reason"] == "end_turn" and "done" in done["content"][0]["text"]
    assert done["usage"]["input_tokens"] == 1200


@pytest.mark.parametrize("kind", ["openai", "ollama", "anthropic"])
def test_faults_are_scripted_per_server_and_per_task(servers: dict[str, ScriptedServer], kind: str) -> None:
    server = servers[kind]
    path = {"openai": "/v1/chat/completions", "ollama": "/api/chat", "anthropic": "/v1/messages"}[kind]
    ask = {"model": "m", "stream": False, "messages": [{"role": "user", "content": PROMPT}]}
    server.reset(Script(fault=Fault.HTTP_500))
    assert httpx.post(f"{server.url}{path}", json=ask).status_code == 500
    server.reset(Script(fault=Fault.NONSENSE))
    answer = httpx.post(f"{server.url}{path}", json=ask)
    assert answer.status_code == 200 and answer.content.startswith(b"<html>")
    server.reset(Script(by_task={"2.1": Fault.HANG}, usage=Usage(5, 6)))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}{path}", json=ask, timeout=0.5)
    other = {**ask, "messages": [{"role": "user", "content": "# Task 3: Other"}]}
    assert httpx.post(f"{server.url}{path}", json=other).status_code == 200
    assert server.tokens() == 11 and len(server.requests) == 2
