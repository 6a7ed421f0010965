"""Fuzzed environment files: hypothesis turns config/prod.yaml into malformed and hostile
variants, and runbook's loader refuses every one with ConfigError (exit code 2 at the
CLI), naming the field it broke, or the line for a problem in the YAML itself. Nothing
in a file is executed and no Python object is constructed from it.

The variants are made on the YAML node graph of config/prod.yaml (so that duplicate keys,
tags and aliases can be placed exactly), or on its text for damage below YAML. Each test
counts the distinct malformed files it refused and asserts the count it states:

    wrong types                                   100
    huge values (strings, numbers, lists, depth)   60
    unicode in keys and values                     60
    YAML tags, !!python/... among them              60
    anchors, aliases and alias bombs                40
    duplicate keys                                  30
    damage below YAML (bytes, characters, syntax)   40
                                                  ---
                                                  390 malformed files, all refused

plus 30 variants that are valid (unicode free text, shared anchors, merge keys) and must
load with their values, and 30 malformed files run through `runbook run --dry-run`
in-process, which must exit 2 before any sandbox starts. Settings are derandomized, so CI
tests the same files on every run.
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook import config, yamlfile
from runbook.errors import ConfigError
from tests.conftest import PROD_CONFIG, prod_data, run_cli

PROD_TEXT = PROD_CONFIG.read_text(encoding="utf-8")
STR, INT, FLOAT, BOOL, LIST, MAP, SCALAR = "str", "int", "float", "bool", "list", "map", "scalar"
NULLABLE = "nullable"
MARKER = "@MARKER@"  # replaced by a path under the test's tmp_path when a file is written

# Every field of the environment file, with the YAML type it takes; the optional ones
# config/prod.yaml leaves out are added where a case sets them.
FIELDS: dict[tuple, tuple[str, ...]] = {
    ("region",): (STR,), ("account_id",): (STR, NULLABLE), ("tags",): (MAP,),
    ("network",): (MAP,), ("network", "name"): (STR,), ("network", "cidr"): (STR,),
    ("network", "vpc_id"): (STR, NULLABLE), ("network", "subnets"): (LIST,),
    ("network", "subnets", 0): (MAP,), ("network", "subnets", 1, "cidr"): (STR,),
    ("network", "subnets", 2, "az"): (STR,), ("network", "subnets", 0, "id"): (STR, NULLABLE),
    ("database",): (MAP,), ("database", "cluster_id"): (STR,), ("database", "name"): (STR,),
    ("database", "engine_version"): (STR,), ("database", "master_username"): (STR,),
    ("database", "port"): (INT,), ("database", "instance_class"): (STR,),
    ("database", "instances"): (INT,), ("database", "min_capacity"): (FLOAT,),
    ("database", "max_capacity"): (FLOAT,), ("database", "deletion_protection"): (BOOL,),
    ("database", "subnet_group"): (STR, NULLABLE), ("database", "security_group"): (STR, NULLABLE),
    ("database", "parameter_group"): (STR, NULLABLE),
    ("database", "schema"): (STR,), ("database", "auth"): (STR,), ("database", "connect"): (STR,),
    ("database", "connect_timeout_s"): (INT,), ("database", "sslmode"): (STR,),
    ("database", "roles"): (MAP,),
    ("secrets",): (MAP,), ("secrets", "db"): (STR,), ("secrets", "app_config"): (STR,),
    ("secrets", "app_settings"): (MAP,), ("secrets", "app_settings", "app_name"): (SCALAR,),
    ("lambdas",): (MAP,), ("lambdas", "runtime"): (STR,), ("lambdas", "prefix"): (STR, NULLABLE),
    ("lambdas", "log_retention_days"): (INT,), ("lambdas", "pre_signup"): (MAP,),
    ("lambdas", "pre_signup", "memory_mb"): (INT,),
    ("lambdas", "post_confirmation", "timeout_s"): (INT,),
    ("cognito",): (MAP,), ("cognito", "user_pool"): (STR,), ("cognito", "client"): (STR,),
    ("cognito", "pool_id"): (STR, NULLABLE), ("cognito", "deletion_protection"): (BOOL,),
    ("cognito", "password_policy"): (MAP,), ("cognito", "password_policy", "min_length"): (INT,),
    ("cognito", "password_policy", "require_symbols"): (BOOL,),
    ("cognito", "password_policy", "temporary_password_validity_days"): (INT,),
    ("cognito", "custom_attributes"): (MAP,), ("cognito", "custom_attributes", "role"): (MAP,),
    ("cognito", "custom_attributes", "role", "type"): (STR,),
    ("cognito", "custom_attributes", "role", "mutable"): (BOOL,),
    ("cognito", "custom_attributes", "role", "max_length"): (INT,),
    ("cognito", "allowed_domains"): (LIST,), ("cognito", "auto_confirm_domains"): (LIST,),
    ("integration_test",): (MAP,), ("integration_test", "email_domain"): (STR,),
    ("integration_test", "row_timeout_s"): (INT,), ("integration_test", "log_timeout_s"): (INT,),
    ("phases",): (MAP,), ("phases", "a1"): (LIST,), ("phases", "a3", 1): (STR,),
}
# String fields whose pattern or list of values allows ASCII only, and the longest value
# each takes. (region, engine_version, runtime, pool_id and email_domain have no upper
# bound; instance_class, the group names, user_pool and client take free text.)
ASCII_FIELDS: dict[tuple, int] = {
    ("account_id",): 12, ("network", "name"): 41, ("network", "cidr"): 18,
    ("network", "vpc_id"): 21, ("network", "subnets", 1, "cidr"): 18,
    ("network", "subnets", 2, "az"): 13, ("network", "subnets", 0, "id"): 24,
    ("database", "cluster_id"): 63, ("database", "name"): 63, ("database", "master_username"): 63,
    ("database", "schema"): 63, ("database", "auth"): 8, ("database", "connect"): 6,
    ("database", "sslmode"): 11, ("database", "parameter_group"): 255, ("secrets", "db"): 512, ("secrets", "app_config"): 512,
    ("lambdas", "prefix"): 40, ("cognito", "custom_attributes", "role", "type"): 6,
    ("phases", "a3", 1): 24,
}
UNBOUNDED_ASCII = [("region",), ("database", "engine_version"), ("lambdas", "runtime"),
                   ("cognito", "pool_id"), ("integration_test", "email_domain")]
# Mappings that take only the keys their model names, or names of a strict pattern.
STRICT_MAPPINGS = [(), ("network",), ("network", "subnets", 0), ("database",),
                   ("database", "roles"), ("secrets",), ("lambdas",), ("lambdas", "pre_signup"),
                   ("cognito",), ("cognito", "password_policy"), ("cognito", "custom_attributes"),
                   ("cognito", "custom_attributes", "role"), ("integration_test",), ("phases",)]

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


# -- building files ---------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One generated file: its text (bytes for damage below text), the field the error
    must name (None: a problem in the YAML itself), and the line it must name (None: any)."""

    text: str | bytes
    field: str | None
    line: int | None = None


