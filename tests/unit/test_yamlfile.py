"""runbook.yamlfile: strict YAML reading (duplicates, merge keys, alias bombs, lines)."""

from __future__ import annotations

import time

import pytest

from runbook import yamlfile
from runbook.yamlfile import YamlProblem, dotted, parse


# -- duplicate keys -------------------------------------------------------------------

def test_duplicate_top_level_key_is_refused_with_its_path_and_both_lines():
    text = "region: eu-central-1\ntags: {}\nregion: us-east-1\n"

    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert caught.value.field == "region"
    assert "duplicate key" in caught.value.message
    assert "first defined on line 1" in caught.value.message
    assert caught.value.line == 3


def test_duplicate_key_nested_in_a_mapping_is_refused_with_the_dotted_path():
    text = (
        "phases:\n"          # 1
        "  a1: [network]\n"  # 2
        "  a2: [cognito]\n"  # 3
        "  a1: [database]\n"  # 4
    )

    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert caught.value.field == "phases.a1"
    assert "duplicate key (first defined on line 2)" in caught.value.message
    assert caught.value.line == 4


def test_duplicate_key_inside_a_list_item_is_refused_with_the_indexed_path():
    text = (
        "network:\n"                    # 1
        "  subnets:\n"                  # 2
        "    - cidr: 10.0.11.0/24\n"    # 3
        "      az: eu-central-1a\n"     # 4
        "    - cidr: 10.0.12.0/24\n"    # 5
        "      az: eu-central-1b\n"     # 6
        "      cidr: 10.0.13.0/24\n"    # 7
    )

    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert caught.value.field == "network.subnets[1].cidr"
    assert "duplicate key (first defined on line 5)" in caught.value.message
    assert caught.value.line == 7


def test_duplicate_key_inside_a_flow_mapping_is_refused():
    text = "network:\n  subnets:\n    - {cidr: 10.0.11.0/24, az: eu-central-1a, az: x}\n"

    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert caught.value.field == "network.subnets[0].az"
    assert "duplicate key (first defined on line 3)" in caught.value.message
    assert caught.value.line == 3


def test_same_key_in_sibling_mappings_is_not_a_duplicate():
    doc = parse("a: {name: x}\nb: {name: y}\nc:\n  - name: 1\n  - name: 2\n")

    assert doc.data == {"a": {"name": "x"}, "b": {"name": "y"},
                        "c": [{"name": 1}, {"name": 2}]}


# -- merge keys -----------------------------------------------------------------------

def test_merge_key_copies_the_anchored_mapping_and_local_keys_override_it():
    text = (
        "base: &base\n"      # 1
        "  memory_mb: 256\n"  # 2
        "  timeout_s: 30\n"  # 3
        "child:\n"           # 4
        "  <<: *base\n"      # 5
        "  timeout_s: 60\n"  # 6
        "  extra: true\n"    # 7
    )

    doc = parse(text)

    assert doc.data["child"] == {"memory_mb": 256, "timeout_s": 60, "extra": True}
    assert doc.data["base"] == {"memory_mb": 256, "timeout_s": 30}
    # the overriding key points at its own line, the merged one at the anchor's
    assert doc.line_of(("child", "timeout_s")) == 6
    assert doc.line_of(("child", "memory_mb")) == 2


def test_merge_key_used_twice_in_one_file_is_not_reported_as_a_duplicate():
    text = (
        "defaults: &d {memory_mb: 256, timeout_s: 30}\n"
        "lambdas:\n"
        "  pre_signup:\n"
        "    <<: *d\n"
        "  post_confirmation:\n"
        "    <<: *d\n"
        "    memory_mb: 512\n"
    )

    doc = parse(text)

    assert doc.data["lambdas"] == {
        "pre_signup": {"memory_mb": 256, "timeout_s": 30},
        "post_confirmation": {"memory_mb": 512, "timeout_s": 30},
    }


def test_merge_key_with_a_list_of_anchors_merges_all_of_them():
    text = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n"

    doc = parse(text)

    assert doc.data["c"] == {"x": 1, "y": 2, "z": 3}


