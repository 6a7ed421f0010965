"""Step database's cluster parameter group (rds.force_ssl=1) against in-process moto:
made before the cluster and attached at create time, converged like the other resources,
attached to an existing cluster with the reboot left pending unless --allow-reboot.

moto 5.2.5 is lax where AWS is not: it accepts any family, lists only the parameters set
on a custom group, and always shows a cluster member `in-sync` with its group. The plans
that depend on what AWS shows instead (a writer `pending-reboot`) are tested as pure
plans at the end, on state as AWS describes it.
"""

from __future__ import annotations

import boto3
import pytest

from runbook.aws import ClientFactory
from runbook.engine import Runner, StepContext
from runbook.errors import PlanError
from runbook.progress import Progress
from runbook.steps.database import DatabaseState, DatabaseStep, family
from tests.conftest import REGION
from tests.functional.conftest import run_steps as run

GROUP = "matbakh-prod-params"


def rds():
    return boto3.client("rds", region_name=REGION)


def force_ssl(group=GROUP):
    params = rds().describe_db_cluster_parameters(DBClusterParameterGroupName=group)["Parameters"]
    return {p["ParameterName"]: p["ParameterValue"] for p in params}.get("rds.force_ssl")


def cluster():
    return rds().describe_db_clusters(DBClusterIdentifier="matbakh-prod")["DBClusters"][0]


def run_database(config, *, allow_reboot=False):
    aws = ClientFactory(REGION)
    runner = Runner(config, aws, Progress(quiet=True), sleep=lambda s: None,
                    allow_reboot=allow_reboot)
    [result] = runner.run(["database"])
    return result, [e["call"] for e in aws.journal.entries]


def cluster_without_the_group(config):
    """The cluster as the old shell scripts made it: default parameter group, one writer."""
    subnets = run(config, ["network"])[0]["network"].outputs["subnet_ids"]
    rds().create_db_subnet_group(DBSubnetGroupName="matbakh-prod-subnets",
                                 DBSubnetGroupDescription="by hand", SubnetIds=subnets)
    rds().create_db_cluster(DBClusterIdentifier="matbakh-prod", Engine="aurora-postgresql",
                            EngineVersion="16.8", MasterUsername="postgres",
                            MasterUserPassword="x" * 20, DBSubnetGroupName="matbakh-prod-subnets",
                            StorageEncrypted=True, EnableIAMDatabaseAuthentication=True,
                            DeletionProtection=True, ServerlessV2ScalingConfiguration={
                                "MinCapacity": 0.5, "MaxCapacity": 4.0})
    rds().create_db_instance(DBInstanceIdentifier="matbakh-prod-1",
                             DBClusterIdentifier="matbakh-prod", Engine="aurora-postgresql",
                             DBInstanceClass="db.serverless", PubliclyAccessible=False)
    assert cluster()["DBClusterParameterGroup"] != GROUP


def test_family_follows_the_major_version():
    assert family("16.8") == "aurora-postgresql16"
    assert family("15.10") == "aurora-postgresql15"
    assert family("17") == "aurora-postgresql17"


def test_a_new_cluster_is_created_with_the_tls_parameter_group_attached(account, config):
    results, aws = run(config, ["network", "database"])

    assert results["database"].status == "ok", results["database"].error
    group = rds().describe_db_cluster_parameter_groups(
        DBClusterParameterGroupName=GROUP)["DBClusterParameterGroups"][0]
    assert group["DBParameterGroupFamily"] == "aurora-postgresql16"
    assert force_ssl() == "1"
    tags = {t["Key"]: t["Value"] for t in rds().list_tags_for_resource(
        ResourceName=group["DBClusterParameterGroupArn"])["TagList"]}
    assert tags["runbook:env"] == "prod" and tags["runbook:step"] == "database"
    assert cluster()["DBClusterParameterGroup"] == GROUP
    calls = [e["call"] for e in aws.journal.entries]
    # Made before the cluster, attached by CreateDBCluster: no ModifyDBCluster, no reboot.
    assert calls.index("rds:ModifyDBClusterParameterGroup") < calls.index("rds:CreateDBCluster")
    assert "rds:ModifyDBCluster" not in calls and "rds:RebootDBInstance" not in calls
    assert results["database"].outputs["pending_reboot"] == []


