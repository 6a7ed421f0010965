"""How plans read (runbook.render) and how status --live words them (runbook.drift): from
planned StepResults to text and JSON, no I/O."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from runbook.output import drift
from runbook.output import render
from runbook.engine import Change, StepResult
from runbook.errors import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_OK

POLICY = ["logs:CreateLogStream, logs:PutLogEvents on arn:aws:logs:eu-central-1:123456789012:"
          "log-group:/aws/lambda/matbakh-cognito-post-confirmation:*",
          "secretsmanager:GetSecretValue on arn:aws:secretsmanager:eu-central-1:123456789012:"
          "secret:matbakh-db-postgres-AbCdEf"]


def console(*, terminal: bool = False, width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=terminal,
                   color_system="standard" if terminal else None, highlight=False)


def printed(out: Console) -> str:
    return out.file.getvalue()


def results() -> list[StepResult]:
    """An a1-a3 plan: one step unchanged, two with changes, one that could not be planned,
    one that needs it, one not built."""
    role = Change("create", "iam:role matbakh-cognito-post-confirmation-role", "create_role",
                  diff={"trust": "lambda.amazonaws.com", "policy": POLICY})
    pool = Change("update", "cognito-idp:user-pool matbakh-prod-users", "attach_trigger",
                  diff={"trigger PostConfirmation": {"from": None, "to": "arn:aws:lambda:x"}})
    rule = Change("create", "ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda",
                  "authorize", diff={"group": "sg-1", "port": 5432, "source": "sg-2"})
    return [
        StepResult("network", "a1"),
        StepResult("vpc-integrate", "a3", changes=[rule]),
        StepResult("fix-tables", "a3", status="failed", error_kind="input",
                   error="cannot connect to the cluster within 10 s"),
        StepResult("deploy-post-confirmation", "a3", status="not_run",
                   error="it needs fix-tables, which could not be planned"),
        StepResult("cognito", "a2", changes=[role, pool]),
        StepResult("integration-test", "a3", status="not_run", unbuilt=True,
                   error="step 'integration-test' is not built in this version of runbook"),
    ]


def plan(**overrides) -> dict:
    arguments = dict(env="prod", target="a3", by_phase=True, dry_run=False,
                     account="123456789012", region="eu-central-1")
    return render.plan_data(results(), **{**arguments, **overrides})


@pytest.mark.parametrize("diff, lines", [
    ({"cidr": "10.0.0.0/16"}, [(0, "cidr: 10.0.0.0/16")]),
    ({"custom:role": {"from": None, "to": "String"}}, [(0, "custom:role: (none) -> String")]),
    ({"environment": []}, [(0, "environment: (none)")]),
    ({"flows": ["A", "B"]}, [(0, "flows: A, B")]),
    ({"policy": POLICY}, [(0, "policy:"), (1, f"- {POLICY[0]}"), (1, f"- {POLICY[1]}")]),
    ({"tags": {"from": {"project": None, "owner": "a"}, "to": {"project": "matbakh", "owner": "a"}}},
     [(0, "tags.project: (none) -> matbakh")]),
    ({"policy": {"from": ["keep", "old"], "to": ["keep", "new"]}},
     [(0, "policy:"), (1, "- old"), (1, "+ new")]),
    ({"password_policy": {"min_length": 12}}, [(0, "password_policy.min_length: 12")]),
])
def test_a_diff_reads_one_field_per_line_and_a_long_list_one_item_per_line(diff, lines):
    assert render.diff_lines(diff) == lines


def test_plan_data_counts_actions_and_step_states_terraform_style():
    data = plan()
    assert data["summary"] == {"add": 2, "change": 1, "destroy": 0, "steps": {
        "changes": 2, "unchanged": 1, "cannot_plan": 1, "not_planned": 1, "skipped": 1}}
    assert [(s["name"], s["state"]) for s in data["steps"]] == [
        ("network", "unchanged"), ("vpc-integrate", "changes"), ("fix-tables", "cannot_plan"),
        ("deploy-post-confirmation", "not_planned"), ("cognito", "changes"),
        ("integration-test", "skipped")]
    assert data["steps"][2]["error"] == "cannot connect to the cluster within 10 s"
    assert data["steps"][5]["error"] is None
    assert data["run_first"] == ["a2"]
    json.dumps(data)  # plain data


def test_plan_text_shows_symbols_fields_and_the_summary_line_without_colour():
    out = console()
    render.print_plan(plan(), out)
    text = printed(out)
    assert "\x1b[" not in text
    assert "network (a1): no changes" in text
    assert "vpc-integrate (a3): 1 to add\n" \
           "  + ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda\n" \
           "      group: sg-1\n      port: 5432\n      source: sg-2\n" in text
    assert "cognito (a2): 1 to add, 1 to change" in text
    assert "  ~ cognito-idp:user-pool matbakh-prod-users\n" \
           "      trigger PostConfirmation: (none) -> arn:aws:lambda:x\n" in text
    assert "fix-tables (a3): cannot plan\n  cannot connect to the cluster within 10 s" in text
    assert "deploy-post-confirmation (a3): not planned: it needs fix-tables, which could not " \
           "be planned" in text
    assert "integration-test (a3): skipped: not built in this version of runbook" in text
    assert "Plan: 2 to add, 1 to change, 0 to destroy. 1 step unchanged, 1 could not be " \
           "planned, 1 not planned, 1 skipped (not built)." in text
    assert "run `runbook run --phase a2` first" in text


def test_long_values_wrap_under_their_field_within_the_width():
    out = console(width=80)
    render.print_plan(plan(), out)
    lines = printed(out).splitlines()
    policy = lines.index("      policy:")
    assert lines[policy + 1].startswith("        - logs:CreateLogStream")
    # The rest wraps two columns in, under the item, not back at the margin.
    assert lines[policy + 2].startswith(" " * 10) and lines[policy + 2][10] != " "
    body = [line for line in lines if not line.startswith(("Plan:", "`runbook run", "deploy-"))]
    assert max(len(line) for line in body) <= 80


def test_colour_appears_only_on_a_terminal():
    out = console(terminal=True)
    render.print_plan(plan(), out)
    text = printed(out)
    assert "\x1b[32m  + ec2:ingress-rule" in text       # green create
    assert "\x1b[33m  ~ cognito-idp:user-pool" in text  # yellow update
    assert "\x1b[1;31mfix-tables (a3): cannot plan" in text


def test_sql_is_printed_under_its_change_only_when_asked():
    migration = Change("create", "postgres:migration 0001_profiles.sql.j2", "migrate",
                       diff={"sha256": "ae7322a4df6b"}, detail="CREATE TABLE profiles (\n  id uuid\n);")
    step = StepResult("fix-tables", "a3", changes=[migration])
    without = render.plan_data([step], env="prod", target="fix-tables", by_phase=False,
                               dry_run=False, account="1", region="r")
    with_sql = render.plan_data([step], env="prod", target="fix-tables", by_phase=False,
                                dry_run=False, account="1", region="r", show_sql=True)
    assert "sql" not in without["steps"][0]["changes"][0]
    out = console()
    render.print_plan(with_sql, out)
    assert "      sql:\n        CREATE TABLE profiles (\n          id uuid\n        );" in printed(out)


def test_a_plan_of_steps_or_a_dry_run_names_no_phase_to_run_first():
    assert plan(by_phase=False)["run_first"] == []
    assert plan(dry_run=True)["run_first"] == []


def drift_of(steps: list[StepResult], plan_exit_code: int = EXIT_OK) -> dict:
    return drift.drift_data(steps, env="prod", account="123456789012", region="eu-central-1",
                            plan_exit_code=plan_exit_code)


def test_pending_changes_are_drift_with_exit_code_3_even_beside_a_step_not_planned():
    data = drift_of(results(), plan_exit_code=EXIT_BAD_INPUT)
    assert data["exit_code"] == EXIT_DRIFT == 3
    assert data["drift"] is True and data["drifted_steps"] == ["vpc-integrate", "cognito"]
    assert [s["state"] for s in data["steps"]] == [
        "in_sync", "drift", "cannot_plan", "not_planned", "drift", "skipped"]
    out = console()
    drift.print_drift(data, out)
    text = printed(out)
    assert "network (a1): in sync" in text
    assert "vpc-integrate (a3): drift: 1 to add\n  + ec2:ingress-rule matbakh-prod-db" in text
    assert "Drift in 2 steps: vpc-integrate, cognito." in text
    assert "`runbook run --step vpc-integrate`" in text
    assert "Not known, since not planned: fix-tables, deploy-post-confirmation." in text


def test_without_drift_the_exit_code_is_the_plans():
    converged = [StepResult("network", "a1"), StepResult("database", "a1")]
    assert drift_of(converged)["exit_code"] == 0
    unknown = converged + [StepResult("fix-tables", "a3", status="failed", error="no route")]
    data = drift_of(unknown, plan_exit_code=EXIT_BAD_INPUT)
    assert data["drift"] is False and data["exit_code"] == EXIT_BAD_INPUT
    out = console()
    drift.print_drift(data, out)
    assert "No drift: 2 steps in sync." in printed(out)


def test_a_step_that_is_not_idempotent_is_not_compared():
    acts = StepResult("integration-test", "a3", idempotent=False, changes=[
        Change("create", "cognito-idp:user test-user", "sign_up")])
    data = drift_of([StepResult("network", "a1"), acts])
    assert data["steps"][1]["state"] == "not_compared"
    assert data["drift"] is False and data["exit_code"] == 0
    out = console()
    drift.print_drift(data, out)
    assert "integration-test (a3): not compared: not idempotent" in printed(out)
