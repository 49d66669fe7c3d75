"""Attacks on the redactor: a known secret printed encoded or split, and half a key block, never get out.

The oracle (`_recoverable`) decodes a text the way an attacker reading it would (base64 and base64url at
every alignment, hex, percent-encoding, the text with its whitespace, quotes and `+` removed) and names
every way eight consecutive bytes of the secret can still be read from it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import devstack
from clarity.models import Execution, TaskProgress
from clarity.redaction import MASK, Redactor
from clarity.status import TaskStatus
from clarity.store import Store
from github_app.client import GitHubApp, SharedCache
from tests import e2e
from tests.conftest import AGENT
from tests.e2e import REPO, make_repo, tasks_md, wait_comment, wait_settled

WEBHOOK_SECRET = "f3a9c27d51e04b8e9a6d2c71b0e85f4a39d1c6e2"  # shaped like devstack's token_hex(20)
TOKEN = "ghs_" + "Xq7Lm2Rt9Vb4Nc8Kd1Fg6Hj3Sp5Wz0Ya2Eu7Io"
ODD = "p@ss/w0rd+key=v&x y"  # one that URL-encoding, base64's + and / and the split rule all touch
WINDOW = 8  # bytes of the secret that must not be readable anywhere

ENCODINGS: dict[str, Callable[[str], str]] = {
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url without padding": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "hex": lambda s: s.encode().hex(),
    "HEX": lambda s: s.encode().hex().upper(),
    "url-encoded": lambda s: urllib.parse.quote(s, safe=""),
    "url-encoded form": lambda s: urllib.parse.quote_plus(s),
    "every byte percent-encoded": lambda s: "".join(f"%{b:02X}" for b in s.encode()),
    "every byte percent-encoded, lower case": lambda s: "".join(f"%{b:02x}" for b in s.encode()),
    "two halves on two lines": lambda s: f"{s[:len(s) // 2]}\n{s[len(s) // 2:]}",
    "a newline every 20 characters": lambda s: "\n".join(s[i:i + 20] for i in range(0, len(s), 20)),
    "a newline every 5 characters, indented": lambda s: "\n    ".join(s[i:i + 5] for i in range(0, len(s), 5)),
    "string concatenation": lambda s: f'"{s[:9]}" "{s[9:]}"',
    "plus concatenation": lambda s: f"'{s[:5]}' + '{s[5:17]}' +\n    '{s[17:]}'",
    "halves inside a JSON string": lambda s: json.dumps(f"{s[:len(s) // 2]}\n{s[len(s) // 2:]}")[1:-1],
    "concatenation inside a JSON string": lambda s: json.dumps(f'"{s[:9]}" "{s[9:]}"')[1:-1],
}


def _flat(text: str) -> str:
    return re.sub(r"""\\[nrt]|[\s"'+\\]""", "", text)


def _windows(secret: bytes) -> list[bytes]:
    return [secret[i:i + WINDOW] for i in range(max(1, len(secret) - WINDOW + 1))]


