"""`runbook destroy` and `runbook plan --destroy` as an operator types them, against
in-process moto: the confirmation, the exit codes, the report, and a second destroy
that has nothing left to do."""

from __future__ import annotations

import io
import json

import boto3
import jsonschema
import pytest

from runbook import config as config_mod
from runbook.output.report import load_schema
from tests.conftest import REGION, REPO
from tests.functional.conftest import run_steps

STAGING_CONFIG = REPO / "config" / "staging.yaml"


@pytest.fixture
def staging(account, workdir):
    """staging's network made in the account, config/staging.yaml in the checkout."""
    (workdir / "config" / "staging.yaml").write_text(STAGING_CONFIG.read_text())
    results, _ = run_steps(config_mod.load(STAGING_CONFIG), ["network"])
    assert results["network"].ok, results["network"].error
    return workdir


def staging_vpcs() -> list[str]:
    return [v["VpcId"] for v in boto3.client("ec2", region_name=REGION).describe_vpcs(
        Filters=[{"Name": "tag:runbook:env", "Values": ["staging"]}])["Vpcs"]]


def test_anything_but_the_environments_name_deletes_nothing(staging, cli, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("prod\n"))

    result = cli("destroy", "--env", "staging")

    assert result.exit_code == 1
    assert "Type the environment's name (staging) to destroy it" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert "- ec2:vpc matbakh-staging-vpc" in result.stdout
    assert len(staging_vpcs()) == 1
    assert not (staging / "reports" / "staging" / "destroy.json").exists()


def test_the_name_typed_destroys_and_a_second_destroy_has_nothing_to_do(staging, cli,
                                                                          monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("staging\n"))

    result = cli("destroy", "--env", "staging")

    assert result.exit_code == 0, result.stderr
    assert staging_vpcs() == []
    report = json.loads((staging / "reports" / "staging" / "destroy.json").read_text())
    jsonschema.validate(report, load_schema())
    network = next(s for s in report["steps"] if s["name"] == "network")
    assert network["status"] == "ok" and network["api_calls"]["write"] >= 11
    assert {c["action"] for c in network["changes"]} == {"delete"}
    assert report["destroy"]["remaining"] == [] and report["destroy"]["steps"][0] == "network"

    again = cli("destroy", "--env", "staging")    # no name asked: nothing to delete

    assert again.exit_code == 0, again.stderr
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in again.stdout
    report = json.loads((staging / "reports" / "staging" / "destroy.json").read_text())
    assert sum(s["api_calls"]["write"] for s in report["steps"]) == 0


def test_plan_destroy_reads_only_and_prints_json(staging, cli):
    result = cli("plan", "--destroy", "--env", "staging", "--json")

    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    [network] = [s for s in plan["steps"] if s["changes"]]
    assert network["name"] == "network"
    assert plan["summary"] == {"add": 0, "change": 0, "destroy": len(network["changes"]),
                               "kept": 0}
    assert len(staging_vpcs()) == 1


@pytest.mark.parametrize("args, message", [
    (("plan", "--destroy", "--step", "network"), "plan --destroy takes --phase, not --step"),
    (("destroy", "--phase", "a9"), "--phase a9: the environment file has no such phase"),
])
def test_bad_arguments_exit_2_naming_them(staging, cli, args, message):
    result = cli(*args, "--env", "staging")

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(staging_vpcs()) == 1


def test_an_interrupted_destroy_reports_how_far_it_got_and_the_next_one_finishes(
        staging, cli, monkeypatch):
    from runbook import teardown

    delete, calls = teardown.Destroyer._delete, []

    def interrupted_at_the_third(self, item, plan):
        calls.append(item.title)
        if len(calls) == 3:
            raise KeyboardInterrupt
        delete(self, item, plan)

    monkeypatch.setattr(teardown.Destroyer, "_delete", interrupted_at_the_third)
    result = cli("destroy", "--env", "staging", "--yes")

    assert result.exit_code == 130
    report = json.loads((staging / "reports" / "staging" / "destroy.json").read_text())
    jsonschema.validate(report, load_schema())
    assert report["status"] == "interrupted"
    network = next(s for s in report["steps"] if s["name"] == "network")
    assert [c["resource"] for c in network["changes"]] == calls[:2]
    deleted = {e["call"] for e in report["journal"]}
    assert deleted and all(call.startswith("ec2:") for call in deleted)
    assert len(staging_vpcs()) == 1

    monkeypatch.setattr(teardown.Destroyer, "_delete", delete)
    again = cli("destroy", "--env", "staging", "--yes")

    assert again.exit_code == 0, again.stderr
    assert staging_vpcs() == []
    assert f"- {calls[2]}" in again.stdout and f"- {calls[0]}" not in again.stdout


def test_an_adopted_vpc_is_kept_and_the_report_says_so(account, workdir, cli):
    (workdir / "config" / "staging.yaml").write_text(STAGING_CONFIG.read_text())
    config = config_mod.load(STAGING_CONFIG)
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.create_vpc(CidrBlock=config.network.cidr)["Vpc"]["VpcId"]  # the old scripts'
    results, _ = run_steps(config, ["network"])
    assert results["network"].ok, results["network"].error

    result = cli("destroy", "--env", "staging", "--yes")

    assert result.exit_code == 0, result.stderr
    # runbook named it when it adopted it (it had no Name), and never marked it created.
    title = f"ec2:vpc matbakh-staging-vpc ({vpc_id})"
    assert f"= {title} kept: adopted" in result.stdout
    report = json.loads((workdir / "reports" / "staging" / "destroy.json").read_text())
    network = next(s for s in report["steps"] if s["name"] == "network")
    assert network["kept"] == [{"resource": title, "why": (
        "adopted: runbook did not create it (no runbook:created tag)")}]
    assert staging_vpcs() == [vpc_id]
    assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"] == []
    assert report["destroy"]["remaining"] == []
