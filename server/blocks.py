"""Markdown blocks as a text streams: where the complete ones end, so that they can be shown
formatted while the block still being written shows as plain text."""

from __future__ import annotations

import re

_BLANK = re.compile(r"[ \t]*")
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
_LIST_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_FENCE = re.compile(r" {0,3}(?:```|~~~)")


def complete_end(text: str, start: int = 0) -> int:
    """The offset just past the last complete block of `text`, scanning from `start` (0 or an
    offset this function returned for a prefix of `text`).

    A block is complete after a blank line, after a heading line, and after a line that the next
    line can only follow as a new block (a list item, or a heading). A line still being written
    (no newline yet) never completes anything, and nothing inside an open code fence does."""
    end = start
    fenced = False
    position = start
    while True:
        newline = text.find("\n", position)
        if newline < 0:
            return end
        line = text[position:newline]
        after = newline + 1
        if _FENCE.match(line):
            fenced = not fenced
            if not fenced:
                end = after
        elif fenced:
            pass
        elif _BLANK.fullmatch(line) or _HEADING.match(line):
            end = after
        else:
            following = text.find("\n", after)
            nxt = text[after:] if following < 0 else text[after:following]
            # Only a line that has begun can say what it starts: "" may yet become anything.
            if (
                nxt
                and (_LIST_ITEM.match(nxt) or _HEADING.match(nxt))
                and (following >= 0 or len(nxt) >= 2)
            ):
                end = after
        position = after