def prod_tree() -> yaml.MappingNode:
    """config/prod.yaml's node graph, fresh for each case (libyaml composes it fastest)."""
    return yaml.compose(PROD_TEXT, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def node_of(value) -> yaml.Node:
    """The YAML node PyYAML writes for a Python value."""
    return yaml.representer.SafeRepresenter().represent_data(value)


def text_of(root: yaml.Node) -> str:
    return yaml.serialize(root, allow_unicode=True)


def place(root: yaml.Node, path: tuple, node: yaml.Node) -> None:
    """Put `node` at `path`: replace the value there, or add the key to its mapping."""
    parent = root
    for part in path[:-1]:
        parent = child(parent, part)
    last = path[-1]
    if isinstance(parent, yaml.SequenceNode):
        parent.value[last] = node
        return
    for index, (key, _) in enumerate(parent.value):
        if key.value == last:
            parent.value[index] = (key, node)
            return
    parent.value.append((node_of(last), node))


def child(node: yaml.Node, part) -> yaml.Node:
    if isinstance(node, yaml.SequenceNode):
        return node.value[part]
    return next(value for key, value in node.value if key.value == part)


def key_node(root: yaml.Node, path: tuple) -> yaml.ScalarNode:
    parent = root
    for part in path[:-1]:
        parent = child(parent, part)
    return next(key for key, _ in parent.value if key.value == path[-1])


def with_value(path: tuple, value) -> Case:
    root = prod_tree()
    place(root, path, node_of(value))
    return Case(text_of(root), yamlfile.dotted(path))


def with_raw_value(path: tuple, raw: str) -> Case:
    """The file with `raw` YAML text as the value at `path`, for what PyYAML's serializer
    cannot write: nesting deeper than its recursion allows, a number longer than Python
    prints."""
    token = "RAWVALUEPLACEHOLDER"
    root = prod_tree()
    place(root, path, node_of(token))
    return Case(text_of(root).replace(token, raw, 1), yamlfile.dotted(path))


# -- what a refused file must look like ------------------------------------------------------

def names(reported: str, expected: str) -> bool:
    """Whether the reported field is the expected one or lies inside it."""
    return reported == expected or reported.startswith((expected + ".", expected + "["))


def refuse(case: Case, tmp_path: Path) -> ConfigError:
    """Load the case's file and check how it is refused; return the error."""
    path = write(case, tmp_path)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    error = caught.value
    assert error.problems, str(error)
    for field, message, line in error.problems:
        assert message and len(message) <= 300, message
        assert len(field) <= 300, field
    if case.field is not None:
        hits = [(f, m, n) for f, m, n in error.problems if names(f, case.field)]
        assert hits, f"no problem names {case.field!r}: {error.problems}"
        assert all(n is not None for _, _, n in hits), hits
    else:
        assert all(line is not None or "position" in message
                   for _, message, line in error.problems), error.problems
    if case.line is not None:
        assert [line for _, _, line in error.problems] == [case.line], error.problems
    return error


def write(case: Case, tmp_path: Path) -> Path:
    path = tmp_path / "config" / "prod.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = str(tmp_path / "pwned")
    if isinstance(case.text, bytes):
        path.write_bytes(case.text.replace(MARKER.encode(), marker.encode()))
    else:
        path.write_text(case.text.replace(MARKER, marker), encoding="utf-8")
    return path


def run_refusing(strategy, examples: int, tmp_path: Path, check=refuse) -> set:
    """Run `check` on `examples` cases drawn from `strategy`; the distinct texts refused."""
    refused: set = set()

    @settings(max_examples=examples, **SETTINGS)
    @given(strategy)
    def each(case):
        check(case, tmp_path)
        refused.add(case.text)
        assert not (tmp_path / "pwned").exists(), "a YAML tag ran a shell command"
        assert TRIPPED == [], "a YAML tag constructed a Python object"

    each()
    return refused


# -- strategies ---------------------------------------------------------------------------

HOSTILE_CHARACTERS = ["\u202e", "\u202d", "\u200f", "\u2066", "\u200b", "\ufeff", "\u0301",
                      "\U0001f4a3", "ي", "ש", "ß", "İ", "\u2028", "\u00a0", "١"]
# Characters no field may hold: C0 and C1 controls (tab and line breaks aside) and
# lone surrogates, which YAML admits only as escapes ("\0", "\ud800").
NOT_TEXT = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udbff",
            "\udc00", "\udfff"]
