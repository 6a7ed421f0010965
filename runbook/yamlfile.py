"""Strict YAML reading for environment files.

PyYAML's safe loader keeps the last of two equal keys without a word, so a phase
written twice would silently lose its first definition. This loader refuses duplicate
keys, refuses anything but plain data (no `!!python/...` tags: the safe loader already
rejects them), bounds alias expansion, and remembers the line of every key so that an
error can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

# A "billion laughs" document expands a few lines into millions of nodes through
# aliases. Environment files have a few hundred nodes; refuse anything absurd.
MAX_NODES = 20_000


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


def parse(text: str) -> YamlDocument:
    loader = yaml.SafeLoader(text)
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
        lines: dict[tuple, int] = {}
        _walk(node, (), lines, [0])
        try:
            data = loader.construct_document(node)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark else None
            # The key on that line, not the items of the tagged value that follow it.
            on_line = [path for path, at in lines.items()
                       if at == line and path and isinstance(path[-1], str)]
            field = dotted(max(on_line, key=len)) if on_line else ""
            raise YamlProblem(field, f"unsupported YAML: {exc.problem}", line) from None
        return YamlDocument(data, lines)
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: tuple, lines: dict, count: list[int]) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise YamlProblem(dotted(path), f"document too large (more than {MAX_NODES} "
                          "values after expanding aliases)")
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(dotted(path), "keys must be plain strings",
                                  key_node.start_mark.line + 1)
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key == "<<":  # merge key: its contents are walked as part of this map
                _walk(value_node, path, lines, count)
                continue
            if key in seen:
                raise YamlProblem(dotted(path + (key,)),
                                  f"duplicate key (first defined on line {seen[key]})", line)
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault(path + (index,), item.start_mark.line + 1)
            _walk(item, path + (index,), lines, count)


def dotted(path: tuple) -> str:
    """('network', 'subnets', 1, 'cidr') -> 'network.subnets[1].cidr'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
