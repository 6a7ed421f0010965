"""`runbook run --allow-reboot`, live against a moto server: attaching the TLS parameter
group to an existing cluster leaves the writer's restart pending, and says how to make
it, unless the operator allows the reboot."""

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
    assert "runbook run --step database --allow-reboot --env prod" in change["diff"]["reboot"]

    without = cli("run", "--step", "database")
    assert without.exit_code == 0, without.output
    diffs = changes_of(read_report(workdir, "database"))
    assert "pending" in diffs["rds:cluster matbakh-prod"]["reboot"]
    assert "rds:instance matbakh-prod-1" not in diffs
    cluster = rds(moto_endpoint).describe_db_clusters()["DBClusters"][0]
    assert cluster["DBClusterParameterGroup"] == "matbakh-prod-params"

    detach_the_group(moto_endpoint)
    allowed = cli("run", "--step", "database", "--allow-reboot")
    assert allowed.exit_code == 0, allowed.output
    diffs = changes_of(read_report(workdir, "database"))
    assert "--allow-reboot" in diffs["rds:instance matbakh-prod-1"]["reboot"]
    again = cli("run", "--step", "database", "--allow-reboot")
    assert again.exit_code == 0 and changes_of(read_report(workdir, "database")) == {}