# Any character that is text, with the troublesome ones more often than chance gives.
TEXT = st.characters(exclude_categories=["Cc", "Cs"]) | st.sampled_from(HOSTILE_CHARACTERS)
NON_ASCII = st.characters(min_codepoint=0x80, exclude_categories=["Cc", "Cs"]) | \
    st.sampled_from(HOSTILE_CHARACTERS)

SCALAR_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(),
                          st.text(TEXT, max_size=12))
SHORT_KEYS = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
WRONG_BY_TYPE = {
    "none": st.none(), "bool": st.booleans(), "int": st.integers(-10**40, 10**40),
    "float": st.floats(), "str": st.text(TEXT, max_size=30), "date": st.dates(),
    "bytes": st.binary(min_size=1, max_size=16),
    "list": st.lists(SCALAR_VALUES, max_size=3),
    "map": st.dictionaries(SHORT_KEYS, SCALAR_VALUES, max_size=3),
}
# The types each kind of field takes (YAML gives an int where a number is asked for),
# and the type of the value config/prod.yaml gives a field of that kind.
ACCEPTS = {STR: {"str"}, INT: {"int"}, FLOAT: {"int", "float"}, BOOL: {"bool"},
           LIST: {"list"}, MAP: {"map"}, SCALAR: {"str", "int", "bool"}}
