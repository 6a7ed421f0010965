"""How much work a regular expression does on a text, counted rather than timed.

Python's `re` engine exposes no step count, so `StepCounter` runs the pattern's own
parse tree (re._parser, what re.compile compiles) through a small backtracking matcher
that works as the `re` engine does, ahead-first and greedy, and counts every character
it tests. `scan` does what `Pattern.sub` and `finditer` do: try a match at each
position, and after a match go on from its end.

It knows only the parts of the syntax the patterns it is used on need (literals,
character sets with categories and ranges, greedy repeats, groups, fixed-width
look-arounds), and refuses anything else, so that a pattern changed beyond them fails
loudly instead of being counted wrong. tests/unit/test_emails.py checks that it finds
the same matches as `re` before trusting its counts.
"""

from __future__ import annotations

import re
from re import _constants as c
from re import _parser
from typing import Iterator

_CATEGORIES = {
    c.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
    c.CATEGORY_NOT_WORD: lambda ch: not (ch.isalnum() or ch == "_"),
    c.CATEGORY_DIGIT: str.isdecimal,
    c.CATEGORY_SPACE: str.isspace,
}


class StepCounter:
    def __init__(self, pattern: re.Pattern, items=None):
        self.items = list(items if items is not None else _parser.parse(pattern.pattern,
                                                                        pattern.flags))
        self.steps = 0

    def scan(self, text: str) -> list[tuple[int, int]]:
        """The spans of the matches in `text`, as re.finditer finds them."""
        spans, pos = [], 0
        while pos <= len(text):
            end = next(self._sequence(self.items, text, pos), None)
            if end is None:
                pos += 1
                continue
            spans.append((pos, end))
            pos = end if end > pos else pos + 1
        return spans

    # -- matching: each generator yields the positions where its item can end ---------

    def _sequence(self, items, text: str, pos: int) -> Iterator[int]:
        if not items:
            yield pos
            return
        for end in self._item(items[0], text, pos):
            yield from self._sequence(items[1:], text, end)

    def _item(self, item, text: str, pos: int) -> Iterator[int]:
        op, av = item
        if op in (c.LITERAL, c.IN):
            if pos < len(text) and self._char(item, text[pos]):
                yield pos + 1
        elif op is c.SUBPATTERN:
            yield from self._sequence(list(av[-1]), text, pos)
        elif op is c.MAX_REPEAT:
            low, high, body = av
            body = list(body)
            if len(body) == 1 and body[0][0] in (c.LITERAL, c.IN):
                yield from self._repeat_one(body[0], low, high, text, pos)
            else:
                yield from self._repeat(body, low, high, text, pos, 0)
        elif op in (c.ASSERT, c.ASSERT_NOT):
            direction, body = av
            body = list(body)
            start = pos if direction == 1 else pos - _width(body)
            found = start >= 0 and next(self._sequence(body, text, start), None) is not None
            if found == (op is c.ASSERT):
                yield pos
        else:
            raise NotImplementedError(f"regex_steps does not know {op}")

    def _repeat_one(self, item, low, high, text, pos) -> Iterator[int]:
        """A repeat of one character, as re's REPEAT_ONE: take as many as match, then
        give them back one by one."""
        end = pos
        while end - pos < high and end < len(text) and self._char(item, text[end]):
            end += 1
        for stop in range(end, pos + low - 1, -1):
            yield stop

    def _repeat(self, body, low, high, text, pos, count) -> Iterator[int]:
        if count < high:
            for end in self._sequence(body, text, pos):
                if end != pos:
                    yield from self._repeat(body, low, high, text, end, count + 1)
        if count >= low:
            yield pos

    def _char(self, item, ch: str) -> bool:
        self.steps += 1
        op, av = item
        if op is c.LITERAL:
            return ord(ch) == av
        negate, hit = False, False
        for member_op, member in av:
            if member_op is c.NEGATE:
                negate = True
            elif member_op is c.LITERAL:
                hit = hit or ord(ch) == member
            elif member_op is c.RANGE:
                hit = hit or member[0] <= ord(ch) <= member[1]
            elif member_op is c.CATEGORY:
                hit = hit or _CATEGORIES[member](ch)
            else:
                raise NotImplementedError(f"regex_steps does not know {member_op} in a set")
        return hit != negate


def _width(items) -> int:
    """The fixed width of a look-behind."""
    low, high = _parser.SubPattern(_parser.State(), list(items)).getwidth()
    if low != high:
        raise NotImplementedError("a look-behind of variable width")
    return low
