"""The only way out of a sandbox for networked agents: the model endpoints a run is configured for.

A networked run gets a network namespace of its own (bubblewrap `--unshare-net`, docker `network_mode
none`): its loopback holds nothing of the worker's, and no route leads anywhere. Its one way out is a
unix socket, bound into the sandbox, on which a `Gate` of the worker listens: an HTTP proxy that
accepts `CONNECT host:port` and absolute-form `http://` requests for the run's allowlist only, resolves
the name itself, connects to the address it resolved (a name cannot rebind between check and use),
and refuses everything else with 403 and a log line. Inside, `runner.egress_relay` listens on the
sandbox's own 127.0.0.1, relays each connection to the socket, and starts the agent with
HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (and their lower-case forms) pointing at it, NO_PROXY empty.

Loopback, private, link-local and other non-global addresses are reached only for endpoints the
operator vouched for (`Rules.local`, from CLARITY_EGRESS_ALLOW): a repository can name any `api_base`,
but that alone never opens the worker's Redis, web app or a database. `Rules.never` (the worker's
Redis) is refused whatever anyone says.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runner.egress_relay import pump

log = logging.getLogger(__name__)

RELAY_SOURCE = (Path(__file__).parent / "egress_relay.py").read_text(encoding="utf-8")
SOCKET_NAME = "proxy.sock"
DEFAULT_PORTS = {"http": 80, "https": 443}
HEAD_MAX = 16 * 1024  # bytes of request line and headers
HEAD_TIMEOUT = 30.0  # seconds for a client to send its request head
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 600.0  # seconds a connection may stay silent both ways (a model thinking, streaming)
MAX_CONNECTIONS = 32  # at once, per run
HOST = re.compile(r"[a-z0-9_.:-]{1,253}")  # a DNS name or an IP address, as urlsplit lowers it
HOP_HEADERS = frozenset({b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"})

Address = tuple[str, int]
Resolver = Callable[[str, int], list[Address]]


class EgressError(ValueError):
    """An endpoint cannot be read; the message names it."""


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """A host (name or address, lower case) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Rules:
    """What the operator decides for every networked run of a worker.

    `local`: endpoints that may lead to loopback or private addresses (a local Ollama, a GPU box on
    the LAN); a run still reaches one only when its tool is configured for it. `never`: refused even
    then, whatever they resolve to (the worker's own Redis).
    """

    local: tuple[Endpoint, ...] = ()
    never: tuple[Endpoint, ...] = ()