TYPE_IN_PROD = {STR: "str", INT: "int", FLOAT: "float", BOOL: "bool", LIST: "list", MAP: "map",
                SCALAR: "str"}


@st.composite
def wrong_types(draw) -> Case:
    path, kind = draw(st.sampled_from(sorted(FIELDS.items(), key=str)))
    accepted = ACCEPTS[kind[0]] | ({"none"} if NULLABLE in kind else set())
    wrong = sorted(set(WRONG_BY_TYPE) - accepted)
    return with_value(path, draw(WRONG_BY_TYPE[draw(st.sampled_from(wrong))]))


def long_text(minimum: int):
    return st.builds(lambda unit, size: (unit * size)[:size],
                     st.text(TEXT, min_size=1, max_size=3), st.integers(minimum, 60_000))


@st.composite
def huge_values(draw) -> Case:
    kind = draw(st.sampled_from(["string", "int", "float", "list", "depth"]))
    if kind == "string":
        path, longest = draw(st.sampled_from(sorted(ASCII_FIELDS.items(), key=str)))
        return with_value(path, draw(long_text(longest + 1)))
    if kind == "int":
        path = draw(st.sampled_from(sorted((p for p, k in FIELDS.items() if k == (INT,)), key=str)))
        if draw(st.booleans()):
            return with_value(path, draw(st.integers(10**6, 10**29) | st.integers(-10**29, 0)))
        # Longer than Python converts (4300 digits), written out: hypothesis itself
        # cannot print such an int.
        digits = draw(st.integers(31, 6000))
        return with_raw_value(path, draw(st.sampled_from(["", "-", "0x"])) + "9" * digits)
    if kind == "float":
        path = draw(st.sampled_from([("database", "min_capacity"), ("database", "max_capacity")]))
        value = draw(st.one_of(st.floats(min_value=256.5), st.floats(max_value=-0.5),
                               st.sampled_from([float("inf"), float("-inf"), float("nan")])))
        return with_value(path, value)
    if kind == "list":
        if draw(st.booleans()):
            subnet = prod_data()["network"]["subnets"][0]
            items = [copy.deepcopy(subnet)] * draw(st.integers(7, 300))
            return with_value(("network", "subnets"), items)
        return with_value(("phases", "a1"), ["network"] * draw(st.integers(2, 2000)))
    path = draw(st.sampled_from(sorted(FIELDS, key=str)))
    depth = draw(st.integers(3, 3000))
    raw = "[" * depth + "]" * depth if draw(st.booleans()) else \
        "{k: " * depth + "0" + "}" * depth
    return with_raw_value(path, raw)


def containing(characters):
    """Text with at least one of `characters` (a list, or a strategy) somewhere in it."""
    one = st.sampled_from(characters) if isinstance(characters, list) else characters
    return st.builds(lambda before, char, after: before + char + after,
                     st.text(TEXT, max_size=20), one, st.text(TEXT, max_size=20))