# -- alias bombs and unsafe tags ------------------------------------------------------

def _billion_laughs(levels: int = 9) -> str:
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * 10) + "]"]
    for level in range(1, levels):
        prev, name = names[level - 1], names[level]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_alias_bomb_is_refused_quickly_as_too_large():
    text = _billion_laughs(9)  # 10**9 "lol"s once expanded
    assert len(text) < 1000

    started = time.monotonic()
    with pytest.raises(YamlProblem) as caught:
        parse(text)
    elapsed = time.monotonic() - started

    assert "too large" in caught.value.message
    assert str(yamlfile.MAX_NODES) in caught.value.message
    assert elapsed < 5, f"took {elapsed:.1f}s: aliases were expanded instead of bounded"


def test_small_alias_use_below_the_node_limit_is_accepted():
    doc = parse(_billion_laughs(2))  # 10 lists of 10: about 120 nodes

    assert doc.data["b"] == [["lol"] * 10] * 10


def test_python_object_tag_is_refused_without_being_constructed(tmp_path):
    marker = tmp_path / "pwned"
    text = f'name: !!python/object/apply:os.system ["touch {marker}"]\n'

    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert "unsupported YAML" in caught.value.message
    assert caught.value.line == 1
    assert not marker.exists()


def test_unparseable_yaml_is_reported_with_a_line_number():
    with pytest.raises(YamlProblem) as caught:
        parse("a: 1\nb: [1, 2\n")

    assert caught.value.message.startswith("not valid YAML")
    assert caught.value.line is not None


def test_empty_document_parses_as_an_empty_mapping():
    assert parse("").data == {}
    assert parse("# only a comment\n").data == {}


# -- dotted and line_of ---------------------------------------------------------------

def test_dotted_writes_list_indexes_in_brackets_and_keys_with_dots():
    assert dotted(("network", "subnets", 1, "cidr")) == "network.subnets[1].cidr"
    assert dotted(("phases", "a1", 0)) == "phases.a1[0]"
    assert dotted(("region",)) == "region"
    assert dotted(()) == ""


def test_line_of_returns_the_line_of_every_known_key_and_list_item():
    text = (
        "region: eu-central-1\n"        # 1
        "network:\n"                    # 2
        "  subnets:\n"                  # 3
        "    - cidr: 10.0.11.0/24\n"    # 4
        "      az: eu-central-1a\n"     # 5
        "    - cidr: 10.0.12.0/24\n"    # 6
        "      az: eu-central-1b\n"     # 7
    )

    doc = parse(text)

    assert doc.line_of(("region",)) == 1
    assert doc.line_of(("network",)) == 2
    assert doc.line_of(("network", "subnets")) == 3
    assert doc.line_of(("network", "subnets", 1)) == 6
    assert doc.line_of(("network", "subnets", 1, "az")) == 7


def test_line_of_falls_back_to_the_nearest_known_parent():
    text = "network:\n  name: x\n  subnets:\n    - cidr: 10.0.11.0/24\n"

    doc = parse(text)

    # a missing field is reported on its parent's line
    assert doc.line_of(("network", "cidr")) == 1
    assert doc.line_of(("network", "subnets", 0, "az")) == 4
    assert doc.line_of(("network", "subnets", 5, "cidr")) == 3
    # a path with no known ancestor has no line
    assert doc.line_of(("database", "name")) is None
    assert doc.line_of(()) is None


# -- what used to escape as a traceback (found by tests/unit/test_config_fuzz.py) -------------

def test_a_nul_in_the_file_is_refused_with_its_line_not_a_reader_error():
    with pytest.raises(YamlProblem) as caught:
        parse("region: eu-central-1\nname: mat\x00bakh\n")

    assert caught.value.message.startswith("not valid YAML: unacceptable character #x0000")
    assert caught.value.line == 2


