"""Every step's plan, from data: see harness.py for the shape of a case."""

from __future__ import annotations

import pytest

from runbook import errors
from tests.plans.harness import as_data, cases, config_for, load, step_for
from tests.plans.states import STATES

CASES = cases()


def test_every_step_in_the_catalogue_has_plan_cases_with_a_no_op():
    from runbook.steps import CATALOGUE

    by_step: dict[str, list[dict]] = {}
    for path in CASES:
        by_step.setdefault(path.parent.name, []).append(load(path))
    built = {name for name, info in CATALOGUE.items() if info.module and info.idempotent}
    assert sorted(built - set(STATES)) == [], "a step without plan cases"
    for name in built:  # a step that acts on every run (integration-test) has no no-op
        assert any(case.get("changes") == [] for case in by_step.get(name, ())), \
            f"step {name} has no converged (no-op) case"
    # Every built step, the non-idempotent one too; a step named but not built yet
    # (module None) has no plan to test.
    assert sorted({n for n, info in CATALOGUE.items() if info.module} - set(STATES)) == []


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_plan(path, tmp_path):
    case = load(path)
    name = path.parent.name
    config = config_for(case, tmp_path)
    step = step_for(name, config, case.get("inputs", {}))
    if "error" in case:
        expected = getattr(errors, case["error"]["type"])
        with pytest.raises(expected) as raised:
            step.plan(STATES[name](step, case["state"]))
        assert case["error"]["contains"] in str(raised.value)
        return
    state = STATES[name](step, case["state"])
    assert as_data(step.plan(state)) == case["changes"], case["why"]
