"""``python -m forge``: serve the forge, create repos in it, and comment as a user (sending the webhook).

Which forge: ``--forge``, else ``$FORGE_URL``, else the running ``clarity demo``'s (forge.locator), else
``http://127.0.0.1:9100`` (``serve``'s default). Secrets never go in argv: the webhook secret is read from the environment variable named by
``--webhook-secret-env`` (default ``GITHUB_WEBHOOK_SECRET``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from forge import locator

DEFAULT_FORGE = "http://127.0.0.1:9100"
_TARGET = re.compile(r"^(?P<repo>[^/#\s]+/[^/#\s]+)#(?P<number>\d+)$")


class CliError(Exception):
    """A problem to print and exit 2 on."""


def forge_url(given: str | None, env: dict[str, str] | None = None) -> str:
    """The forge to talk to; a stale demo file is ignored with a line on stderr saying why."""
    env = dict(os.environ) if env is None else env
    if given:
        return given
    if env.get("FORGE_URL"):
        return env["FORGE_URL"]
    found = locator.discover(locator.state_path(env))
    if found.url:
        return found.url
    if found.note:
        print(f"forge: {found.note}; trying {DEFAULT_FORGE} (pass --forge URL or set FORGE_URL)",
              file=sys.stderr)
    return DEFAULT_FORGE


def _call(given: str | None, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    forge = forge_url(given)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{forge.rstrip('/')}/_forge{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload or b"null")
        except ValueError:
            return exc.code, {"message": payload.decode(errors="replace")}
    except urllib.error.URLError as exc:
        hint = "" if given or os.environ.get("FORGE_URL") else (
            " (no running `clarity demo` found: start one, or pass --forge URL or set FORGE_URL)")
        raise CliError(f"cannot reach the forge at {forge}: {exc.reason}{hint}") from exc


def serve(args: argparse.Namespace) -> int:
    """Run the forge in the foreground until interrupted."""
    from werkzeug.serving import make_server

    from forge.config import ForgeConfig
    from forge.server import RequestHandler, create_forge_app

    secret = os.environ.get(args.webhook_secret_env)
    if not secret:
        raise CliError(f"set the webhook secret in ${args.webhook_secret_env} (never on the command line)")
    key_path = Path(args.app_key)
    if not key_path.is_file():
        raise CliError(f"--app-key {key_path} is not a file")
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    config = ForgeConfig(
        data_dir=Path(args.data_dir),
        app_id=args.app_id,
        app_public_key_pem=key_path.read_text(),
        webhook_url=args.webhook_url,
        webhook_secret=secret,
        public_url=public_url,
        app_slug=args.app_slug,
    )
    server = make_server(
        args.host, args.port, create_forge_app(config), threaded=True, request_handler=RequestHandler
    )
    print(
        f"forge: REST {config.api_url}  git {public_url}/<owner>/<repo>.git  admin {public_url}/_forge/"
        f"  webhooks -> {args.webhook_url or '(none)'}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def create_repo(args: argparse.Namespace) -> int:
    """Create a repo from a directory."""
    source = Path(args.dir).resolve()
    status, body = _call(
        args.forge, "POST", "/repos", {"full_name": args.full_name, "source_dir": str(source)}
    )
    if status != 201:
        raise CliError(f"could not create {args.full_name}: {body.get('message', body)}")
    print(
        f"created {args.full_name} (installation {body['installation_id']}, default branch "
        f"{body['default_branch']})\nclone: {body['clone_url']}"
    )
    return 0


def comment(args: argparse.Namespace) -> int:
    """Comment as a user and report what the webhook receiver answered; exit 1 unless 2xx."""
    match = _TARGET.match(args.target)
    if match is None:
        raise CliError(f"target must look like owner/repo#1, not {args.target!r}")
    body: dict[str, Any] = {
        "repo": match["repo"],
        "issue": int(match["number"]),
        "body": args.body,
        "user": args.user,
    }
    if args.delivery_id:
        body["delivery_id"] = args.delivery_id
    status, answer = _call(args.forge, "POST", "/comment", body)
    if status != 200:
        raise CliError(f"the forge refused the comment: {answer.get('message', answer)}")
    print(
        f"delivery {answer['delivery_id']}: webhook status {answer['status_code']}"
        + (f" ({answer['error']})" if answer.get("error") else "")
    )
    print(f"comment {answer['comment']['html_url']}")
    return 0 if answer["ok"] else 1


def set_permission(args: argparse.Namespace) -> int:
    """Give a user a role on a repo."""
    owner, _, repo = args.full_name.partition("/")
    status, answer = _call(
        args.forge,
        "PUT",
        f"/repos/{owner}/{repo}/collaborators/{args.login}",
        {"permission": args.permission},
    )
    if status != 200:
        raise CliError(f"could not set the permission: {answer.get('message', answer)}")
    print(f"{args.login} is {args.permission} on {args.full_name}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The CLI grammar."""
    root = argparse.ArgumentParser(prog="python -m forge", description="The local GitHub stand-in.")
    sub = root.add_subparsers(dest="command", required=True)
    forge_help = "the forge's URL (default: $FORGE_URL, else the running demo's, else " + DEFAULT_FORGE + ")"

    p = sub.add_parser("serve", help="run the forge")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--public-url", help="URL clients use (default http://HOST:PORT)")
    p.add_argument("--data-dir", required=True, help="where bare repositories are kept")
    p.add_argument("--app-id", type=int, required=True)
    p.add_argument("--app-key", required=True, help="the app's private or public key PEM file")
    p.add_argument("--app-slug", default="clarity",
                   help="the app's slug: its bot is <slug>[bot], as on GitHub (default clarity)")
    p.add_argument("--webhook-url", help="where webhooks are delivered (e.g. http://127.0.0.1:8000/webhooks)")
    p.add_argument(
        "--webhook-secret-env",
        default="GITHUB_WEBHOOK_SECRET",
        help="name of the environment variable holding the webhook secret",
    )
    p.set_defaults(func=serve)

    p = sub.add_parser("create-repo", help="create owner/repo from a directory (git working copy or plain)")
    p.add_argument("full_name")
    p.add_argument("dir")
    p.add_argument("--forge", help=forge_help)
    p.set_defaults(func=create_repo)

    p = sub.add_parser("comment", help="comment on owner/repo#N as a user and deliver the webhook")
    p.add_argument("target", help="owner/repo#N")
    p.add_argument("body")
    p.add_argument("--user", default=None, help="commenter (default: the repo owner)")
    p.add_argument("--delivery-id", default=None)
    p.add_argument("--forge", help=forge_help)
    p.set_defaults(func=comment)

    p = sub.add_parser("set-permission", help="give a user a role: admin, maintain, write, triage, read")
    p.add_argument("full_name")
    p.add_argument("login")
    p.add_argument("permission", choices=["admin", "maintain", "write", "triage", "read"])
    p.add_argument("--forge", help=forge_help)
    p.set_defaults(func=set_permission)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"forge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
