"""Plans as data: state in, changes out, with no I/O (in the style of pyinfra's
tests/operations/*/*.json).

Each tests/plans/<step>/<case>.json holds
  "why"      what the case shows
  "config"   optional: overrides deep-merged into config/prod.yaml's data, whose phase
             a4 is left out (BASE_PHASES): a1..a3's cases describe an environment that
             does not publish registrations, and a case adds "phases": {"a4": [...]};
             so are step db-proxy and database.roles (LATER_STEPS)
  "inputs"   optional: {step: outputs} of the steps it needs, as the report shows them
  "state"    what `read` found, in the form STATES[<step>] turns into the step's state
  "changes"  the plan, in order: [[action, resource, diff], ...]; [] for a converged state
  or "error" {"type": the exception's class, "contains": text of its message}

The step runs with an AWS that has no client at all (`Offline`): a plan that calls AWS
fails the case. Values known only after apply read "(known after apply)", as in reports.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from pathlib import Path

import yaml

from runbook import config as config_mod
from runbook.engine import StepContext, Unknown
from runbook.engine.step import Inputs
from runbook.errors import ImpurePlan
from runbook.output.progress import Progress
from runbook.steps import CATALOGUE
from tests.conftest import PROD_CONFIG, REGION

HERE = Path(__file__).resolve().parent


class Offline:
    """The AWS of a plan test: a region, and no calls."""

    region = REGION
    endpoint_url = None

    def client(self, service: str):
        raise ImpurePlan("the plan under test", service, "(any)")

    def caller_account(self) -> str:
        raise ImpurePlan("the plan under test", "sts", "GetCallerIdentity")


def cases() -> list[Path]:
    return sorted(HERE.glob("*/*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def merged(base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merged(base.get(key), value) if key in base else value
        return out
    return copy.deepcopy(override)


# The phases of config/prod.yaml the cases start from.
BASE_PHASES = ("a1", "a2", "a3")
# What the cases start without, as they start without a4: the RDS Proxy and the
# database roles its logins need. The cases were written for a file without them, which
# the functions read the DB secret in; a case that wants them adds them ("config":
# {"phases": {"a3": [...]}, "database": {"roles": {...}}}).
LATER_STEPS = ("db-proxy",)
# Nor network.public_subnets (MSK's, for phase a5): a case that wants them adds them
# ("config": {"network": {"public_subnets": [...]}}), and a case whose phases run step
# msk-cluster, which needs them, keeps config/prod.yaml's.
LATER_FIELDS = (("network", "public_subnets"),)


def config_for(case: dict, tmp_path: Path):
    base = yaml.safe_load(PROD_CONFIG.read_text())
    base["phases"] = {name: [step for step in base["phases"][name] if step not in LATER_STEPS]
                      for name in BASE_PHASES}
    base["database"].pop("roles", None)
    wanted = case.get("config", {}).get("phases", {})
    if not any("msk-cluster" in steps for steps in wanted.values()):
        for section, name in LATER_FIELDS:
            base[section].pop(name, None)
    data = merged(base, case.get("config", {}))
    path = tmp_path / "config" / "prod.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(path)


def known(value):
    """JSON's "(known after apply)" as the typed placeholder."""
    if value == Unknown.TEXT:
        return Unknown()
    if isinstance(value, list):
        return tuple(known(item) for item in value)
    if isinstance(value, dict):
        return {key: known(item) for key, item in value.items()}
    return value


def build(cls, data: dict | None):
    """A dataclass of `cls` from JSON, nested dataclasses and tuples included."""
    if data is None:
        return None
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, hint = data[field.name], hints[field.name]
        if value is not None and typing.get_origin(hint) in (typing.Union, types.UnionType):
            inner = [h for h in typing.get_args(hint) if h is not type(None)]
            if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):  # Found | None
                hint = inner[0]
        if dataclasses.is_dataclass(hint):
            value = build(hint, value)
        elif hint in (list, set) or typing.get_origin(hint) in (list, set):
            value = (set if set in (hint, typing.get_origin(hint)) else list)(value)
        else:
            value = known(value)
        values[field.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise KeyError(f"{cls.__name__} has no field {sorted(unknown)}")
    return cls(**values)


def step_for(name: str, config, inputs: dict):
    info = CATALOGUE[name]
    step_class = info.load()
    outputs = {need: build(output_class(need), data) for need, data in inputs.items()}

    def upstream(need: str):
        if need not in outputs:
            raise KeyError(f"the case gives no inputs of step {need!r}")
        return outputs[need]

    ctx = StepContext(config, Offline(), Progress(quiet=True), upstream, plan_only=True)
    return step_class(ctx, Inputs(name, info.needs(config), upstream))


def output_class(name: str):
    module = __import__(CATALOGUE[name].module, fromlist=["STEP"])
    return typing.get_type_hints(module.STEP.outputs)["return"]


def as_data(changes) -> list:
    return json.loads(json.dumps([[c.action, c.resource, c.diff] for c in changes],
                                 default=str))
