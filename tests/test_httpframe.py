"""Where a request ends (clarity.httpframe): table tests, and a property that feeding bytes in pieces
gives the same verdict as feeding them at once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clarity.httpframe import MAX_BODY, MAX_HEAD, Framing, Verdict, frame

GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
CHUNKED = b"POST /webhooks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

# (bytes so far, verdict, size of the whole request or None)
TABLE: list[tuple[bytes, Verdict, int | None]] = [
    (b"", Verdict.MORE, None),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", Verdict.MORE, None),
    (GET, Verdict.WHOLE, len(GET)),
    (GET + b"GET /next", Verdict.WHOLE, len(GET)),  # pipelined: the first request only
    (POST, Verdict.MORE, None),
    (POST + b"{}", Verdict.MORE, None),
    (POST + b"{\"a\"}", Verdict.WHOLE, len(POST) + 5),
    (POST + b"{\"a\"}GET / HTTP/1.1\r\n", Verdict.WHOLE, len(POST) + 5),
    (POST.replace(b"Content-Length", b"content-LENGTH") + b"12345", Verdict.WHOLE, len(POST) + 5),
    (POST.replace(b": 5", b": 5, 5") + b"12345", Verdict.WHOLE, len(POST) + 8),  # the same length twice
    (POST.replace(b": 5", b": 5, 6"), Verdict.MALFORMED, None),
    (POST.replace(b": 5", b": -5"), Verdict.MALFORMED, None),
    (POST.replace(b": 5", b": 0x5"), Verdict.MALFORMED, None),
    (POST.replace(b": 5", f": {MAX_BODY + 1}".encode()), Verdict.TOO_LARGE, None),
    (POST.replace(b": 5", f": {MAX_BODY}".encode()), Verdict.MORE, None),
    (POST.replace(b": 5", b": 99999999999999999999"), Verdict.TOO_LARGE, None),
    (CHUNKED, Verdict.MORE, None),
    (CHUNKED + b"5\r\nhello\r\n", Verdict.MORE, None),
    (CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", Verdict.WHOLE, len(CHUNKED) + 15),
    (CHUNKED + b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", Verdict.WHOLE, len(CHUNKED) + 35),
    (CHUNKED + b"0\r\n", Verdict.MORE, None),
    (CHUNKED + b"zz\r\n", Verdict.MALFORMED, None),
    (CHUNKED + b"5\r\nhello!\r\n", Verdict.MALFORMED, None),
    (CHUNKED + b"1" * 2000, Verdict.MALFORMED, None),
    (CHUNKED + f"{MAX_BODY + 1:x}\r\n".encode(), Verdict.TOO_LARGE, None),
    (CHUNKED.replace(b"chunked", b"gzip, chunked") + b"0\r\n\r\n", Verdict.WHOLE, len(CHUNKED) + 11),
    (CHUNKED.replace(b"chunked", b"chunked, gzip"), Verdict.MALFORMED, None),
    (CHUNKED.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n"), Verdict.MALFORMED, None),  # smuggling
    (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, Verdict.HEAD_TOO_LARGE, None),
]


@pytest.mark.parametrize(("data", "verdict", "size"), TABLE, ids=lambda v: repr(v)[:60])
def test_each_framing_is_judged(data: bytes, verdict: Verdict, size: int | None) -> None:
    framing = frame(data)
    assert framing.verdict is verdict, framing
    if size is not None:
        assert framing.size == size


def test_a_client_waiting_for_100_continue_is_told_so() -> None:
    head = POST.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    assert frame(head).expects_continue
    assert not frame(POST).expects_continue


def feed(data: bytes, cuts: list[int]) -> Framing:
    """The verdict after receiving `data` in pieces cut at `cuts`, passing each verdict on as the next call's."""
    known = None
    for end in [*sorted(set(cuts)), len(data)]:
        known = frame(data[:end], known)
        if known.verdict is not Verdict.MORE:
            return known
    assert known is not None
    return known


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([row[0] for row in TABLE if row[1] is not Verdict.HEAD_TOO_LARGE]), st.data())
def test_pieces_are_judged_as_the_whole(data: bytes, draw: st.DataObject) -> None:
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=8))
    assert feed(data, cuts).verdict is frame(data).verdict
    assert feed(data, cuts).size == frame(data).size