@pytest.mark.parametrize("value", [
    "2020-02-30", "0x_", "0b_", "9999-12-31T24:00:00", "!!int abc", '!!int ""',
    "!!float x", "!!bool maybe", "!!timestamp x",
])
def test_a_value_pyyaml_cannot_construct_is_refused_naming_its_field(value):
    # PyYAML's constructors raise ValueError, KeyError, IndexError or AttributeError here.
    with pytest.raises(YamlProblem) as caught:
        parse(f"a: 1\nb:\n  c: {value}\n")

    assert caught.value.field == "b.c"
    assert caught.value.message.startswith("unsupported YAML: ")
    assert "cannot be read as !!" in caught.value.message
    assert caught.value.line == 3


def test_a_tagged_list_item_is_refused_naming_the_item():
    with pytest.raises(YamlProblem) as caught:
        parse("phases:\n  a1: [network, !!python/object/apply:os.system [x], database]\n")

    assert caught.value.field == "phases.a1[1]"


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000])
def test_nesting_deeper_than_the_limit_is_refused_instead_of_exhausting_the_stack(value):
    with pytest.raises(YamlProblem) as caught:
        parse(f"region: x\nnetwork:\n  name: {value}\n")

    assert caught.value.field.startswith("network.name")
    assert f"nested more than {yamlfile.MAX_DEPTH} levels deep" in caught.value.message
    assert caught.value.line == 3


@pytest.mark.parametrize("value", ["&r [*r]", "&r {a: *r}", "&r {<<: *r}"])
def test_an_alias_inside_the_value_it_names_is_refused(value):
    with pytest.raises(YamlProblem) as caught:
        parse(f"network:\n  name: {value}\n")

    assert caught.value.field.startswith("network.name")
    assert "an alias refers to a value that contains it" in caught.value.message


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 5000, "0x" + "f" * 5000, "9" * 31])
def test_an_integer_too_long_to_convert_is_refused_naming_its_field(number):
    # Python refuses to convert more than 4300 digits (ValueError).
    with pytest.raises(YamlProblem) as caught:
        parse(f"lambdas:\n  memory_mb: {number}\n")

    assert caught.value.field == "lambdas.memory_mb"
    assert f"a number of {len(number)} characters is too long" in caught.value.message


def test_a_twelve_digit_account_id_is_still_read_as_a_number():
    assert parse("account_id: 123456789012\n").data == {"account_id": 123456789012}


@pytest.mark.parametrize("key, tag", [("1", "!!int"), ("~", "!!null"), ("on", "!!bool"),
                                      ("2020-01-01", "!!timestamp"), ("1.5", "!!float")])
def test_a_key_yaml_reads_as_another_type_is_refused_naming_it(key, tag):
    with pytest.raises(YamlProblem) as caught:
        parse(f"phases:\n  {key}: [network]\n")

    assert caught.value.field == f"phases.{key}"
    assert f"a key must be a string, and YAML reads this one as {tag}" in caught.value.message
    assert caught.value.line == 2


@pytest.mark.parametrize("text, field, shown", [
    ('name: "mat\\0bakh"\n', "name", "U+0000, a control character"),
    ('name: "\\ud800"\n', "name", "U+D800, a lone surrogate"),
    ('tags: {"na\\0me": x}\n', "tags.'na\\x00me'", "U+0000"),
    ('tags: {"\\udfffx": x}\n', "tags.'\\udfffx'", "U+DFFF"),
])
def test_an_escaped_control_character_or_lone_surrogate_is_refused_naming_the_field(
        text, field, shown):
    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert caught.value.field == field
    assert shown in caught.value.message


def test_two_merge_keys_in_one_mapping_are_a_duplicate_key():
    text = "a: &a {x: 1}\nb: &b {x: 2}\nc:\n  <<: *a\n  <<: *b\n"

    with pytest.raises(YamlProblem) as caught:
        parse(text)

    assert caught.value.field == "c.<<"
    assert "duplicate key (first defined on line 4)" in caught.value.message


def test_dotted_shows_unprintable_keys_escaped_and_long_keys_cut():
    assert dotted(("tags", "evil\u202etxt.exe")) == "tags.'evil\\u202etxt.exe'"
    assert dotted(("tags", "a" * 1000)) == "tags." + "a" * 37 + "..."
