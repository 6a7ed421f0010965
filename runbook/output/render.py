"""How a plan reads: to a person, as Terraform users read one, and to a script, as JSON.

`runbook plan` and `runbook status --live` both show planned changes step by step, so
they share this module. The text is printed from the same data that `--json` prints, so
the two never say different things. A change is a line with its symbol (`+` create,
`~` update, `-` delete) and resource, then one indented line per field; a list (a role's
policy) puts one item on a line, and a long value wraps under its field instead of
running off the screen. Colour appears only on a terminal; without it the symbols and
words carry everything.

A change's `diff` never holds a secret (engine.Change); this module only lays it out.
"""

from __future__ import annotations

import textwrap
from typing import Any

from rich.console import Console
from rich.text import Text

from runbook.engine import Change

ACTIONS = ("create", "update", "delete")
SYMBOLS = Change.SYMBOLS
COLOURS = {"create": "green", "update": "yellow", "delete": "red"}
# Terraform's words for the three actions, as in "Plan: 2 to add, 1 to change, ...".
VERBS = {"create": "to add", "update": "to change", "delete": "to destroy"}

# A step's state in a plan. "cannot_plan": reading or planning it failed (the error
# says why); "not_planned": it consumes such a step; "skipped": not built in this version.
STATES = ("changes", "unchanged", "cannot_plan", "not_planned", "skipped")

# How `print_steps` words and styles each state: `{counts}` is "2 to add, 1 to change"
# and `{error}` the step's error. `status --live` adds its own states ("drift").
LABELS = {
    "changes": ("{counts}", "bold"),
    "unchanged": ("no changes", "dim"),
    "cannot_plan": ("cannot plan", "bold red"),
    "not_planned": ("not planned: {error}", "yellow"),
    "skipped": ("skipped: not built in this version of runbook", "yellow"),
}

INDENT = 2
# A list whose items fit in this many characters stays on its field's line.
SHORT_LIST = 60


def console() -> Console:
    """A rich Console on stdout: colour on a terminal; plain text, 120 columns wide,
    otherwise (a pipe or a file has no width of its own)."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=120, no_color=True)
    return out


# -- data --------------------------------------------------------------------------------

def step_state(result) -> str:
    """The STATES entry of one engine.StepResult of a plan-only run."""
    if result.unbuilt:
        return "skipped"
    if result.status == "not_run":
        return "not_planned"
    if result.status != "ok":
        return "cannot_plan"
    return "changes" if result.changes else "unchanged"


def step_data(result, *, show_sql: bool = False) -> dict:
    """A planned step as data: {name, phase, state, error, changes}."""
    state = step_state(result)
    return {
        "name": result.name,
        "phase": result.phase,
        "state": state,
        "error": result.error if state in ("cannot_plan", "not_planned") else None,
        "changes": [_change_data(change, show_sql) for change in result.changes],
    }


def _change_data(change, show_sql: bool) -> dict:
    data = change.as_report()
    if show_sql and change.detail:
        data["sql"] = change.detail
    return data


def count_actions(changes: list[dict]) -> dict[str, int]:
    """How many creates, updates and deletes `changes` holds, keyed by action."""
    return {action: sum(c["action"] == action for c in changes) for action in ACTIONS}


def plan_data(results, *, env: str, target: str, by_phase: bool, dry_run: bool,
              account: str | None, region: str, show_sql: bool = False) -> dict:
    """What `runbook plan --json` prints; README "Live use" documents the keys."""
    steps = [step_data(result, show_sql=show_sql) for result in results]
    actions = count_actions([change for step in steps for change in step["changes"]])
    return {
        "env": env, "target": target, "dry_run": dry_run, "account": account,
        "region": region,
        "summary": {"add": actions["create"], "change": actions["update"],
                    "destroy": actions["delete"],
                    "steps": {state: sum(s["state"] == state for s in steps)
                              for state in STATES}},
        "run_first": _earlier_phases(steps, target) if by_phase and not dry_run else [],
        "steps": steps,
    }


def _earlier_phases(steps: list[dict], phase: str) -> list[str]:
    """The phases before `phase` whose steps have changes: a live `run --phase` runs
    only its own phase's steps, so these must run first."""
    earlier: list[str] = []
    for step in steps:
        if step["phase"] != phase and step["state"] == "changes" and step["phase"] not in earlier:
            earlier.append(step["phase"])
    return earlier