def _base64_decodings(text: str) -> Iterator[bytes]:
    for run in re.findall(r"[A-Za-z0-9+/_-]{8,}", text):
        run = run.translate(str.maketrans("-_", "+/"))
        for shift in range(4):
            chunk = run[shift:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                yield base64.b64decode(chunk)
            except binascii.Error:
                continue


def _hex_decodings(text: str) -> Iterator[bytes]:
    for run in re.findall(r"[0-9a-fA-F]{8,}", text):
        for shift in range(2):
            chunk = run[shift:]
            yield bytes.fromhex(chunk[: len(chunk) - len(chunk) % 2])


def _recoverable(secret: str, text: str) -> list[str]:
    """Every reading of `text` in which eight bytes in a row of `secret` can still be found."""
    windows = _windows(secret.encode())
    readings: dict[str, list[bytes]] = {
        "plain": [text.encode()],
        "split": [_flat(text).encode()] if len(_flat(secret)) >= 8 else [],
        "url-decoded": [urllib.parse.unquote_plus(text).encode()],
        "base64": list(_base64_decodings(text)),
        "hex": list(_hex_decodings(text)),
    }
    return [name for name, candidates in readings.items() if any(w in c for c in candidates for w in windows)]


# -- encoded and split copies of a known secret -------------------------------------------------------
@pytest.mark.parametrize("secret", [WEBHOOK_SECRET, TOKEN, ODD])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_an_encoded_or_split_copy_of_a_known_secret_is_masked(encoding: str, secret: str) -> None:
    text = f"agent says: {ENCODINGS[encoding](secret)} (done)\nnext line"
    assert _recoverable(secret, text), "the oracle must see the copy before redaction"
    cleaned = Redactor([secret])(text)
    assert _recoverable(secret, cleaned) == []
    assert cleaned.startswith("agent says: ") and cleaned.endswith(" (done)\nnext line") and MASK in cleaned


@pytest.mark.parametrize("urlsafe", [False, True], ids=["base64", "base64url"])
@pytest.mark.parametrize("before", range(6))
def test_a_secret_inside_a_longer_base64_blob_is_masked_at_every_alignment(before: int, urlsafe: bool) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(bytes(range(200, 200 + before)) + TOKEN.encode() + b'", "expires": 3600}').decode()
    cleaned = Redactor([TOKEN])(f"Authorization-Blob {blob}\n")
    assert _recoverable(TOKEN, cleaned) == []
    assert cleaned.startswith("Authorization-Blob ") and MASK in cleaned


def test_a_secret_inside_a_longer_hex_dump_is_masked() -> None:
    dump = (b"\x00\x01prefix" + WEBHOOK_SECRET.encode() + b"suffix").hex()
    cleaned = Redactor([WEBHOOK_SECRET])(f"xxd: {dump}")
    assert _recoverable(WEBHOOK_SECRET, cleaned) == [] and cleaned.startswith("xxd: 00017072656669")


def test_every_known_secret_is_masked_in_every_form_at_once() -> None:
    secrets = [WEBHOOK_SECRET, TOKEN, ODD]
    text = "\n".join(f"{name}: {encode(s)}" for s in secrets for name, encode in ENCODINGS.items())
    cleaned = Redactor(secrets)(text)
    assert all(_recoverable(s, cleaned) == [] for s in secrets)
    assert all(f"\n{name}: " in cleaned for name in list(ENCODINGS)[1:])  # each copy masked, not its line


def test_split_matching_needs_eight_characters_and_leaves_ordinary_text_alone() -> None:
    short = Redactor(["abc1234"])
    assert short("a b c 1 2 3 4 and abc\n1234") == "a b c 1 2 3 4 and abc\n1234"
    assert short("abc1234") == MASK  # the whole value is still masked
    long = Redactor([WEBHOOK_SECRET])
    interleaved = "-".join(WEBHOOK_SECRET)  # a dash is not a way to split a secret
    prose = "The check passed in 0.3s; see tests/test_api.py::test_ok and the base64 aGVsbG8gd29ybGQ=.\n"
    assert long(interleaved) == interleaved and long(prose) == prose


@given(secret=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"'+\\"),
                     min_size=8, max_size=48),
       before=st.binary(max_size=5), after=st.binary(max_size=5),
       encoding=st.sampled_from(["base64 blob", "base64url blob", *ENCODINGS]))
def test_no_encoding_of_any_secret_survives(secret: str, before: bytes, after: bytes, encoding: str) -> None:
    if encoding.endswith("blob"):
        encode = base64.urlsafe_b64encode if encoding.startswith("base64url") else base64.b64encode
        copy = encode(before + secret.encode() + after).decode()
    else:
        copy = ENCODINGS[encoding](secret)
    cleaned = Redactor([secret])(f"out: {copy} :end")
    middle = secret.encode()[2:-2]  # the edges may meet the neighbouring bytes of a blob; the rest may not
    assert middle not in cleaned.encode() and middle not in _flat(cleaned).encode()
    assert not any(middle in decoded for decoded in (*_base64_decodings(cleaned), *_hex_decodings(cleaned)))
    assert middle not in urllib.parse.unquote_plus(cleaned).encode()


