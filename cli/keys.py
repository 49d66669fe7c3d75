"""`clarity secrets`, `tokens` and `sessions`: the keys to Clarity, each needing only Redis."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.args import fail

if TYPE_CHECKING:
    from clarity.apitokens import ApiTokens
    from clarity.vault import Vault


SECRETS_ACTIONS = ("generate-key", "set", "list", "rotate", "delete")


def cmd_secrets(args: argparse.Namespace) -> int:
    """Manage encrypted secrets; needs only REDIS_URL, CLARITY_NAMESPACE and CLARITY_SECRET_KEYS."""
    from redis import RedisError

    from clarity.settings import Settings, SettingsError
    from clarity.vault import Vault, VaultError, generate_key

    if args.action == "generate-key":
        print(generate_key())
        return 0
    needs_name = args.action in ("set", "delete")
    if needs_name != (args.name is not None):
        return fail(f"secrets {args.action} {'takes a NAME' if needs_name else 'takes no NAME'}")
    try:
        vault = Vault.from_settings(Settings.from_env(args.env, require_github=False))
        return _SECRETS_RUN[args.action](vault, args)
    except (SettingsError, VaultError) as err:
        return fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return fail(f"Redis (REDIS_URL) failed: {err}")


def _secrets_set(vault: Vault, args: argparse.Namespace) -> int:
    # The value comes from stdin (piped) or a hidden prompt, never from argv where `ps` would show it.
    if sys.stdin.isatty():
        value = getpass.getpass(f"value for {args.name}: ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    vault.set(args.name, value, scope=args.scope)
    print(f"stored {args.name} ({args.scope})")
    return 0


def _secrets_list(vault: Vault, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    infos = vault.names()
    if not infos:
        print("no secrets stored")
        return 0
    rows = [("NAME", "SCOPE", "UPDATED (UTC)", "KEY")]
    for info in infos:
        when = datetime.fromtimestamp(info.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        key = ("not in CLARITY_SECRET_KEYS" if info.key_position is None
               else f"{info.key_position}{' (current)' if info.key_position == 1 else ''}")
        rows.append((info.name, info.scope, when, key))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _secrets_rotate(vault: Vault, args: argparse.Namespace) -> int:
    report = vault.rotate()
    print(f"rotated {report.rotated}, already under key 1: {report.already_current}, "
          f"unreadable: {len(report.unreadable)}, total {report.total}")
    if report.unreadable:
        return fail(f"{len(report.unreadable)} secret(s) were encrypted with a key that is not in "
                     f"CLARITY_SECRET_KEYS and were left as they are: {', '.join(report.unreadable)}")
    return 0


def _secrets_delete(vault: Vault, args: argparse.Namespace) -> int:
    vault.delete(args.name)
    print(f"deleted {args.name}")
    return 0


_SECRETS_RUN: dict[str, Callable[[Vault, argparse.Namespace], int]] = {
    "set": _secrets_set,
    "list": _secrets_list,
    "rotate": _secrets_rotate,
    "delete": _secrets_delete,
}


TOKENS_ACTIONS = ("create", "list", "revoke")


def cmd_tokens(args: argparse.Namespace) -> int:
    """API tokens for scripts (`Authorization: Bearer …`); needs only REDIS_URL and CLARITY_NAMESPACE."""
    from redis import RedisError

    from clarity.apitokens import ApiTokens, TokenError
    from clarity.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(args.env, require_github=False)
        tokens = ApiTokens.from_url(settings.redis_url, settings.namespace)
        return _TOKENS_RUN[args.action](tokens, args)
    except (SettingsError, TokenError) as err:
        return fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return fail(f"Redis (REDIS_URL) failed: {err}")


def _tokens_create(tokens: ApiTokens, args: argparse.Namespace) -> int:
    if args.target is not None:
        return fail("tokens create takes no positional argument; use --installation and --role")
    token, record = tokens.create(args.role, args.installation or (), name=args.name or "",
                                  everything=args.all_installations)
    scope = "every installation" if record.everything else \
        "installation" + ("s " if len(record.installations) > 1 else " ") + ", ".join(map(str, record.installations))
    print(token)
    print(f"created token {record.id} ({record.name}): {record.role} on {scope}. "
          "It is shown only now: keep it somewhere safe.", file=sys.stderr)
    return 0


def _tokens_list(tokens: ApiTokens, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    def when(stamp: float | None) -> str:
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M") if stamp else "never"

    records = tokens.records()
    if not records:
        print("no API tokens")
        return 0
    rows = [("ID", "NAME", "ROLE", "INSTALLATIONS", "CREATED (UTC)", "LAST USED (UTC)")]
    rows += [(t.id, t.name, t.role, "all" if t.everything else ",".join(map(str, t.installations)),
              when(t.created), when(t.last_used)) for t in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _tokens_revoke(tokens: ApiTokens, args: argparse.Namespace) -> int:
    if not args.target:
        return fail("tokens revoke takes the token's ID (or the start of it; see `clarity tokens list`)")
    record = tokens.revoke(args.target)
    print(f"revoked token {record.id} ({record.name})")
    return 0


_TOKENS_RUN: dict[str, Callable[[ApiTokens, argparse.Namespace], int]] = {
    "create": _tokens_create,
    "list": _tokens_list,
    "revoke": _tokens_revoke,
}


def cmd_sessions(args: argparse.Namespace) -> int:
    """`sessions revoke LOGIN`: end every dashboard session of a person at once; needs only REDIS_URL."""
    from redis import RedisError

    from clarity.sessions import Sessions
    from clarity.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(args.env, require_github=False)
        ended = Sessions.from_url(settings.redis_url, settings.namespace).end_all(args.login)
    except SettingsError as err:
        return fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return fail(f"Redis (REDIS_URL) failed: {err}")
    print(f"ended {ended} dashboard session(s) of {args.login}")
    return 0
