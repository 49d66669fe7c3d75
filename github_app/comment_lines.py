"""Which lines of a comment are the commenter's own top-level words: the only places a command is read.

Pure, and linear in the comment's length. Ignored, so that nobody's command can hide where readers do
not look: fenced code (``` or ~~~, 3+ long, indented up to 3 spaces, info strings allowed, closed by the
same character at least as long; unclosed runs to the end), indented code (4+ columns, a tab counting to
the next multiple of 4, as CommonMark does; an indented line right after text continues that paragraph
and is not a command either), `>` quotes at any depth, HTML comments (`<!--` anywhere in a line up to the
next `-->`), and the insides of `<details>`, `<pre>`, `<textarea>`, `<script>` and `<style>` (up to the
matching close tag; a tag in a code span is text). A line that starts with such markup is ignored too;
hidden markup after a command is left out of it. An unclosed comment or element runs to the end. A line
right after a quote without `>` counts as the user's own line (no lazy continuation).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_LINE_END = re.compile(r"\r\n|\r|\n")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_QUOTE = re.compile(r" {0,3}>")
# GitHub shows nothing of an HTML comment, and a reader may never open a <details> or notice a line in
# a <pre>; <textarea>, <script> and <style> are raw text. A tag inside a code span is text.
_HIDING = "pre|details|textarea|script|style"
_MARKUP = re.compile(rf"<!--|<(?P<close>/?)(?P<tag>{_HIDING})(?=[\s/>]|$)[^>]*>?", re.IGNORECASE)
_BACKTICKS = re.compile(r"`+")
_MARKUP_START = re.compile(rf"<!--|</?(?:{_HIDING})(?=[\s/>]|$)", re.IGNORECASE)


def visible(body: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, the words shown) of each line a command may be read from, in order."""
    markdown = _Markdown()
    for number, line in enumerate(_LINE_END.split(body), start=1):
        shown = markdown.visible(line)
        if shown is not None:
            yield number, shown


class _Markdown:
    """Tracks the Markdown and HTML whose lines are not the commenter's own top-level words to Clarity."""

    __slots__ = ("fence", "in_comment", "open", "paragraph")

    def __init__(self) -> None:
        self.fence: str | None = None  # the opening run of the open code fence
        self.in_comment = False  # inside `<!-- ... -->`
        self.open: dict[str, int] = {}  # hiding elements (`<details>`, `<pre>`...) open, by name
        self.paragraph = False  # the line before was paragraph text: an indented line continues it

    @property
    def hidden(self) -> bool:
        """Whether text here is inside an HTML comment or a hiding element."""
        return self.in_comment or any(self.open.values())

    def visible(self, line: str) -> str | None:
        """The words of `line` a command may be read from, or None; updates the block state.

        None for lines in code (fenced or indented), quotes, HTML comments and hiding elements, and
        for lines that start with such markup; a hidden part after a command (`/clarity run <!-- x -->`)
        is left out.
        """
        if self.fence is not None:
            close = _FENCE_CLOSE.fullmatch(line)
            if close and close[1][0] == self.fence[0] and len(close[1]) >= len(self.fence):
                self.fence = None
            return None
        indent = _columns(line)
        if _QUOTE.match(line) or (indent >= 4 and not self.paragraph):  # a quote, or indented code
            self.paragraph = False
            return None
        opening = _FENCE_OPEN.fullmatch(line)
        if opening and not (opening[1][0] == "`" and "`" in opening[2]):
            self.fence, self.paragraph = opening[1], False
            return None
        hidden_at_start = self.hidden
        starts_with_markup = bool(_MARKUP_START.match(line, len(line) - len(line.lstrip())))
        shown = self._scan(line)
        self.paragraph = bool(line.strip())
        # An indented line after text continues the paragraph: shown mid-sentence, never a command.
        return None if hidden_at_start or starts_with_markup or indent >= 4 else shown

    def _scan(self, line: str) -> str:
        """Open and close comments and hiding elements along `line`; the parts of it left shown.

        Left to right, whichever construct starts first wins, as in CommonMark: a code span keeps the
        tags in it as text, a comment keeps the backticks in it. Linear in the line's length.
        """
        shown: list[str] = []
        spans = _code_spans(line)
        at, next_span = 0, 0
        markup = _MARKUP.search(line)
        while at < len(line):
            if self.in_comment:
                end = line.find("-->", at)
                if end < 0:
                    break
                self.in_comment, at = False, end + 3
                continue
            if markup is not None and markup.start() < at:
                markup = _MARKUP.search(line, at)
            while next_span < len(spans) and spans[next_span][0] < at:
                next_span += 1
            span = spans[next_span] if next_span < len(spans) else None
            stop = len(line) if markup is None else markup.start()
            if span is not None and span[0] < stop:
                stop = span[1]  # the code span is text, whatever it holds
            if not self.hidden:
                shown.append(line[at:stop])
            if markup is None or stop != markup.start():  # the end of the line, or of a code span
                at = stop
                continue
            at = markup.end()
            if markup[0] == "<!--":
                self.in_comment = True
            else:
                name = markup["tag"].lower()
                self.open[name] = max(self.open.get(name, 0) + (-1 if markup["close"] else 1), 0)
        return "".join(shown)


def _code_spans(line: str) -> list[tuple[int, int]]:
    """Where a backtick run opens a code span (closed by the next run of the same length): (start, end)."""
    runs = [(run.start(), run.end()) for run in _BACKTICKS.finditer(line)]
    closing: dict[int, int] = {}  # run length -> end of the nearest run of that length further on
    spans: list[tuple[int, int]] = []
    for start, end in reversed(runs):
        close = closing.get(end - start)
        spans.append((start, close if close is not None else end))  # an unclosed run is plain backticks
        closing[end - start] = end
    spans.reverse()
    return spans


def _columns(line: str) -> int:
    """How far a line is indented, in columns (a tab moves to the next multiple of 4, as in CommonMark)."""
    column = 0
    for char in line:
        if char == " ":
            column += 1
        elif char == "\t":
            column += 4 - column % 4
        else:
            break
    return column