def test_a_log_line_with_a_base64_secret_reaches_no_handler(caplog: pytest.LogCaptureFixture) -> None:
    from clarity.redaction import install_logging, redact

    install_logging()
    secret = f"log-secret-{uuid.uuid4().hex}"
    redact.add(secret)
    caplog.set_level(logging.INFO)
    logging.getLogger("clarity.test").info("env dump: %s", base64.b64encode(secret.encode()).decode())
    assert _recoverable(secret, caplog.text) == [] and "env dump: [REDACTED]" in caplog.text


def test_a_task_rows_error_text_is_redacted_in_redis(store: Store, redis_client: redis.Redis) -> None:
    from clarity.redaction import redact

    secret = f"row-secret-{uuid.uuid4().hex}"
    redact.add(secret)
    ex = store.create(Execution(id="", installation_id=1, repo=REPO, account="acme", issue_number=1,
                                is_pull_request=False, branch="clarity/issue-1", base_branch="main", requester="ada"),
                      actor="ada")
    error = f"Check `pytest` failed (exit 1):\n{ENCODINGS['string concatenation'](secret)}"
    store.set_task_status(ex.id, "1", TaskStatus.IN_PROGRESS, last_error=error)
    store.settle_tasks(ex.id, [TaskProgress("2", "two", status=TaskStatus.IN_PROGRESS, last_error=error)])
    rows = json.dumps(redis_client.hgetall(f"{store.namespace}:exec:{ex.id}:tasks"))
    assert _recoverable(secret, rows) == [] and rows.count("Check `pytest` failed") == 2


# -- a private key header without its END line -----------------------------------------------------
KINDS = ["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "]


def _half_key(pem: str, kind: str, lines: int = 6) -> tuple[str, list[str]]:
    """The first `lines` body lines of a key under a `kind` header, as a cut-off output shows it."""
    body = [line for line in pem.splitlines() if line and "-----" not in line][:lines]
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(body) + "\n", body


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_header_without_end_masks_the_key_not_the_rest_of_checks_json(private_key_pem: str, kind: str) -> None:
    key, body = _half_key(private_key_pem, kind)
    checks = [{"command": "cat deploy.key | head", "passed": False, "exit_code": 1, "output": key},
              {"command": "pytest -q", "passed": True, "exit_code": 0, "output": "3 passed in 0.2s\n"}]
    cleaned = Redactor()(json.dumps(checks, indent=2))
    parsed = json.loads(cleaned)  # the old pattern cut the text to its end: not JSON any more
    assert parsed[1] == checks[1]
    assert {k: v for k, v in parsed[0].items() if k != "output"} == {k: v for k, v in checks[0].items() if k != "output"}
    assert MASK in parsed[0]["output"] and not any(line in cleaned for line in body)


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_header_without_end_in_plain_output_keeps_the_lines_after_the_key(private_key_pem: str,
                                                                                   kind: str) -> None:
    key, body = _half_key(private_key_pem, kind)
    tail = "FAILED tests/test_deploy.py::test_key - AssertionError: bad key\n= 1 failed in 0.1s =\n"
    cleaned = Redactor()(f"$ cat deploy.key\n{key}{tail}")
    assert cleaned == f"$ cat deploy.key\n{MASK}\n{tail}"
    assert not any(line in cleaned for line in body)


def test_an_encrypted_legacy_key_header_masks_its_headers_and_body(private_key_pem: str) -> None:
    _, body = _half_key(private_key_pem, "RSA ")
    key = ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,2AF25325A9B286BB\n\n"
           + "\n".join(body) + "\n")
    cleaned = Redactor()(f"{key}done: exit 1\n")
    assert cleaned == f"{MASK}\ndone: exit 1\n"


