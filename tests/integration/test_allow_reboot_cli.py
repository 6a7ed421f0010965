"""`runbook run --allow-reboot`, live against a moto server: attaching the TLS parameter
group to an existing cluster leaves the members' restart pending, and the run says so in
its output and its report with the command that makes it, unless the operator allows the
reboot."""

from __future__ import annotations

import json

import boto3

from tests.conftest import REGION, read_report


def rds(endpoint):
    return boto3.client("rds", region_name=REGION, endpoint_url=endpoint)


def detach_the_group(endpoint) -> None:
    """Someone puts the cluster back on the default group (as the old scripts made it)."""
    rds(endpoint).modify_db_cluster(DBClusterIdentifier="matbakh-prod", ApplyImmediately=True,
                                    DBClusterParameterGroupName="default.aurora-postgresql16")


REBOOT_COMMAND = "runbook run --step database --allow-reboot --env prod"


def outputs_of(report, step="database"):
    return next(s["outputs"] for s in report["steps"] if s["name"] == step)


def changes_of(report, step="database"):
    return {c["resource"]: c["diff"] for s in report["steps"] if s["name"] == step
            for c in s["changes"]}


def test_the_reboot_is_pending_without_the_flag_and_made_with_it(moto_endpoint, workdir, cli):
    assert cli("run", "--phase", "a1").exit_code == 0
    detach_the_group(moto_endpoint)

    planned = cli("plan", "--step", "database", "--json")
    assert planned.exit_code == 0, planned.output
    [change] = [c for s in json.loads(planned.stdout)["steps"] for c in s["changes"]]
    assert change["diff"]["parameter_group"] == {"from": "default.aurora-postgresql16",
                                                 "to": "matbakh-prod-params"}
    assert REBOOT_COMMAND in change["diff"]["reboot"]

    without = cli("run", "--step", "database")
    assert without.exit_code == 0, without.output
    [line] = [text for text in without.output.splitlines() if "reboot pending" in text]
    assert "matbakh-prod-1" in line and "rds.force_ssl is not in force" in line
    assert REBOOT_COMMAND in line
    report = read_report(workdir, "database")
    diffs = changes_of(report)
    assert "pending" in diffs["rds:cluster matbakh-prod"]["reboot"]
    assert "rds:instance matbakh-prod-1" not in diffs
    assert outputs_of(report)["pending_reboot"] == ["matbakh-prod-1"]
    assert outputs_of(report)["reboot_command"] == REBOOT_COMMAND
    cluster = rds(moto_endpoint).describe_db_clusters()["DBClusters"][0]
    assert cluster["DBClusterParameterGroup"] == "matbakh-prod-params"

    detach_the_group(moto_endpoint)
    allowed = cli("run", "--step", "database", "--allow-reboot")
    assert allowed.exit_code == 0, allowed.output
    assert "reboot pending" not in allowed.output
    report = read_report(workdir, "database")
    assert "--allow-reboot" in changes_of(report)["rds:instance matbakh-prod-1"]["reboot"]
    assert outputs_of(report)["pending_reboot"] == []
    again = cli("run", "--step", "database", "--allow-reboot")
    assert again.exit_code == 0 and changes_of(read_report(workdir, "database")) == {}
