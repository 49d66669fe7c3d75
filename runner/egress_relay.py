"""Inside a sandbox with a network of its own: a proxy port on its loopback that leads to the worker's
egress proxy over a unix socket, and the sandboxed command, started with the proxy variables set.

Run as `python3 -I -S -c <this file's text> <socket> -- <command...>` (see `runner.egress.relay_argv`):
the standard library only and Python 3.8 or later, because it runs with whatever interpreter the sandbox
has (the worker's under bubblewrap, the image's under docker) and never sees Clarity's package.
Every byte it relays goes to the worker's proxy, which decides; this side decides nothing.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading

CHUNK = 65536
IDLE = 600.0  # seconds a relayed connection may stay silent both ways
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def pump(client: socket.socket, upstream: socket.socket, idle: float = IDLE) -> None:
    """Copy bytes both ways until the upstream side ends, either side fails, or `idle` seconds pass quietly.

    The client's end of input is passed on as a half-close, so a request body can end while the answer
    still comes; the upstream's end finishes the connection.
    """
    poller = select.poll()
    poller.register(client, select.POLLIN)
    poller.register(upstream, select.POLLIN)
    while True:
        events = poller.poll(idle * 1000)
        if not events:
            return
        for fd, _ in events:
            source, target = (client, upstream) if fd == client.fileno() else (upstream, client)
            try:
                data = source.recv(CHUNK)
            except OSError:
                return
            if not data:
                if source is upstream:
                    return
                poller.unregister(client)
                try:
                    upstream.shutdown(socket.SHUT_WR)
                except OSError:
                    return
                continue
            try:
                target.sendall(data)
            except OSError:
                return


def _relay(conn: socket.socket, path: str) -> None:
    with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
        conn.settimeout(IDLE)
        upstream.settimeout(IDLE)
        try:
            upstream.connect(path)
        except OSError:
            return  # the run is ending; the client sees its connection closed
        pump(conn, upstream)


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_relay, args=(conn, path), daemon=True).start()


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | int:
    """The command's process, or the exit code a shell would give when it cannot start (127, 126)."""
    try:
        return subprocess.Popen(command, env=env)
    except FileNotFoundError:
        sys.stderr.write(f"command not found: {command[0]}\n")
        return 127
    except PermissionError:
        sys.stderr.write(f"permission denied: {command[0]}\n")
        return 126
    except OSError as exc:
        sys.stderr.write(f"cannot execute {command[0]}: {exc.strerror}\n")
        return 126


def main(argv: list[str]) -> int:
    """`<socket> -- <command...>`: relay while the command runs; exit as it did (death by signal N: N)."""
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: egress_relay <socket> -- <command...>\n")
        return 2
    path, command = argv[1], argv[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))  # a free port: a fixed one could be the one a check's server wants
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = dict(os.environ)
    env.update({name: url for name in PROXY_VARIABLES})
    env.update({name: "" for name in NO_PROXY_VARIABLES})  # loopback too goes through the proxy
    threading.stack_size(512 * 1024)  # many relay threads under a tight address-space limit
    child = _start(command, env)
    if isinstance(child, int):
        return child
    for number in FORWARDED:  # docker's init signals only us; bubblewrap's group kill reaches both
        signal.signal(number, lambda received, _frame: child.send_signal(received))
    threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
    code = child.wait()
    if code < 0:  # die the same way, so the sandbox reports the signal and not a plain exit
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