@st.composite
def hostile_unicode(draw) -> Case:
    kind = draw(st.sampled_from(["key", "ascii-field", "not-text-value", "not-text-key"]))
    if kind in ("key", "not-text-key"):
        where = draw(st.sampled_from(STRICT_MAPPINGS if kind == "key" else
                                     STRICT_MAPPINGS + [("tags",), ("secrets", "app_settings")]))
        key = draw(containing(NON_ASCII if kind == "key" else NOT_TEXT))
        root = prod_tree()
        if not child_exists(root, where):  # database.roles: not in prod.yaml
            place(root, where, node_of({}))
        parent = root
        for part in where:
            parent = child(parent, part)
        parent.value.append((node_of(key), node_of("x")))
        return Case(text_of(root), yamlfile.dotted(where + (key,)))
    if kind == "ascii-field":
        path = draw(st.sampled_from(sorted(ASCII_FIELDS, key=str) + UNBOUNDED_ASCII))
        return with_value(path, draw(containing(NON_ASCII)))
    path = draw(st.sampled_from(sorted((p for p, k in FIELDS.items() if k[0] in (STR, SCALAR)),
                                       key=str) + [("tags", "project")]))
    return with_value(path, draw(containing(NOT_TEXT)))


class Tripwire:
    """Records every construction. The tags below name it, so that a loader that builds
    Python objects from YAML would leave a trace here."""

    def __new__(cls, *args, **kwargs):
        TRIPPED.append(("Tripwire", args, kwargs))
        return super().__new__(cls)


def trip(*args, **kwargs):
    TRIPPED.append(("trip", args, kwargs))


TRIPPED: list = []
HERE = __name__
PYTHON_TAGS = ["python/object/apply:os.system", "python/object/new:os.system",
               "python/object/apply:subprocess.check_call", f"python/object:{HERE}.Tripwire",
               f"python/object/new:{HERE}.Tripwire", f"python/object/apply:{HERE}.trip",
               f"python/object/apply:{HERE}.Tripwire", "python/name:os.system",
               "python/module:os", "python/tuple", "python/str", "python/unicode", "python/bytes",
               "python/list", "python/dict", "python/none", "python/int", "python/complex"]
OTHER_TAGS = ["!custom", "!Ref", "!GetAtt", "!Sub", "!env", "tag:example.com,2024:thing",
              "tag:yaml.org,2002:binary", "tag:yaml.org,2002:set", "tag:yaml.org,2002:omap",
              "tag:yaml.org,2002:pairs", "tag:yaml.org,2002:timestamp"]
TAGS = ["tag:yaml.org,2002:" + tag for tag in PYTHON_TAGS] + OTHER_TAGS
COMMAND = f"touch {MARKER}"


def tagged(tag: str, form: str) -> yaml.Node:
    """The os.system payload (`touch <marker>`) as a scalar, list or mapping tagged `tag`."""
    command = yaml.ScalarNode("tag:yaml.org,2002:str", COMMAND)
    if form == "scalar":
        return yaml.ScalarNode(tag, COMMAND, style='"')
    if form == "list":
        return yaml.SequenceNode(tag, [command], flow_style=True)
    return yaml.MappingNode(tag, [(node_of("args"), command)], flow_style=True)


@st.composite
def yaml_tags(draw) -> Case:
    tag = draw(st.sampled_from(TAGS))
    path = draw(st.sampled_from(sorted(FIELDS, key=str)))
    root = prod_tree()
    if draw(st.integers(0, 4)) == 0 and not isinstance(path[-1], int):  # a tagged key
        try:
            key_node(root, path).tag = tag
        except StopIteration:  # an optional field prod.yaml leaves out
            place(root, path, node_of("x"))
            key_node(root, path).tag = tag
    else:
        place(root, path, tagged(tag, draw(st.sampled_from(["scalar", "list", "mapping"]))))
    return Case(text_of(root), yamlfile.dotted(path))


def bomb(width: int, levels: int) -> yaml.Node:
    """A 'billion laughs' value: `levels` lists of `width` aliases of the level below."""
    node = yaml.SequenceNode("tag:yaml.org,2002:seq", [node_of("lol")] * width, flow_style=True)
    for _ in range(levels - 1):
        node = yaml.SequenceNode("tag:yaml.org,2002:seq", [node] * width, flow_style=True)
    return node


