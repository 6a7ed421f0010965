"""The step contract the engine enforces: a plan calls no AWS, a step reads only the
outputs its catalogue entry declares, outputs are typed and Unknown until made, and a
change's Unknown inputs are resolved from what earlier changes made."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runbook.aws.clients import ClientFactory
from runbook.engine import UNKNOWN, Change, Outputs, Runner, Step, Unknown, is_known
from runbook.errors import ImpurePlan
from runbook.output.progress import Progress
from runbook.resources.base import Inventory, resolve
from tests.conftest import REGION


@dataclass(frozen=True)
class ThingOutputs(Outputs):
    thing_id: str


class Thing(Step):
    """A step whose plan reads AWS when `impure` is set."""

    name = "thing"
    impure = False

    def read(self):
        return {"id": None}

    def plan(self, state):
        if self.impure:
            self.client("ec2").describe_vpcs()
        return [Change("create", "test:thing one", "make", {}, {}, run=self.make)]

    def make(self, api, state):
        state["id"] = "thing-1"

    def outputs(self, state):
        return ThingOutputs(state["id"] or UNKNOWN)


class Impure(Thing):
    impure = True


class Reader(Thing):
    name = "reader"

    def read(self):
        return {"id": self.inputs.thing.thing_id, "other": self.inputs.other}


@dataclass(frozen=True)
class Entry:
    """A catalogue entry (runbook.steps.StepInfo's interface) for a step class of the
    tests; cls None: a step this version of runbook does not build."""

    cls: type | None
    requires: tuple = ()
    shares: tuple = ()
    idempotent: bool = True

    @property
    def module(self) -> str | None:
        return None if self.cls is None else self.cls.__module__

    def needs(self, config) -> tuple:
        return self.requires

    def load(self) -> type:
        return self.cls


class Config:
    def phase_of(self, name: str) -> str:
        return "a0"


def runner(catalogue: dict, **options) -> Runner:
    return Runner(Config(), ClientFactory(REGION), Progress(quiet=True), catalogue=catalogue,
                  **options)


def test_a_plan_that_calls_aws_fails_the_step_and_no_call_is_made():
    run = runner({"thing": Entry(Impure)})
    [result] = run.run(["thing"])
    assert result.status == "failed" and result.error_kind == "failure"
    assert "step 'thing''s plan called ec2:DescribeVpcs; a plan may not call AWS" in result.error
    assert result.api_calls == {"read": 0, "write": 0}


def test_the_refusal_raises_before_anything_is_sent_or_counted():
    aws = ClientFactory(REGION)
    with aws.refusing("this block"), pytest.raises(ImpurePlan):
        aws.client("sts").get_caller_identity()
    assert aws.total("read") == 0 and aws.total("write") == 0


def test_a_pure_plan_runs_and_its_typed_outputs_reach_the_report():
    run = runner({"thing": Entry(Thing)})
    [result] = run.run(["thing"])
    assert result.status == "ok" and result.applied == 1
    assert result.outputs == {"thing_id": "thing-1"}
    assert run.outputs["thing"] == ThingOutputs("thing-1")


def test_a_plan_only_run_shows_an_unknown_output_as_the_report_says_it():
    run = runner({"thing": Entry(Thing)}, plan_only=True)
    [result] = run.run(["thing"])
    assert result.outputs == {"thing_id": "(known after apply)"}
    assert not is_known(run.outputs["thing"].thing_id)


def test_a_step_reads_only_the_outputs_its_catalogue_entry_declares():
    run = runner({"thing": Entry(Thing), "reader": Entry(Reader, ("thing",))})
    thing, reader = run.run(["thing", "reader"])
    assert thing.status == "ok" and reader.status == "failed"
    assert "reads the outputs of 'other', which its entry in runbook.steps.CATALOGUE " \
           "does not list (it needs thing)" in reader.error


def test_unknown_is_typed_not_a_string():
    assert str(UNKNOWN) == "(known after apply)"
    assert UNKNOWN != "(known after apply)"       # a real value is never taken for it
    assert not is_known(UNKNOWN) and not is_known(["a", Unknown(("vpc", "id"))])
    assert is_known("(known after apply)")        # only the type says unknown
    assert sorted(["b", UNKNOWN, "a"], key=str)[0] == UNKNOWN


def test_apply_resolves_an_unknown_from_what_an_earlier_change_made():
    @dataclass(frozen=True)
    class Spec:
        vpc_id: str
        cidrs: tuple

    @dataclass
    class Made:
        id: str

    inventory = Inventory()
    spec = Spec(inventory.ref("vpc"), (inventory.ref("subnet a"), "10.0.2.0/24"))
    assert not is_known(spec.vpc_id)
    inventory.found.update({"vpc": Made("vpc-1"), "subnet a": Made("subnet-1")})
    assert resolve(spec, inventory) == Spec("vpc-1", ("subnet-1", "10.0.2.0/24"))
