"""Git smart HTTP at ``/<owner>/<repo>.git/...``: `git http-backend` as CGI behind token auth.

Credentials come as HTTP Basic (any username, the password is an installation or user token), which is
what ``git -c http.extraHeader="Authorization: Basic ..."`` sends.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import threading
import zlib
from collections.abc import Iterator
from typing import IO

from flask import Blueprint, Response, g, request

from forge import git_repos, state_events
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


def _authorize(owner: str, name: str, service: str) -> Response | tuple[Repo, str]:
    """The repo and acting login, or the response refusing the request."""
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
    return repo, grant.login


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
    repo, login = decision
    ctx = forge_context()
    is_push = service == "git-receive-pack" and request.method == "POST"
    before = git_repos.branches(ctx.code.bare(repo)) if is_push else {}
    proc = subprocess.Popen(
        ["git", "http-backend"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_cgi_env(ctx, repo, tail, login),
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
            while chunk := proc.stdout.read1(CHUNK):  # type: ignore[attr-defined]  # a BufferedReader
                yield chunk
        finally:
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
