"""Running and operating Clarity: `clarity worker`, `demo`, `setup`, `history` and `deliveries`."""

from __future__ import annotations

import argparse
import sys

from cli.args import fail


def cmd_worker(args: argparse.Namespace) -> int:
    """Process Clarity's queues (the `worker` process of the Procfile)."""
    from clarity.settings import SettingsError

    try:
        from jobs.worker import work  # the CLI is an edge: it composes the engine lazily

        return work(role=args.role, burst=args.burst)
    except SettingsError as err:
        return fail(str(err))


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the self-contained demo: forge, web, worker, a sample repo and a `/clarity run` comment."""
    from devstack.demo import main as demo_main  # composition root, like app.py

    return demo_main(until=args.until, keep=args.keep)


def cmd_setup(args: argparse.Namespace) -> int:
    """Create the GitHub App from Clarity's manifest and store its id, key and secrets in the vault."""
    import os

    from redis import RedisError

    from clarity.settings import Settings, SettingsError
    from clarity.vault import Vault, VaultError

    try:
        settings = Settings.from_env(args.env, require_github=False)
        vault = Vault.from_settings(settings)
        vault.names()  # reach Redis now, not after the person has clicked through GitHub
    except (SettingsError, VaultError) as err:
        return fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return fail(f"Redis (REDIS_URL) failed: {err}")
    from github_app.setup import SetupError, run_setup  # the CLI composes lazily

    try:
        return run_setup(settings, vault, name=args.name, org=args.org, port=args.port,
                         open_browser=not args.no_browser, timeout=args.timeout,
                         env=os.environ if args.env is None else args.env)
    except SetupError as err:
        return fail(str(err))
    except KeyboardInterrupt:
        print("\nstopped: no app was stored", file=sys.stderr)
        return 130


def cmd_history(args: argparse.Namespace) -> int:
    """`history prune`: forget finished executions older than the retention; needs only REDIS_URL."""
    import time

    from redis import RedisError

    from clarity import history
    from clarity.settings import Settings, SettingsError
    from clarity.store import Store

    try:
        settings = Settings.from_env(args.env, require_github=False)
        days = settings.history_retention_days if args.days is None else args.days
        if days < 0:
            return fail(f"--days must not be negative, got {days:g}")
        gone = history.prune(Store.from_url(settings.redis_url, settings.namespace), time.time(), days)
    except SettingsError as err:
        return fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return fail(f"Redis (REDIS_URL) failed: {err}")
    for execution_id in gone:
        print(execution_id)
    print(f"removed {len(gone)} finished execution(s) older than {days:g} days" if days > 0 else
          "retention is 0 (keep forever): nothing removed", file=sys.stderr)
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    """`deliveries reconcile`: one delivery reconciler pass now (ask GitHub for the deliveries Clarity missed)."""
    import httpx
    from githubkit.exception import GitHubException
    from redis import RedisError

    from clarity.app_credentials import load_settings
    from clarity.settings import SettingsError

    try:
        from github_app.client import describe_error  # the CLI is an edge: it composes the engine lazily
        from jobs import context, redelivery

        report = redelivery.reconcile(context.build(load_settings(args.env)))
    except SettingsError as err:
        return fail(str(err))
    except RedisError as err:  # its text names host and port, never the URL's password
        return fail(f"Redis (REDIS_URL) failed: {err}")
    except (GitHubException, httpx.HTTPError) as err:
        print(f"clarity: could not read the app's webhook deliveries: {describe_error(err)}", file=sys.stderr)
        return 1
    if report.skipped:
        print("another process is reconciling deliveries now: nothing done", file=sys.stderr)
        return 0
    for guid in report.asked:
        print(guid)
    print(f"read {report.read} delivery attempt(s); asked GitHub to redeliver {len(report.asked)}"
          + (f"; refused {len(report.refused)}" if report.refused else "")
          + (f"; to try again {len(report.failed)}" if report.failed else "")
          + (f"; given up {len(report.given_up)}" if report.given_up else ""), file=sys.stderr)
    return 0