# -- text --------------------------------------------------------------------------------

def print_plan(data: dict, out) -> None:
    """The plan as a person reads it: a header, each step's changes, the summary line."""
    where = ("the sandbox (dry run)" if data["dry_run"]
             else f"account {data['account']}, {data['region']}")
    print_line(out, f"runbook plan: {data['target']} for {data['env']} in {where}; read-only",
               "bold")
    print_steps(out, data["steps"])
    summary, states = data["summary"], data["summary"]["steps"]
    tail = [f"{states['unchanged']} step{'s' * (states['unchanged'] != 1)} unchanged"]
    tail += [f"{states[state]} {words}" for state, words in (
        ("cannot_plan", "could not be planned"), ("not_planned", "not planned"),
        ("skipped", "skipped (not built)")) if states[state]]
    out.print()
    print_line(out, _text(f"Plan: {summary['add']} to add, {summary['change']} to change, "
                          f"{summary['destroy']} to destroy. ", "bold")
               + _text(", ".join(tail) + "."))
    if data["run_first"]:
        first = ", then ".join(f"`runbook run --phase {phase}`" for phase in data["run_first"])
        print_line(out, f"`runbook run --phase {data['target']}` runs only the steps of "
                   f"{data['target']}: run {first} first.", "yellow")


def print_steps(out, steps: list[dict], labels: dict[str, tuple[str, str]] = LABELS) -> None:
    """Each step's line (`name (phase): label`), then its changes, or the error that kept
    it from being planned. A step with lines under it stands apart from its neighbours
    by a blank line; one-line steps stay together."""
    apart = False
    for step in steps:
        label, style = labels[step["state"]]
        changes = step["changes"] if step["state"] in ("changes", "drift") else []
        error = step["error"] if step["state"] == "cannot_plan" else None
        block = bool(changes or error)
        if block or apart:
            out.print()
        apart = block
        counts = count_actions(step["changes"])
        print_line(out, f"{step['name']} ({step['phase']}): " + label.format(
            counts=", ".join(f"{n} {VERBS[a]}" for a, n in counts.items() if n),
            error=step["error"]), style)
        for change in changes:
            print_change(out, change)
        if error:
            print_wrapped(out, error, INDENT, "red")


def print_change(out, change: dict, indent: int = INDENT) -> None:
    """`+ resource`, then its fields one to a line, indented under it."""
    action = change["action"]
    print_wrapped(out, f"{SYMBOLS[action]} {change['resource']}", indent, COLOURS[action])
    for depth, text in diff_lines(change["diff"]):
        print_wrapped(out, text, indent + 4 + 2 * depth)
    if change.get("sql"):
        print_wrapped(out, "sql:", indent + 4)
        for text in change["sql"].rstrip().splitlines():
            print_wrapped(out, text, indent + 6)


def diff_lines(diff: dict) -> list[tuple[int, str]]:
    """A diff as (depth, text) lines: `field: value` or `field: from -> to`; a long list
    one item to a line (`- item`), an updated list as `- removed` and `+ added`, a map
    as `field.key: ...`."""
    return [line for name, value in diff.items() for line in _field_lines(str(name), value)]