@st.composite
def aliases(draw) -> Case:
    kind = draw(st.sampled_from(["bomb", "cycle", "wrong-type", "merge-non-mapping"]))
    path = draw(st.sampled_from(sorted(FIELDS, key=str)))
    root = prod_tree()
    if kind == "bomb":
        width, levels = draw(st.integers(2, 12)), draw(st.integers(2, 9))
        place(root, path, bomb(width, levels))  # small ones are still lists, and wrong
    elif kind == "cycle":
        form = draw(st.sampled_from(["list", "mapping", "merge"]))
        if form == "list":
            loop = yaml.SequenceNode("tag:yaml.org,2002:seq", [], flow_style=True)
            loop.value.append(loop)
        else:
            loop = yaml.MappingNode("tag:yaml.org,2002:map", [], flow_style=True)
            key = yaml.ScalarNode("tag:yaml.org,2002:merge", "<<") if form == "merge" \
                else node_of("self")
            loop.value.append((key, loop))
        place(root, path, loop)
    elif kind == "wrong-type":  # an alias of another field's value, of another kind
        wrong = [p for p in FIELDS if p[0] != path[0] and child_exists(root, p)
                 and TYPE_IN_PROD[FIELDS[p][0]] not in ACCEPTS[FIELDS[path][0]]]
        value = root
        for part in draw(st.sampled_from(sorted(wrong, key=str))):
            value = child(value, part)
        place(root, path, value)
    else:
        mapping = yaml.MappingNode("tag:yaml.org,2002:map", [], flow_style=True)
        target = draw(st.sampled_from([node_of("x"), node_of(["x"]), node_of(5)]))
        mapping.value.append((yaml.ScalarNode("tag:yaml.org,2002:merge", "<<"), target))
        place(root, path, mapping)
    return Case(text_of(root), yamlfile.dotted(path))


def child_exists(root, path) -> bool:
    try:
        node = root
        for part in path:
            node = child(node, part)
    except (StopIteration, IndexError):
        return False
    return True


