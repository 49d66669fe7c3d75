"""Git smart HTTP at ``/<owner>/<repo>.git/...``: `git http-backend` as CGI behind token auth.

Credentials come as HTTP Basic (any username, the password is an installation or user token), which is
what ``git -c http.extraHeader="Authorization: Basic ..."`` sends.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from flask import Blueprint, Response, g, request

from forge import git_repos, push_rules, state_events
from forge.auth import Grant
from forge.context import ForgeContext, forge_context
from forge.records import ROLE_RANK, Repo
from forge.rest.access import LEVEL_RANK

log = logging.getLogger(__name__)
blueprint = Blueprint("forge_git", __name__)
CHUNK = 64 * 1024


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status=status, headers=headers or {}, mimetype="text/plain")


def _challenge() -> Response:
    return _text(401, "Authentication required", {"WWW-Authenticate": 'Basic realm="GitHub"'})


def _credential() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    if scheme.lower() in ("bearer", "token"):
        return value.strip() or None
    return None


def _allowed(ctx: ForgeContext, grant: Grant, repo: Repo, write: bool) -> tuple[bool, bool]:
    """(visible, permitted) for this grant on this repo."""
    if grant.kind == "installation":
        visible = repo.installation_id == grant.installation_id and (
            grant.repositories is None or repo.name.lower() in grant.repositories
        )
        level = (grant.permissions or {}).get("contents", "none")
        return visible, LEVEL_RANK.get(level, 0) >= LEVEL_RANK["write" if write else "read"]
    role = ctx.state.role(repo.full_name, grant.login) or ("none" if repo.private else "read")
    return role != "none", ROLE_RANK[role] >= ROLE_RANK["write" if write else "read"]


def _authorize(owner: str, name: str, service: str) -> Response | tuple[Repo, Grant]:
    """The repo and the caller's grant, or the response refusing the request."""
    ctx = forge_context()
    credential = _credential()
    grant = ctx.tokens.lookup(credential) if credential else None
    g.principal_kind = grant.kind if grant else "none"
    if grant is None:
        return _challenge()
    repo = ctx.state.repo(f"{owner}/{name}")
    write = service == "git-receive-pack"
    visible, permitted = _allowed(ctx, grant, repo, write) if repo else (False, False)
    if repo is None or not visible:
        return _text(404, "Repository not found.")
    if not permitted:
        return _text(403, f"Permission to {repo.full_name}.git denied to {grant.login}.")
    return repo, grant


def _feed(stream: IO[bytes], stdin: IO[bytes], gzipped: bool) -> None:
    """Copy the request body into the CGI's stdin, inflating gzip bodies (large pushes send them)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    try:
        while chunk := stream.read(CHUNK):
            stdin.write(inflater.decompress(chunk) if inflater else chunk)
        if inflater:
            stdin.write(inflater.flush())
    except (BrokenPipeError, OSError, zlib.error) as exc:
        log.warning("git request body not fully forwarded: %s", exc)
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


# The repository's own hooks still run behind the forge's (core.hooksPath replaces the hooks folder):
# tests install one in a bare repository to hold a push at a chosen moment.
_OWN_HOOK = '#!/bin/sh\nown="$(git rev-parse --git-dir)/hooks/{name}"\n[ -x "$own" ] && exec "$own" "$@"\nexit 0\n'
_FORWARDED = ("post-receive", "update", "post-update")


def _hooks_dir(ctx: ForgeContext) -> Path:
    """A directory with the forge's pre-receive hook (forge.push_rules run by this interpreter), and the
    other receive hooks handing over to the repository's own."""
    hooks = Path(ctx.config.data_dir) / "hooks"
    scripts = {"pre-receive": f'#!/bin/sh\nexec "{sys.executable}" "{push_rules.__file__}"\n',
               **{name: _OWN_HOOK.format(name=name) for name in _FORWARDED}}
    for name, script in scripts.items():
        hook = hooks / name
        if not hook.exists() or hook.read_text() != script:
            hooks.mkdir(parents=True, exist_ok=True)
            staged = hooks / f".{name}.{os.getpid()}.{threading.get_ident()}"
            staged.write_text(script)
            staged.chmod(0o755)
            staged.replace(hook)
    return hooks


def _push_env(ctx: ForgeContext, grant: Grant, verdict: Path) -> dict[str, str]:
    """What the pre-receive hook needs to refuse a push as GitHub does."""
    may_touch = grant.kind != "installation" or (grant.permissions or {}).get("workflows") == "write"
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_1": "core.hooksPath",
        "GIT_CONFIG_VALUE_1": str(_hooks_dir(ctx)),
        "FORGE_PUSH_WORKFLOWS": "1" if may_touch else "0",
        "FORGE_PUSH_MAX_BYTES": str(ctx.state.max_file_bytes),
        "FORGE_PUSH_VERDICT": str(verdict),
    }


def _pkt(payload: bytes) -> bytes:
    return f"{len(payload) + 4:04x}".encode() + payload


def _pkts(data: bytes) -> list[bytes]:
    """Split a pkt-line stream into whole packets (length prefix included)."""
    packets, at = [], 0
    while at + 4 <= len(data):
        size = int(data[at : at + 4], 16)
        end = at + (max(size, 4))
        packets.append(data[at:end])
        at = end
    return packets