def _field_lines(name: str, value: Any) -> list[tuple[int, str]]:
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        before, after = value["from"], value["to"]
        if isinstance(before, dict) or isinstance(after, dict):
            before, after = before or {}, after or {}
            return [(0, f"{name}.{key}: {_scalar(before.get(key))} -> {_scalar(after.get(key))}")
                    for key in sorted(set(before) | set(after), key=str)
                    if before.get(key) != after.get(key)]
        if isinstance(before, list) or isinstance(after, list):
            before, after = before or [], after or []
            return ([(0, f"{name}:")]
                    + [(1, f"- {_scalar(item)}") for item in before if item not in after]
                    + [(1, f"+ {_scalar(item)}") for item in after if item not in before])
        return [(0, f"{name}: {_scalar(before)} -> {_scalar(after)}")]
    if isinstance(value, dict):
        return [line for key, item in value.items() for line in _field_lines(f"{name}.{key}", item)]
    if isinstance(value, (list, tuple)):
        if not value:
            return [(0, f"{name}: (none)")]
        joined = ", ".join(_scalar(item) for item in value)
        if len(joined) <= SHORT_LIST:
            return [(0, f"{name}: {joined}")]
        return [(0, f"{name}:")] + [(1, f"- {_scalar(item)}") for item in value]
    return [(0, f"{name}: {_scalar(value)}")]


def _scalar(value: Any) -> str:
    return "(none)" if value is None else str(value)


def print_line(out, text, style: str | None = None) -> None:
    """One line, never wrapped: a header or a summary a script may grep for."""
    out.print(_text(text, style) if isinstance(text, str) else text, soft_wrap=True)


def print_wrapped(out, text: str, indent: int, style: str | None = None) -> None:
    """`text` at `indent`, wrapped to the screen's width two columns further in (under
    the item, for `- item` and `+ resource`), so that a policy is not one 400-column
    line."""
    for part in textwrap.wrap(text, max(out.width - indent, 40), subsequent_indent="  ",
                              break_on_hyphens=False) or [""]:
        out.print(_text(" " * indent + part, style), soft_wrap=True)


def _text(text: str, style: str | None = None) -> Text:
    # Text, not markup: a value such as "['a']" must print as it is.
    return Text(text, style=style or "")


# -- destroy -------------------------------------------------------------------------------

KEPT = "="          # a resource a destroy leaves in place


def teardown_data(teardown, *, account: str, region: str, dry_run: bool,
                  protected: list[str] | None = None) -> dict:
    """What `runbook plan --destroy --json` prints: per step (last first), the deletes,
    the changes (triggers taken off a pool that stays) and what is kept, and why."""
    steps = [{"name": step, "changes": [i.change().as_report() for i in items
                                        if i.action != "keep"],
              "kept": [{"resource": i.title, "why": i.why} for i in items
                       if i.action == "keep"]}
             for step, items in teardown.by_step()]
    actions = count_actions([c for s in steps for c in s["changes"]])
    return {"env": teardown.env, "dry_run": dry_run, "account": account, "region": region,
            "whole": teardown.whole, "steps": steps, "protected": list(protected or []),
            "summary": {"add": 0, "change": actions["update"], "destroy": actions["delete"],
                        "kept": sum(len(s["kept"]) for s in steps)}}


def print_teardown(data: dict, out) -> None:
    where = "the sandbox (dry run)" if data["dry_run"] else \
        f"account {data['account']}, {data['region']}"
    scope = "the whole environment" if data["whole"] else "from the phase given on"
    print_line(out, f"runbook destroy: {data['env']} ({scope}) in {where}", "bold")
    for step in data["steps"]:
        if not step["changes"] and not step["kept"]:
            print_line(out, f"{step['name']}: nothing", "dim")
            continue
        out.print()
        print_line(out, f"{step['name']}:", "bold")
        for change in step["changes"]:
            print_change(out, change)
        for kept in step["kept"]:
            print_wrapped(out, f"{KEPT} {kept['resource']} kept: {kept['why']}", INDENT, "cyan")
    summary = data["summary"]
    out.print()
    print_line(out, _text(f"Plan: 0 to add, {summary['change']} to change, "
                          f"{summary['destroy']} to destroy. ", "bold")
               + _text(f"{summary['kept']} kept."))
    if data["protected"]:
        print_line(out, f"runbook destroy refuses while {', '.join(data['protected'])} "
                   "is true in the environment file.", "yellow")