def mappings(node: yaml.Node, path: tuple = ()):
    """(path, mapping node) of every mapping in the tree."""
    if isinstance(node, yaml.MappingNode):
        yield path, node
        for key, value in node.value:
            yield from mappings(value, path + (key.value,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from mappings(item, path + (index,))


@st.composite
def duplicate_keys(draw) -> Case:
    root = prod_tree()
    path, mapping = draw(st.sampled_from(list(mappings(root))))
    key, value = draw(st.sampled_from(mapping.value))
    again = yaml.ScalarNode(key.tag, key.value, style=draw(st.sampled_from([None, '"', "'"])))
    second = draw(st.sampled_from(["same", "other"]))
    new_value = value if second == "same" else node_of(draw(SCALAR_VALUES))
    at = draw(st.integers(mapping.value.index((key, value)) + 1, len(mapping.value)))
    mapping.value.insert(at, (again, new_value))
    return Case(text_of(root), yamlfile.dotted(path + (key.value,)))


LINE_STARTS = [0] + [n + 1 for n, char in enumerate(PROD_TEXT) if char == "\n"][:-1]
VALUE_STARTS = [PROD_TEXT.index(": ", start) + 2 for start in LINE_STARTS
                if ": " in PROD_TEXT[start:PROD_TEXT.find("\n", start)]
                and not PROD_TEXT[start:].lstrip(" ").startswith("#")]
# Characters the YAML reader refuses anywhere in a file.
UNREADABLE = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x80", "\x9f",
              "\ufffe", "\uffff"]


def line_at(position: int) -> int:
    return PROD_TEXT.count("\n", 0, position) + 1


@st.composite
def damage(draw) -> Case:
    kind = draw(st.sampled_from(["character", "indicator", "quote", "bracket", "bytes",
                                 "documents", "not-a-mapping"]))
    if kind == "character":
        at, char = draw(st.integers(0, len(PROD_TEXT))), draw(st.sampled_from(UNREADABLE))
        return Case(PROD_TEXT[:at] + char + PROD_TEXT[at:], None, line_at(at))
    if kind == "indicator":  # a reserved indicator may not start a plain value
        at, char = draw(st.sampled_from(VALUE_STARTS)), draw(st.sampled_from(["@", "`"]))
        return Case(PROD_TEXT[:at] + char + PROD_TEXT[at:], None, line_at(at))
    if kind == "quote":
        at, quote = draw(st.sampled_from(VALUE_STARTS)), draw(st.sampled_from(['"', "'"]))
        return Case(PROD_TEXT[:at] + quote + PROD_TEXT[at:], None)
    if kind == "bracket":
        closing = [n for n, char in enumerate(PROD_TEXT) if char in "]}"
                   and "#" not in PROD_TEXT[PROD_TEXT.rfind("\n", 0, n):n]]
        at = draw(st.sampled_from(closing))
        return Case(PROD_TEXT[:at] + PROD_TEXT[at + 1:], None)
    if kind == "bytes":  # not UTF-8: refused with the byte's position
        data = PROD_TEXT.encode()
        at = draw(st.integers(0, len(data)))
        bad = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80",
                                    b"\x80"]))
        while at < len(data) and 0x80 <= data[at] < 0xC0:  # not inside a character
            at += 1
        return Case(data[:at] + bad + data[at:], None)
    if kind == "documents":
        extra = draw(st.sampled_from(["---\nregion: us-east-1\n", "--- {}\n", "---\n- 1\n"]))
        return Case(PROD_TEXT + extra, None)
    value = draw(st.one_of(st.lists(SCALAR_VALUES, max_size=3), SCALAR_VALUES))
    return Case(yaml.safe_dump(value, allow_unicode=True), None, 1)


# -- malformed files: every one refused --------------------------------------------------------

def test_100_wrongly_typed_values_are_each_refused_naming_their_field(tmp_path):
    assert len(run_refusing(wrong_types(), 110, tmp_path)) >= 100


def test_60_huge_strings_numbers_lists_and_nestings_are_each_refused_naming_their_field(
        tmp_path):
    assert len(run_refusing(huge_values(), 65, tmp_path)) >= 60


def test_60_files_with_hostile_unicode_in_keys_or_values_are_each_refused_naming_the_field(
        tmp_path):
    assert len(run_refusing(hostile_unicode(), 65, tmp_path)) >= 60


def test_60_yaml_tags_are_each_refused_and_none_runs_a_command_or_builds_an_object(tmp_path):
    assert len(run_refusing(yaml_tags(), 65, tmp_path)) >= 60


def test_40_alias_bombs_self_references_and_misused_aliases_are_each_refused(tmp_path):
    assert len(run_refusing(aliases(), 45, tmp_path)) >= 40


def test_30_duplicate_keys_are_each_refused_naming_the_key(tmp_path):
    assert len(run_refusing(duplicate_keys(), 35, tmp_path)) >= 30


def test_40_files_damaged_below_the_fields_are_each_refused_with_a_position(tmp_path):
    assert len(run_refusing(damage(), 45, tmp_path)) >= 40


def test_the_tag_payloads_would_run_under_an_unsafe_loader(tmp_path):
    """The check above is not vacuous: PyYAML's unsafe loader runs the same payloads."""
    marker = tmp_path / "pwned"
    yaml.unsafe_load(f'x: !!python/object/apply:os.system ["touch {marker}"]')
    yaml.unsafe_load(f"x: !!python/object/new:{HERE}.Tripwire []")
    try:
        assert marker.exists()
        assert [name for name, _, _ in TRIPPED] == ["Tripwire"]
    finally:
        TRIPPED.clear()


# -- valid variants: they load -------------------------------------------------------------

FREE_TEXT = st.text(TEXT, max_size=30)