def _reasoned(report: bytes, reasons: dict[bytes, bytes]) -> bytes:
    """Report-status packets with git's "pre-receive hook declined" replaced by the hook's reason per ref."""
    out = []
    for packet in _pkts(report):
        line = packet[4:]
        if line.startswith(b"ng "):
            ref = line[3:].split(b" ", 1)[0]
            if ref in reasons:
                packet = _pkt(b"ng " + ref + b" " + reasons[ref] + b"\n")
        out.append(packet)
    return b"".join(out)


def with_reasons(body: bytes, reasons: dict[bytes, bytes]) -> bytes:
    """receive-pack's answer with each refused ref's reason set, inside side-band 1 when the client asked for it."""
    packets = _pkts(body)
    if not any(p[4:5] in (b"\x01", b"\x02", b"\x03") for p in packets):
        return _reasoned(body, reasons)
    report = b"".join(p[5:] for p in packets if p[4:5] == b"\x01")
    others = [p for p in packets if p[4:5] != b"\x01" and p != b"0000"]
    rewritten = _reasoned(report, reasons)
    chunks = [_pkt(b"\x01" + rewritten[i : i + 65515]) for i in range(0, len(rewritten), 65515)]
    return b"".join(others + chunks) + b"0000"


def _reasons(verdict: Path) -> dict[bytes, bytes]:
    try:
        text = verdict.read_bytes()
    except OSError:
        return {}
    return {ref: reason for ref, _, reason in (line.partition(b"\t") for line in text.splitlines()) if reason}


def _cgi_env(ctx: ForgeContext, repo: Repo, tail: str, login: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_PROJECT_ROOT": str(ctx.config.repos_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.owner}/{repo.name}.git/{tail}",
            "QUERY_STRING": request.query_string.decode(),
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "REMOTE_USER": login,
            "REMOTE_ADDR": request.remote_addr or "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
        }
    )
    if protocol := request.headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = protocol
    return env


def _read_headers(stdout: IO[bytes]) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    while line := stdout.readline():
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        key, _, value = text.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[key.strip()] = value.strip()
    return status, headers


def _run_backend(owner: str, name: str, tail: str, service: str) -> Response:
    decision = _authorize(owner, name, service)
    if isinstance(decision, Response):
        return decision
    repo, grant = decision
    login = grant.login
    ctx = forge_context()
    is_push = service == "git-receive-pack" and request.method == "POST"
    before = git_repos.branches(ctx.code.bare(repo)) if is_push else {}
    env = _cgi_env(ctx, repo, tail, login)
    verdict = Path(tempfile.mkdtemp(prefix="forge-push-")) / "verdict" if is_push else None
    if verdict is not None:
        env.update(_push_env(ctx, grant, verdict))
    proc = subprocess.Popen(
        ["git", "http-backend"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    gzipped = request.headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip")
    feeder = threading.Thread(target=_feed, args=(request.stream, proc.stdin, gzipped), daemon=True)
    feeder.start()
    errors: list[bytes] = []
    stderr = proc.stderr
    drain = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
    drain.start()
    status, headers = _read_headers(proc.stdout)
    if not headers:
        status = 500

    def body() -> Iterator[bytes]:
        assert proc.stdout is not None
        try:
            if verdict is None:
                while chunk := proc.stdout.read1(CHUNK):  # type: ignore[attr-defined]  # a BufferedReader
                    yield chunk
            else:  # a push's answer is small: held back so a refused ref can carry GitHub's reason
                answer = proc.stdout.read()
                proc.wait()
                if ctx.state.visibility.delay:  # from now on, before the client hears back
                    ctx.state.visibility.pushed(repo.full_name, before, git_repos.branches(ctx.code.bare(repo)))
                reasons = _reasons(verdict)
                yield with_reasons(answer, reasons) if reasons else answer
        finally:
            if verdict is not None:
                shutil.rmtree(verdict.parent, ignore_errors=True)
            feeder.join(timeout=30)
            code = proc.wait()
            drain.join(timeout=5)
            if code != 0 or status >= 400:
                log.warning(
                    "git http-backend %s %s exited %s: %s",
                    service,
                    repo.full_name,
                    code,
                    b"".join(errors).decode(errors="replace").strip(),
                )
            elif is_push:
                ctx.state.touch_repo(repo.full_name)
                state_events.pushed(ctx, repo, login, before, git_repos.branches(ctx.code.bare(repo)))

    return Response(body(), status=status, headers=headers, direct_passthrough=True)


@blueprint.get("/<owner>/<name>.git/info/refs")
def info_refs(owner: str, name: str) -> Response:
    """Ref advertisement for either service."""
    service = request.args.get("service", "")
    if service not in ("git-upload-pack", "git-receive-pack"):
        return _text(403, "Dumb HTTP is not supported; use a git client with smart HTTP.")
    return _run_backend(owner, name, "info/refs", service)


@blueprint.post("/<owner>/<name>.git/git-upload-pack")
def upload_pack(owner: str, name: str) -> Response:
    """Fetch and clone."""
    return _run_backend(owner, name, "git-upload-pack", "git-upload-pack")


@blueprint.post("/<owner>/<name>.git/git-receive-pack")
def receive_pack(owner: str, name: str) -> Response:
    """Push."""
    return _run_backend(owner, name, "git-receive-pack", "git-receive-pack")