def test_second_apply_of_the_parameter_group_makes_no_write(account, config):
    run(config, ["network", "database"])

    result, calls = run_database(config, allow_reboot=True)

    assert result.status == "ok" and result.changes == [] and calls == []
    assert result.api_calls["write"] == 0


def test_a_group_set_back_to_no_tls_is_set_to_1_again_and_then_rests(account, config):
    run(config, ["network", "database"])
    rds().modify_db_cluster_parameter_group(DBClusterParameterGroupName=GROUP, Parameters=[
        {"ParameterName": "rds.force_ssl", "ParameterValue": "0", "ApplyMethod": "immediate"}])

    result, calls = run_database(config)

    [change] = result.changes
    assert change.resource == f"rds:cluster-parameter-group {GROUP}"
    assert change.diff == {"rds.force_ssl": {"from": "0", "to": "1"}}
    assert calls == ["rds:ModifyDBClusterParameterGroup"]
    assert force_ssl() == "1"
    assert run_database(config)[1] == []


def test_an_existing_cluster_gets_the_group_and_the_reboot_is_left_pending(account, config):
    cluster_without_the_group(config)

    result, calls = run_database(config)

    assert result.status == "ok", result.error
    attach = next(c for c in result.changes if c.op == "attach_parameter_group")
    assert attach.diff["parameter_group"]["to"] == GROUP
    assert "pending" in attach.diff["reboot"] and "--allow-reboot" in attach.diff["reboot"]
    assert "rds:RebootDBInstance" not in calls
    assert calls.index("rds:ModifyDBClusterParameterGroup") < calls.index("rds:ModifyDBCluster")
    assert cluster()["DBClusterParameterGroup"] == GROUP
    assert run_database(config)[1] == []


def test_with_allow_reboot_the_writer_is_rebooted_after_the_group_is_attached(account, config):
    cluster_without_the_group(config)

    result, calls = run_database(config, allow_reboot=True)

    assert result.status == "ok", result.error
    reboot = next(c for c in result.changes if c.op == "reboot_instance")
    assert reboot.resource == "rds:instance matbakh-prod-1"
    assert calls.index("rds:ModifyDBCluster") < calls.index("rds:RebootDBInstance")
    assert calls.count("rds:RebootDBInstance") == 1
    again, calls = run_database(config, allow_reboot=True)
    assert again.changes == [] and calls == []


def test_a_group_of_another_family_is_refused_before_any_write(account, config):
    run(config, ["network"])
    rds().create_db_cluster_parameter_group(DBClusterParameterGroupName=GROUP,
                                            DBParameterGroupFamily="aurora-postgresql15",
                                            Description="by hand")

    result, calls = run_database(config)

    assert result.error_kind == "input" and calls == []
    assert "aurora-postgresql15" in result.error and "database.parameter_group" in result.error


def test_the_group_name_comes_from_the_environment_file(account, write_config):
    from runbook import config as config_mod

    def rename(data):
        data["database"]["parameter_group"] = "tls-only"

    config = config_mod.load(write_config(rename))
    run(config, ["network", "database"])
    assert cluster()["DBClusterParameterGroup"] == "tls-only"
    assert force_ssl("tls-only") == "1"


# -- what AWS shows and moto does not: a writer pending reboot ---------------------------

def plan_of(config, cluster_item, *, allow_reboot):
    lines = []

    class Lines(Progress):
        def line(self, text="", **style):
            lines.append(text)

    ctx = StepContext(config, aws=None, progress=Lines(), upstream=None,
                      allow_reboot=allow_reboot)
    state = DatabaseState("vpc-1", ["subnet-a", "subnet-b"],
                          security_group={"id": "sg-1", "tags": {}},
                          subnet_group=None, cluster=cluster_item,
                          instances=[{"DBInstanceIdentifier": "matbakh-prod-1",
                                      "DBInstanceArn": "arn:i", "TagList": []}],
                          parameter_group={"arn": "arn:pg", "family": "aurora-postgresql16",
                                           "tags": {}, "value": "1", "apply_type": "dynamic"})
    return DatabaseStep(ctx).plan(state), lines


GROUP_OPS = ("create_parameter_group", "set_force_ssl", "attach_parameter_group")