@st.composite
def valid_variants(draw):
    """(file text, check(config)) of a valid file: free text anywhere it is allowed,
    shared anchors and merge keys."""
    kind = draw(st.sampled_from(["tags", "app_settings", "anchor", "merge"]))
    data = prod_data()
    if kind == "tags":
        tags = draw(st.dictionaries(FREE_TEXT.filter(
            lambda k: k.strip() and not k.startswith(("runbook:", "aws:"))), FREE_TEXT,
            min_size=1, max_size=4))
        data["tags"] = tags
        return yaml.safe_dump(data, allow_unicode=True), lambda c: c.tags == tags
    if kind == "app_settings":
        settings_ = draw(st.dictionaries(
            FREE_TEXT.filter(lambda k: not k.isascii()),
            st.one_of(FREE_TEXT, st.booleans(), st.integers(-10**12, 10**12)),
            min_size=1, max_size=4))
        data["secrets"]["app_settings"] = settings_
        return yaml.safe_dump(data, allow_unicode=True), \
            lambda c: c.secrets.app_settings == settings_
    root = prod_tree()
    lambdas = child(root, "lambdas")
    pre = child(lambdas, "pre_signup")
    if kind == "anchor":  # the same settings for both functions, written once
        place(root, ("lambdas", "post_confirmation"), pre)
        return text_of(root), lambda c: c.lambdas.post_confirmation == c.lambdas.pre_signup
    timeout = draw(st.integers(1, 900))
    merged = yaml.MappingNode("tag:yaml.org,2002:map", [
        (yaml.ScalarNode("tag:yaml.org,2002:merge", "<<"), pre),
        (node_of("timeout_s"), node_of(timeout))])
    place(root, ("lambdas", "post_confirmation"), merged)
    return text_of(root), lambda c: (c.lambdas.post_confirmation.timeout_s == timeout and
                                     c.lambdas.post_confirmation.memory_mb ==
                                     c.lambdas.pre_signup.memory_mb)


def test_30_valid_variants_with_unicode_free_text_and_anchors_load_with_their_values(tmp_path):
    loaded: set = set()

    @settings(max_examples=35, **SETTINGS)
    @given(valid_variants())
    def each(variant):
        text, check = variant
        path = write(Case(text, None), tmp_path)
        assert check(config.load(path))
        loaded.add(text)

    each()
    assert len(loaded) >= 30


# -- through the command ------------------------------------------------------------------

MALFORMED = st.one_of(wrong_types(), huge_values(), hostile_unicode(), yaml_tags(), aliases(),
                      duplicate_keys(), damage())


def test_30_malformed_files_make_run_dry_run_exit_2_before_any_sandbox_starts(cli, tmp_path):
    reports = tmp_path / "reports"

    def through_the_command(case: Case, tmp_path: Path) -> None:
        path = write(case, tmp_path)
        result = cli("run", "--phase", "a3", "--dry-run", "--config", str(path),
                     "--report-dir", str(reports))
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and str(path) in result.output
        assert "Traceback" not in result.output and "internal error" not in result.output
        assert "sandbox" not in result.output and not reports.exists()
        if case.field:
            assert f": {case.field}" in result.output, result.output

    assert len(run_refusing(MALFORMED, 32, tmp_path, check=through_the_command)) >= 30


def test_hostile_unicode_reaches_a_real_terminal_escaped_with_exit_2(tmp_path):
    """In a separate process, stderr is a real UTF-8 stream: a lone surrogate would not
    encode, and a right-to-left override would garble the operator's screen."""
    for key, problem in (("\u202e", "unknown key"), ("\ud800", "contains U+D800")):
        root = prod_tree()
        child(root, "network").value.append((node_of(f"na{key}me"), node_of("x")))
        path = write(Case(text_of(root), None), tmp_path)

        result = run_cli("plan", "--phase", "a1", "--config", str(path), cwd=tmp_path,
                         timeout=60)

        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and key not in result.output
        assert f"network.{f'na{key}me'!r}: {problem}" in result.stderr, result.stderr