def test_a_key_header_without_end_followed_by_a_whole_key_keeps_the_text_between(private_key_pem: str) -> None:
    half, body = _half_key(private_key_pem, "")
    cleaned = Redactor()(f"first:\n{half}between the two keys\nsecond:\n{private_key_pem}after\n")
    assert cleaned == f"first:\n{MASK}\nbetween the two keys\nsecond:\n{MASK}\nafter\n"
    assert not any(line in cleaned for line in body)


def test_a_key_header_in_prose_masks_nothing_after_it() -> None:
    text = "A file starting with -----BEGIN PRIVATE KEY----- is refused: keep keys out of the repo.\nok\n"
    assert Redactor()(text) == f"A file starting with {MASK} is refused: keep keys out of the repo.\nok\n"


# -- the cost -------------------------------------------------------------------------------------------
def test_the_redaction_bench_runs_and_reports_its_figure() -> None:
    # The goal (1 MB with ten known secrets well under 100 ms) is judged in bench/, not here.
    bench = Path(__file__).resolve().parents[1] / "bench" / "redaction_bench.py"
    out = subprocess.run([sys.executable, str(bench), "--megabytes", "0.1", "--repeat", "1"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    [line] = out.splitlines()
    result = json.loads(line)
    assert result["bench"] == "redaction" and result["secrets"] == 10
    assert all(ms > 0 for ms in result["ms"].values())


# -- through the whole product ------------------------------------------------------------------
@pytest.fixture
def leaky_stack(redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    """A stack whose worker is started by the test (its agent command then names the secrets to leak)."""
    running = devstack.start(tmp_path / "stack", redis_url, workers=0, namespace=f"e2e-{uuid.uuid4().hex[:8]}",
                             extra_env={"CLARITY_RETRY_BACKOFF": "0.05", "CLARITY_LOG_FORMAT": "json",
                                        "CLARITY_DASHBOARD_AUTH": "open"})
    try:
        yield running
    finally:
        running.forget()
        running.stop()


def _installation_token(stack: devstack.Stack) -> str:
    """An installation token minted into the deployment's shared cache, where the worker will find it."""
    s = stack.settings
    raw = redis.Redis.from_url(s.redis_url)
    app = GitHubApp(s.app_id, s.private_key, s.github_api_url, shared=SharedCache(raw, s.namespace, s.private_key))
    return app.installation_token(app.installation_id_for(REPO))


@pytest.mark.e2e
def test_encoded_secrets_reach_no_sink(leaky_stack: devstack.Stack, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    stack = leaky_stack
    caplog.set_level(logging.DEBUG)
    make_repo(stack, tmp_path, tasks_md(("1", "Encoder [leak-encoded]", False)))
    secrets = [stack.settings.webhook_secret, _installation_token(stack)]
    # The agent learns the secrets from its command line: however it got them, it prints them encoded and
    # split (base64, base64url, inside a blob, hex, URL-encoded, over lines, as "a" "b"); the check quotes them.
    stack.env["CLARITY_AGENT_COMMAND"] = " ".join([sys.executable, str(AGENT), "{prompt_file}",
                                                   *(f"--leak={s}" for s in secrets)])
    stack.start_worker()
    stack.comment(REPO, 1, "/clarity run", user="ada")
    wait_settled(stack)
    failed = wait_comment(stack, "failed after 4 attempts")
    assert "wrong 1" in failed["body"]  # the check's output, leaked copies and all, was quoted
    sinks = e2e.sinks(stack, caplog.text)
    assert all(sinks.values())
    assert any(MASK in text for text in sinks.values())
    for sink, text in sinks.items():
        for secret in secrets:
            assert _recoverable(secret, text) == [], f"a copy of a secret leaked into {sink}"