def aws_cluster(status):
    """DescribeDBClusters as AWS answers after the group was attached in an earlier run."""
    return {"DBClusterIdentifier": "matbakh-prod", "DBClusterArn": "arn:c",
            "Engine": "aurora-postgresql", "EngineVersion": "16.8", "StorageEncrypted": True,
            "Status": "available", "DBSubnetGroup": "matbakh-prod-subnets",
            "DBClusterParameterGroup": GROUP, "DeletionProtection": True,
            "IAMDatabaseAuthenticationEnabled": True,
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 4.0},
            "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-1"}],
            "DBClusterMembers": [{"DBInstanceIdentifier": "matbakh-prod-1",
                                  "IsClusterWriter": True,
                                  "DBClusterParameterGroupStatus": status}]}


@pytest.mark.parametrize("allow_reboot, reboots", [(True, ["matbakh-prod-1"]), (False, [])])
def test_a_writer_aws_shows_pending_reboot_is_rebooted_only_when_allowed(config, allow_reboot,
                                                                          reboots):
    changes, lines = plan_of(config, aws_cluster("pending-reboot"), allow_reboot=allow_reboot)

    assert [c.args["identifier"] for c in changes if c.op == "reboot_instance"] == reboots
    assert [c.op for c in changes if c.op in GROUP_OPS] == []
    if not allow_reboot:
        [line] = lines
        assert "reboot pending: matbakh-prod-1" in line and "--allow-reboot" in line


def test_a_writer_in_sync_with_its_group_plans_nothing(config):
    changes, lines = plan_of(config, aws_cluster("in-sync"), allow_reboot=True)
    assert [c.op for c in changes if c.op in GROUP_OPS + ("reboot_instance",)] == []
    assert lines == []


def test_the_pending_reboot_is_an_output_not_a_change(config):
    ctx = StepContext(config, aws=None, progress=Progress(quiet=True), upstream=None)
    state = DatabaseState("vpc-1", [], cluster=aws_cluster("pending-reboot"))
    assert DatabaseStep(ctx).outputs(state)["pending_reboot"] == ["matbakh-prod-1"]


def test_plan_error_names_the_field(config):
    ctx = StepContext(config, aws=None, progress=Progress(quiet=True), upstream=None)
    state = DatabaseState("vpc-1", [], parameter_group={
        "arn": "arn:pg", "family": "aurora-postgresql15", "tags": {}, "value": "1",
        "apply_type": None})
    with pytest.raises(PlanError, match="database.parameter_group"):
        DatabaseStep(ctx).plan(state)


# -- a run that stops at one of the new writes is finished by the next ------------------

NEW_WRITES = ["CreateDBClusterParameterGroup", "ModifyDBClusterParameterGroup",
              "ModifyDBCluster", "RebootDBInstance"]


@pytest.mark.parametrize("lost", [False, True], ids=["refused", "answer-lost"])
@pytest.mark.parametrize("operation", NEW_WRITES)
def test_a_run_that_fails_at_a_new_write_is_finished_by_the_next(account, config, operation,
                                                                 lost):
    """Refused: the call is not carried out. Answer lost: it is, and runbook sees an
    error. Either way the next run (with --allow-reboot, as the first) converges, and the
    one after it makes no write. A reboot that failed is not made again on moto, which
    shows the writer in-sync; AWS shows it pending-reboot, and the next run reboots it
    (test_a_writer_aws_shows_pending_reboot_is_rebooted_only_when_allowed)."""
    from botocore.exceptions import ConnectionClosedError

    cluster_without_the_group(config)
    fired = []

    def refuse(service, op, write):
        if op == operation and not lost:
            fired.append(op)
            raise ConnectionClosedError(endpoint_url="refused before it was sent")

    def lose(service, op, write, response):
        if op == operation and lost:
            fired.append(op)
            raise ConnectionClosedError(endpoint_url="answer lost")

    aws = ClientFactory(REGION, interceptors=[refuse], after_interceptors=[lose])
    [first] = Runner(config, aws, Progress(quiet=True), sleep=lambda s: None,
                     allow_reboot=True).run(["database"])
    assert first.status == "failed" and fired == [operation], first.error

    second, _ = run_database(config, allow_reboot=True)
    third, calls = run_database(config, allow_reboot=True)

    assert second.status == "ok", second.error
    assert third.status == "ok" and calls == []
    assert cluster()["DBClusterParameterGroup"] == GROUP and force_ssl() == "1"
    group = rds().describe_db_cluster_parameter_groups(
        DBClusterParameterGroupName=GROUP)["DBClusterParameterGroups"]
    assert len(group) == 1