def parse_endpoint(text: str) -> Endpoint:
    """`host:port`, `[v6]:port`, or a URL (`https://api.example.com/v1` → api.example.com:443)."""
    raw = text.strip()
    parts = urlsplit(raw if "://" in raw else f"//{raw}")
    scheme = parts.scheme.lower()
    if scheme and scheme not in DEFAULT_PORTS:
        raise EgressError(f"{text!r} is not an http(s) URL or host:port")
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        raise EgressError(f"{text!r} has an invalid port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host or port is None:
        raise EgressError(f"{text!r} must name a host and a port (or be an http/https URL)")
    if not HOST.fullmatch(host):
        raise EgressError(f"{text!r} does not name a host")
    return Endpoint(host, port)


def endpoints(texts: Sequence[str]) -> tuple[Endpoint, ...]:
    """The endpoints of those texts that can be read; the others are logged and left out."""
    found: list[Endpoint] = []
    for text in texts:
        try:
            found.append(parse_endpoint(text))
        except EgressError as exc:
            log.warning("egress: model endpoint ignored: %s", exc)
    return tuple(dict.fromkeys(found))


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (an IPv4-mapped IPv6 address counts as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def admit(target: Endpoint, allow: Collection[Endpoint], rules: Rules, addresses: Sequence[Address],
          forbidden: Collection[Address]) -> tuple[list[Address], str]:
    """The addresses the proxy may connect to for `target`, or ([], why not).

    `addresses` is what the target resolved to; `forbidden` what `rules.never` resolved to.
    """
    if target not in allow:
        return [], "not a model endpoint of this run"
    usable = [a for a in addresses if not _is_forbidden(a, forbidden) and (target in rules.local or is_public(a[0]))]
    if usable:
        return usable, ""
    if not addresses:
        return [], "the name does not resolve"
    if any(_is_forbidden(a, forbidden) for a in addresses):
        return [], "it is one of the worker's own services"
    return [], "it resolves to a loopback or private address the operator has not allowed (CLARITY_EGRESS_ALLOW)"


def _is_this_host(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _is_forbidden(address: Address, forbidden: Collection[Address]) -> bool:
    # A service on this host's loopback answers on every loopback address (and 0.0.0.0) of its port.
    return address in forbidden or (_is_this_host(address[0]) and any(
        port == address[1] and _is_this_host(host) for host, port in forbidden))


def resolve(host: str, port: int) -> list[Address]:
    """The (address, port) pairs a name resolves to, IPv4 first; [] when it does not resolve."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    pairs = [(str(info[4][0]), int(info[4][1])) for info in found]
    return sorted(dict.fromkeys(pairs), key=lambda pair: ":" in pair[0])


# -- the worker's side of one run ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    """What a client asked the proxy for: where, and the bytes to send there first (plain HTTP)."""

    target: Endpoint
    tunnel: bool
    first: bytes = b""


def parse_request(head: bytes) -> Request:
    """A CONNECT or an absolute-form `http://` request head; EgressError (→ 400) for anything else."""
    line, _, rest = head.partition(b"\r\n")
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise EgressError("malformed request line") from None
    if method == "CONNECT":
        return Request(parse_endpoint(target), tunnel=True)
    if not target.lower().startswith("http://"):
        raise EgressError("only CONNECT and absolute http:// requests go through this proxy")
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [h for h in rest.split(b"\r\n") if h and h.split(b":", 1)[0].strip().lower() not in HOP_HEADERS]
    # The origin gets an origin-form request and closes after answering: one request per connection.
    first = b"\r\n".join([f"{method} {path} {version}".encode("ascii"), *headers, b"Connection: close", b"", b""])
    return Request(parse_endpoint(target), tunnel=False, first=first)


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """(request head, whatever came after it); EgressError when it is too long or never ends."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_MAX:
            raise EgressError("request head too long")
        chunk = conn.recv(4096)
        if not chunk:
            raise EgressError("connection closed before the request head ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _reply(conn: socket.socket, status: str, text: str = "") -> None:
    body = f"clarity egress: {text}\n".encode() if text else b""
    with contextlib.suppress(OSError):
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)


class Gate:
    """One run's egress proxy: a unix socket in a folder of its own, served by a thread until `close`."""

    def __init__(self, allow: Collection[Endpoint], rules: Rules, resolver: Resolver = resolve) -> None:
        self.allow = frozenset(allow)
        self.rules = rules
        self.resolver = resolver
        self.folder = Path(tempfile.mkdtemp(prefix="clarity-egress-"))
        self.folder.chmod(0o755)  # a sandbox that runs as another user must reach the socket
        self.path = self.folder / SOCKET_NAME
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self.path.chmod(0o666)
        self._listener.listen(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._forbidden: frozenset[Address] | None = None
        # The run's log context (execution, task) goes with every line the proxy logs.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._serve,),
                                        name="clarity-egress", daemon=True)
        self._thread.start()

    def relay_argv(self, python: str, argv: Sequence[str]) -> list[str]:
        """argv run behind the relay, which `python` (3.8+, inside the sandbox) runs from source."""
        return [python, "-I", "-S", "-c", RELAY_SOURCE, str(self.path), "--", *argv]

    def close(self) -> None:
        """Stop listening, end every open connection and remove the socket's folder."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                crowded = len(self._open) >= MAX_CONNECTIONS
                if not crowded:
                    self._open.add(conn)
            if crowded:
                _reply(conn, "503 Service Unavailable", f"more than {MAX_CONNECTIONS} connections at once")
                conn.close()
                continue
            threading.Thread(target=contextvars.copy_context().run, args=(self._handle, conn),
                             name="clarity-egress-conn", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(HEAD_TIMEOUT)
            try:
                head, body = _read_head(conn)
                request = parse_request(head)
            except EgressError as exc:
                _reply(conn, "400 Bad Request", str(exc))
                return
            upstream = self._connect(conn, request.target)
            if upstream is None:
                return
            with upstream:
                conn.settimeout(IDLE_TIMEOUT)
                upstream.settimeout(IDLE_TIMEOUT)
                if request.tunnel:
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    upstream.sendall(request.first)
                if body:
                    upstream.sendall(body)
                pump(conn, upstream, IDLE_TIMEOUT)
        except OSError:
            pass  # either side went away: nothing to tell anyone
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _connect(self, conn: socket.socket, target: Endpoint) -> socket.socket | None:
        """A connection to the target's first admitted address, or None once the client was told why not."""
        addresses = self.resolver(target.host, target.port) if target in self.allow else []
        usable, why = admit(target, self.allow, self.rules, addresses, self.forbidden())
        if not usable:
            log.warning("egress refused: %s (%s)", target, why)
            _reply(conn, "403 Forbidden", f"{target} is refused: {why}")
            return None
        failure: OSError | None = None
        for address in usable:
            try:
                return socket.create_connection(address, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                failure = exc
        log.warning("egress: %s could not be reached: %s", target, failure)
        _reply(conn, "502 Bad Gateway", f"{target} could not be reached: {failure}")
        return None

    def forbidden(self) -> frozenset[Address]:
        """Where `rules.never` leads, resolved once per run (only when a connection is asked for)."""
        if self._forbidden is None:
            self._forbidden = frozenset(a for e in self.rules.never for a in self.resolver(e.host, e.port))
        return self._forbidden


@contextlib.contextmanager
def gate(allow: Collection[Endpoint], rules: Rules) -> Iterator[Gate]:
    """A Gate for the length of one run."""
    opened = Gate(allow, rules)
    try:
        yield opened
    finally:
        opened.close()
