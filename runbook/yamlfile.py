"""Strict YAML reading for environment files.

PyYAML's safe loader keeps the last of two equal keys without a word, so a phase
written twice would silently lose its first definition. This loader refuses duplicate
keys, refuses anything but plain data (no `!!python/...` tags: the safe loader already
rejects them), bounds alias expansion and nesting, and remembers the line of every key
so that an error can point at it. Keys must be strings, and no string may hold a control
character or a lone surrogate (both reach YAML only through escapes such as "\\0").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

# A "billion laughs" document expands a few lines into millions of nodes through
# aliases. Environment files have a few hundred nodes; refuse anything absurd.
MAX_NODES = 20_000
# PyYAML composes nested collections recursively: a few hundred brackets exhaust
# Python's stack (RecursionError). Environment files nest five levels deep.
MAX_DEPTH = 50
# Python refuses to convert an integer of more than 4300 digits (ValueError: Exceeds the
# limit ... for integer string conversion). No setting needs more than an account id's 12.
MAX_NUMBER_CHARS = 30
# Error messages show at most this much of a key.
MAX_KEY_SHOWN = 40

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
MERGE_TAG = "tag:yaml.org,2002:merge"
# C0 and C1 control characters except tab and line breaks, and lone surrogates: not text.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass
class YamlDocument:
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, path: tuple) -> int | None:
        """Line (1-based) of the deepest known key on `path`."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


class YamlProblem(Exception):
    def __init__(self, field: str, message: str, line: int | None = None):
        self.field, self.message, self.line = field, message, line
        super().__init__(message)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing collections nested deeper than MAX_DEPTH as it composes."""

    def __init__(self, text: str):
        super().__init__(text)
        self._path: list = []

    def compose_node(self, parent, index):
        # `index` is the key node of a mapping value, the position of a list item, or
        # None for a key.
        self._path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if len(self._path) > MAX_DEPTH:
                path = tuple(part for part in self._path if isinstance(part, (str, int)))
                raise YamlProblem(dotted(path[:6]), f"nested more than {MAX_DEPTH} levels deep",
                                  self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def construct_object(self, node, deep=False):
        # The safe constructors read a scalar's text with int(), datetime() and dict
        # look-ups, and let their errors escape: `2020-02-30` raises ValueError, `0x_`
        # ValueError, `!!bool maybe` KeyError, `!!timestamp x` AttributeError.
        try:
            return super().construct_object(node, deep)
        except yaml.constructor.ConstructorError:
            raise
        except (ValueError, LookupError, AttributeError, TypeError, ArithmeticError) as exc:
            text = _cut(repr(node.value)) if isinstance(node, yaml.ScalarNode) else "the value"
            raise yaml.constructor.ConstructorError(
                None, None, f"{text} cannot be read as {_tag(node.tag)} ({_cut(str(exc))})",
                node.start_mark) from None


def parse(text: str) -> YamlDocument:
    try:
        loader = _Loader(text)  # the reader checks every character of a str here
    except yaml.reader.ReaderError as exc:  # e.g. a NUL: not even a YAML syntax error
        line = text.count("\n", 0, exc.position) + 1
        raise YamlProblem("", f"not valid YAML: unacceptable character #x{exc.character:04x}: "
                              f"{exc.reason}", line) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise YamlProblem("", f"not valid YAML: {exc.problem or exc}", line) from None
        except yaml.YAMLError as exc:
            raise YamlProblem("", f"not valid YAML: {exc}") from None
        if node is None:
            return YamlDocument({})
        survey = _Survey()
        survey.walk(node, ())
        try:
            data = loader.construct_document(node)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark else None
            # The value the constructor refused, found by where it starts.
            path = survey.starts.get((mark.line, mark.column), ()) if mark else ()
            raise YamlProblem(dotted(path), f"unsupported YAML: {exc.problem}", line) from None
        return YamlDocument(data, survey.lines)
    finally:
        loader.dispose()


class _Survey:
    """One pass over the composed nodes, before anything is constructed from them.

    Records the line of every key and where every value starts (to name the field of a
    value the constructor refuses), and refuses what the constructor or the models would
    choke on or misreport: duplicate and non-string keys, an alias inside the value it
    names, excessive size and depth, control characters, numbers too long to convert.
    """

    def __init__(self):
        self.lines: dict[tuple, int] = {}
        self.starts: dict[tuple[int, int], tuple] = {}
        self.count = 0
        self.ancestors: set[int] = set()  # the collections that contain the current node

    def walk(self, node: yaml.Node, path: tuple) -> None:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise YamlProblem(dotted(path[:6]), f"document too large (more than {MAX_NODES} "
                              "values after expanding aliases)", line)
        if id(node) in self.ancestors:
            raise YamlProblem(dotted(path[:6]), "an alias refers to a value that contains it",
                              line)
        if len(self.ancestors) >= MAX_DEPTH:
            raise YamlProblem(dotted(path[:6]), f"nested more than {MAX_DEPTH} levels deep "
                                                "after expanding aliases", line)
        self.starts.setdefault((node.start_mark.line, node.start_mark.column), path)
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node, path)
            return
        self.ancestors.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        else:
            for index, item in enumerate(node.value):
                self.lines.setdefault(path + (index,), item.start_mark.line + 1)
                self.walk(item, path + (index,))
        self.ancestors.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> None:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(dotted(path), "keys must be plain strings", line)
            key = key_node.value
            _check_scalar(key_node, path + (key,))
            if key_node.tag not in (STR_TAG, MERGE_TAG):
                raise YamlProblem(dotted(path + (key,)), "a key must be a string, and YAML "
                                  f"reads this one as {_tag(key_node.tag)} (quote it)", line)
            if key in seen:
                raise YamlProblem(dotted(path + (key,)),
                                  f"duplicate key (first defined on line {seen[key]})", line)
            seen[key] = line
            if key_node.tag == MERGE_TAG:  # <<: its contents are walked as part of this map
                self.walk(value_node, path)
            else:
                self.lines[path + (key,)] = line
                self.walk(value_node, path + (key,))


def _check_scalar(node: yaml.ScalarNode, path: tuple) -> None:
    line = node.start_mark.line + 1
    bad = _NOT_TEXT.search(node.value)
    if bad:
        code = ord(bad[0])
        kind = "a lone surrogate, which is not text" if 0xD800 <= code <= 0xDFFF else \
            "a control character"
        raise YamlProblem(dotted(path), f"contains U+{code:04X}, {kind}; remove it", line)
    if node.tag == INT_TAG and len(node.value) > MAX_NUMBER_CHARS:
        raise YamlProblem(dotted(path), f"a number of {len(node.value)} characters is too "
                                        f"long (at most {MAX_NUMBER_CHARS}; quote it if it "
                                        "is text)", line)


def _cut(text: str, length: int = 60) -> str:
    return text if len(text) <= length else text[:length - 3] + "..."


def _tag(tag: str) -> str:
    """'tag:yaml.org,2002:int' -> '!!int', as the tag is written in a file."""
    core = "tag:yaml.org,2002:"
    return "!!" + tag[len(core):] if tag.startswith(core) else tag


def dotted(path: tuple) -> str:
    """('network', 'subnets', 1, 'cidr') -> 'network.subnets[1].cidr'.

    A key that a terminal would not show as it is (a NUL, a right-to-left override) is
    shown as a Python string literal, and a long one is cut short.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.isprintable():
                text = repr(text)
            out += ("." if out else "") + _cut(text, MAX_KEY_SHOWN)
    return out
