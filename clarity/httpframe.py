"""Where an HTTP/1.1 request ends, judged from the bytes received so far: pure, so the web server can
read a whole request before it gives the request a thread (clarity.webserver).

Only the framing is judged: the header section's end, then `Content-Length` bytes or a chunked body
up to its last chunk and trailers. Everything else about the request (its method, headers, target)
is left to gunicorn's parser, which reads it from the buffered bytes afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB; the dashboard and API send far less
MAX_HEAD = 64 * 1024  # request line and headers; gunicorn's own limits are checked after this one
REQUEST_DEADLINE = 10.0  # seconds from a request's first byte to its last: GitHub sends a delivery at once
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,20}")


class Verdict(StrEnum):
    """What the bytes so far amount to."""

    MORE = "more"  # not a whole request yet
    WHOLE = "whole"  # a whole request: the first `size` bytes
    TOO_LARGE = "too_large"  # its body is over MAX_BODY (413)
    HEAD_TOO_LARGE = "head_too_large"  # its header section is over MAX_HEAD (431)
    MALFORMED = "malformed"  # its length cannot be told (400)


@dataclass(frozen=True, slots=True)
class Framing:
    """The verdict, with what a later call needs to go on from here without reading the head again."""

    verdict: Verdict
    size: int = 0  # a whole request's length in bytes
    why: str = ""  # for MALFORMED: what is wrong, for the 400's message
    head_end: int = 0  # where the body starts (0: the header section has not ended yet)
    length: int | None = None  # Content-Length; None for chunked (or no body when not chunked)
    chunked: bool = False
    next_chunk: int = 0  # chunked: where the next chunk-size line starts
    expects_continue: bool = False  # `Expect: 100-continue`: the client waits for a 100 before the body
    searched: int = 0  # before the header section ends: how far it has been looked for


def frame(data: bytes | bytearray, known: Framing | None = None) -> Framing:
    """Judge the bytes received on a connection so far; `known` is the last verdict on a prefix of them."""
    if known is None or not known.head_end:
        searched = known.searched if known is not None else 0
        end = data.find(b"\r\n\r\n", max(searched - 3, 0), MAX_HEAD + 4)
        if end < 0:
            if len(data) > MAX_HEAD:
                return Framing(Verdict.HEAD_TOO_LARGE)
            return Framing(Verdict.MORE, searched=len(data))
        known = _head(bytes(data[:end]), end + 4)
        if known.verdict is not Verdict.MORE:
            return known
    if known.chunked:
        return _chunks(data, known)
    whole = known.head_end + (known.length or 0)
    if len(data) >= whole:
        return Framing(Verdict.WHOLE, size=whole)
    return known


def _head(head: bytes, head_end: int) -> Framing:
    """The body framing a header section declares (the request line is gunicorn's to judge)."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    expects_continue = False
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue  # gunicorn refuses it when it parses the head
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            lengths += [part.strip() for part in value.split(b",")]
        elif name == b"transfer-encoding":
            codings += [part.strip().lower() for part in value.split(b",") if part.strip()]
        elif name == b"expect":
            expects_continue = value.lower() == b"100-continue"
    if codings:
        if lengths:
            return Framing(Verdict.MALFORMED, why="both Content-Length and Transfer-Encoding")
        if codings[-1] != b"chunked":
            return Framing(Verdict.MALFORMED, why="a Transfer-Encoding that does not end in chunked")
        return Framing(Verdict.MORE, head_end=head_end, chunked=True, next_chunk=head_end,
                       expects_continue=expects_continue)
    if not lengths:
        return Framing(Verdict.MORE, head_end=head_end, length=0)
    if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
        return Framing(Verdict.MALFORMED, why="a Content-Length that is not one whole number")
    length = int(lengths[0])
    if length > MAX_BODY:
        return Framing(Verdict.TOO_LARGE)
    return Framing(Verdict.MORE, head_end=head_end, length=length, expects_continue=expects_continue)


def _chunks(data: bytes | bytearray, known: Framing) -> Framing:
    """Walk the chunks from where the last call stopped; whole after the last chunk and its trailers."""
    at = known.next_chunk
    while True:
        if at - known.head_end > MAX_BODY:
            return Framing(Verdict.TOO_LARGE)
        eol = data.find(b"\r\n", at, at + MAX_CHUNK_LINE)
        if eol < 0:
            if len(data) - at >= MAX_CHUNK_LINE:
                return Framing(Verdict.MALFORMED, why="a chunk-size line longer than 1 KB")
            break
        size = bytes(data[at:eol]).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size):
            return Framing(Verdict.MALFORMED, why="a chunk size that is not a hexadecimal number")
        if int(size, 16) == 0:  # the last chunk: then trailer lines, up to an empty line
            end = data.find(b"\r\n\r\n", eol)
            if end >= 0:
                return Framing(Verdict.WHOLE, size=end + 4)
            if len(data) - eol > MAX_HEAD:
                return Framing(Verdict.HEAD_TOO_LARGE)
            break
        following = eol + 2 + int(size, 16)
        if following - known.head_end > MAX_BODY:
            return Framing(Verdict.TOO_LARGE)
        if len(data) < following + 2:
            break
        if data[following : following + 2] != b"\r\n":
            return Framing(Verdict.MALFORMED, why="a chunk longer than its size says")
        at = following + 2
    return Framing(Verdict.MORE, head_end=known.head_end, chunked=True, next_chunk=at,
                   expects_continue=known.expects_continue)
