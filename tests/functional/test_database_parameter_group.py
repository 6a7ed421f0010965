"""Step database's cluster parameter group (rds.force_ssl=1) against in-process moto:
made before the cluster and attached at create time, converged like the other resources,
attached to an existing cluster in the cluster's one ModifyDBCluster, with the reboots
left pending (and said so) unless --allow-reboot.

moto 5.2.5 is lax where AWS is not: it accepts any family, lists only the parameters set
on a custom group, and always shows a cluster member `in-sync` with its group. What
depends on what AWS shows instead (members `applying`, then `pending-reboot`, readers as
well as the writer) is tested at the end on plain data, as AWS describes it: the plans,
the waits around a reboot, and the check after apply.
"""

from __future__ import annotations

import boto3
import pytest

from runbook.aws.clients import ClientFactory
from runbook.aws.reachability import SecurityGroup
from runbook.engine import StepContext
from runbook.engine.step import Inputs
from runbook.steps import new_runner
from runbook.errors import PlanError, StepFailed
from runbook.output.progress import Progress
from runbook.resources.rds import InstanceFound, ParameterGroupFound, parse_cluster
from runbook.steps.database import (REBOOT_INTERVAL_S, REBOOT_TIMEOUT_S, DatabaseState,
                                    DatabaseStep, family, ready_to_reboot, reboot_blocked,
                                    rebooted)
from runbook.steps.network import NetworkOutputs
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


class Lines(Progress):
    """Progress that keeps the lines a person would see."""

    def __init__(self):
        super().__init__(quiet=True)
        self.lines = []

    def line(self, text="", **style):
        self.lines.append(text)


def run_database(config, *, allow_reboot=False, progress=None):
    aws = ClientFactory(REGION)
    runner = new_runner(config, aws, progress or Progress(quiet=True), sleep=lambda s: None,
                    allow_reboot=allow_reboot)
    [result] = runner.run(["database"])
    return result, [e["call"] for e in aws.journal.entries]


def cluster_without_the_group(config, *, readers=0, deletion_protection=True):
    """The cluster as the old shell scripts made it: default parameter group, one writer
    (and `readers` readers)."""
    subnets = run(config, ["network"])[0]["network"].outputs["subnet_ids"]
    rds().create_db_subnet_group(DBSubnetGroupName="matbakh-prod-subnets",
                                 DBSubnetGroupDescription="by hand", SubnetIds=subnets)
    rds().create_db_cluster(DBClusterIdentifier="matbakh-prod", Engine="aurora-postgresql",
                            EngineVersion="16.8", MasterUsername="postgres",
                            MasterUserPassword="x" * 20, DBSubnetGroupName="matbakh-prod-subnets",
                            StorageEncrypted=True, EnableIAMDatabaseAuthentication=True,
                            DeletionProtection=deletion_protection,
                            ServerlessV2ScalingConfiguration={
                                "MinCapacity": 0.5, "MaxCapacity": 4.0})
    for number in range(1, readers + 2):
        rds().create_db_instance(DBInstanceIdentifier=f"matbakh-prod-{number}",
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


REBOOT_COMMAND = "runbook run --step database --allow-reboot --env prod"


def test_an_existing_cluster_gets_the_group_and_the_run_says_the_reboot_is_pending(account,
                                                                                    config):
    cluster_without_the_group(config, readers=1)
    progress = Lines()

    result, calls = run_database(config, progress=progress)

    assert result.status == "ok", result.error
    [attach] = [c for c in result.changes if "parameter_group" in c.diff]
    assert attach.resource == "rds:cluster matbakh-prod" and attach.op == "update_cluster"
    assert attach.diff["parameter_group"]["to"] == GROUP
    assert "pending" in attach.diff["reboot"] and REBOOT_COMMAND in attach.diff["reboot"]
    assert "rds:RebootDBInstance" not in calls
    assert calls.index("rds:ModifyDBClusterParameterGroup") < calls.index("rds:ModifyDBCluster")
    assert cluster()["DBClusterParameterGroup"] == GROUP
    # moto shows both members in-sync at once; no member runs a group attached without
    # a restart, and the run says so, with the command, in its output and its outputs.
    assert result.outputs["pending_reboot"] == ["matbakh-prod-1", "matbakh-prod-2"]
    assert result.outputs["reboot_command"] == REBOOT_COMMAND
    [line] = [text for text in progress.lines if "reboot pending" in text]
    assert "matbakh-prod-1, matbakh-prod-2 have yet to restart" in line
    assert "rds.force_ssl is not in force" in line and REBOOT_COMMAND in line
    assert run_database(config)[1] == []


def test_the_group_goes_in_the_same_modify_db_cluster_as_the_other_cluster_changes(account,
                                                                                    config):
    """Two ModifyDBCluster back to back: AWS may refuse the second while the cluster is
    still `modifying` (InvalidDBClusterStateFault)."""
    cluster_without_the_group(config, deletion_protection=False)

    result, calls = run_database(config)

    assert result.status == "ok", result.error
    [change] = [c for c in result.changes if c.resource == "rds:cluster matbakh-prod"
                and c.op != "tag_rds"]
    assert change.diff["deletion_protection"] == {"from": False, "to": True}
    assert change.diff["parameter_group"]["to"] == GROUP
    assert "pending" in change.diff["reboot"]
    assert calls.count("rds:ModifyDBCluster") == 1
    assert cluster()["DeletionProtection"] is True
    assert cluster()["DBClusterParameterGroup"] == GROUP
    assert run_database(config)[1] == []


def test_with_allow_reboot_each_member_is_rebooted_after_the_group_is_attached(account,
                                                                              config):
    """The writer first, always; the reader once the writer is back, only if it still shows
    pending-reboot: moto shows it in-sync, so it is left alone and not counted."""
    cluster_without_the_group(config, readers=1)

    result, calls = run_database(config, allow_reboot=True)

    assert result.status == "ok", result.error
    reboots = [c for c in result.changes if c.op == "reboot_instance"]
    assert [(c.resource, c.args["unless_in_sync"]) for c in reboots] == [
        ("rds:instance matbakh-prod-1", False), ("rds:instance matbakh-prod-2", True)]
    assert "writer" in reboots[0].diff["reboot"]
    assert "reader" in reboots[1].diff["reboot"] and "still" in reboots[1].diff["reboot"]
    assert calls.index("rds:ModifyDBCluster") < calls.index("rds:RebootDBInstance")
    assert calls.count("rds:RebootDBInstance") == 1
    assert result.applied == len(result.changes) - 1
    assert result.outputs["pending_reboot"] == [] and "reboot_command" not in result.outputs
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

NETWORK = NetworkOutputs(vpc_id="vpc-1", vpc_cidr="10.0.0.0/16",
                         subnet_ids=("subnet-a", "subnet-b"), route_table_ids=("rtb-a", "rtb-b"),
                         availability_zones=("eu-central-1a", "eu-central-1b"))


def database_step(ctx):
    return DatabaseStep(ctx, Inputs("database", ("network",), lambda name: NETWORK))


def plan_of(config, cluster_item, *, allow_reboot, plan_only=True):
    progress = Lines()
    ctx = StepContext(config, aws=None, progress=progress, upstream=None,
                      allow_reboot=allow_reboot, plan_only=plan_only)
    step = database_step(ctx)
    state = step.state(SecurityGroup("sg-1", "matbakh-prod-db"), None,
                       ParameterGroupFound(GROUP, {}, "arn:pg", "aurora-postgresql16", "1",
                                           "dynamic"),
                       parse_cluster(cluster_item), [InstanceFound("matbakh-prod-1", {}, "arn:i")])
    return step.plan(state), progress.lines


GROUP_OPS = ("create_parameter_group", "set_force_ssl", "update_cluster")


def member(name, status, writer=False):
    return {"DBInstanceIdentifier": name, "IsClusterWriter": writer,
            "DBClusterParameterGroupStatus": status}


def aws_cluster(status, *readers):
    """DescribeDBClusters as AWS answers after the group was attached in an earlier run:
    the writer in `status`, then readers given as (name, status)."""
    return {"DBClusterIdentifier": "matbakh-prod", "DBClusterArn": "arn:c",
            "Engine": "aurora-postgresql", "EngineVersion": "16.8", "StorageEncrypted": True,
            "Status": "available", "DBSubnetGroup": "matbakh-prod-subnets",
            "DBClusterParameterGroup": GROUP, "DeletionProtection": True,
            "IAMDatabaseAuthenticationEnabled": True,
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 4.0},
            "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-1"}],
            "DBClusterMembers": [member(name, status) for name, status in readers]
            + [member("matbakh-prod-1", status, writer=True)]}


@pytest.mark.parametrize("allow_reboot, reboots", [(True, ["matbakh-prod-1"]), (False, [])])
def test_a_writer_aws_shows_pending_reboot_is_rebooted_only_when_allowed(config, allow_reboot,
                                                                          reboots):
    changes, lines = plan_of(config, aws_cluster("pending-reboot"), allow_reboot=allow_reboot)

    assert [c.args["identifier"] for c in changes if c.op == "reboot_instance"] == reboots
    assert [c.op for c in changes if c.op in GROUP_OPS] == []
    if not allow_reboot:
        [line] = lines
        assert "reboot pending: matbakh-prod-1" in line and "--allow-reboot" in line


# (writer's status, readers', --allow-reboot) -> reboots planned, in order, with unless_in_sync
REBOOT_PLANS = [
    ("pending-reboot", [("matbakh-prod-2", "pending-reboot")], True,
     [("matbakh-prod-1", True), ("matbakh-prod-2", True)]),
    ("in-sync", [("matbakh-prod-2", "pending-reboot")], True, [("matbakh-prod-2", True)]),
    ("applying", [("matbakh-prod-2", "in-sync")], True, [("matbakh-prod-1", True)]),
    ("in-sync", [("matbakh-prod-2", "in-sync"), ("matbakh-prod-3", "applying")], True,
     [("matbakh-prod-3", True)]),
    ("pending-reboot", [("matbakh-prod-2", "pending-reboot")], False, []),
    ("in-sync", [("matbakh-prod-2", "in-sync")], True, []),
]


@pytest.mark.parametrize("writer, readers, allow_reboot, reboots", REBOOT_PLANS)
def test_every_member_aws_shows_not_in_force_is_rebooted_writer_first(config, writer, readers,
                                                                       allow_reboot, reboots):
    """Readers too: on Aurora PostgreSQL 15.2, 14.7, 13.10, 12.14 and 11.x each replica
    needs its own reboot; whatever the version, the member's status says."""
    changes, _ = plan_of(config, aws_cluster(writer, *readers), allow_reboot=allow_reboot)

    assert [(c.args["identifier"], c.args["unless_in_sync"]) for c in changes
            if c.op == "reboot_instance"] == reboots


def test_a_plan_names_every_member_left_to_restart_and_the_command(config):
    changes, lines = plan_of(config, aws_cluster("pending-reboot", ("matbakh-prod-2", "applying")),
                             allow_reboot=False)

    assert [c for c in changes if c.op == "reboot_instance"] == []
    [line] = lines
    assert "matbakh-prod-1, matbakh-prod-2 have yet to restart" in line
    assert REBOOT_COMMAND in line


def test_a_run_says_the_pending_reboot_after_apply_not_at_plan(config):
    _, lines = plan_of(config, aws_cluster("pending-reboot"), allow_reboot=False, plan_only=False)
    assert lines == []


def test_a_writer_in_sync_with_its_group_plans_nothing(config):
    changes, lines = plan_of(config, aws_cluster("in-sync"), allow_reboot=True)
    assert [c.op for c in changes if c.op in GROUP_OPS + ("reboot_instance",)] == []
    assert lines == []


# (writer, readers, attached in this run, --allow-reboot) -> outputs' pending_reboot
PENDING_OUTPUTS = [
    ("pending-reboot", [], [], False, ["matbakh-prod-1"]),
    ("in-sync", [("matbakh-prod-2", "pending-reboot")], [], False, ["matbakh-prod-2"]),
    ("applying", [("matbakh-prod-2", "in-sync")], [], False, ["matbakh-prod-1"]),
    ("in-sync", [("matbakh-prod-2", "in-sync")], [], False, []),
    # attached without a reboot: pending whatever AWS shows just after
    ("in-sync", [("matbakh-prod-2", "in-sync")], ["matbakh-prod-1", "matbakh-prod-2"], False,
     ["matbakh-prod-1", "matbakh-prod-2"]),
    # ... but a member made after the attach starts with the group
    ("in-sync", [("matbakh-prod-2", "in-sync")], ["matbakh-prod-1"], False, ["matbakh-prod-1"]),
    # with --allow-reboot the members were rebooted: their status says
    ("in-sync", [("matbakh-prod-2", "in-sync")], ["matbakh-prod-1", "matbakh-prod-2"], True, []),
]


@pytest.mark.parametrize("writer, readers, attached, allow_reboot, pending", PENDING_OUTPUTS)
def test_the_pending_reboot_is_an_output_not_a_change(config, writer, readers, attached,
                                                      allow_reboot, pending):
    ctx = StepContext(config, aws=None, progress=Progress(quiet=True), upstream=None,
                      allow_reboot=allow_reboot)
    cluster = parse_cluster(aws_cluster(writer, *readers))
    cluster.attached = attached
    state = DatabaseState(found={"cluster": cluster})
    outputs = DatabaseStep(ctx).outputs(state)
    assert list(outputs.pending_reboot) == pending
    assert outputs.reboot_command == (REBOOT_COMMAND if pending else None)


# -- the waits around a reboot and the check after apply, on AWS's states ----------------

def status(group, instance="available", cluster="available"):
    """What a reboot waits on, as DatabaseStep._member_status reads it from AWS."""
    return {"cluster": cluster, "instance": instance, "group": group}


# status -> (ready to reboot, rebooted, why waiting is pointless)
MEMBER_STATES = [
    (status("applying"), (False, False, None)),
    (status("pending-reboot"), (True, False, None)),
    (status("in-sync"), (True, True, None)),
    (status("pending-reboot", cluster="modifying"), (False, False, None)),
    (status("pending-reboot", instance="rebooting"), (False, False, None)),
    (status("in-sync", instance="rebooting"), (False, False, None)),
    (status("pending-reboot", instance="failed"), (False, False, "the instance is failed")),
    (status(None, instance="deleted"), (False, False, "the instance is deleted")),
    (status(None), (False, False, "it is not a member of the cluster")),
]


@pytest.mark.parametrize("state, expected", MEMBER_STATES)
def test_a_member_is_rebooted_only_once_it_shows_pending_reboot(state, expected):
    assert (ready_to_reboot(state), rebooted(state), reboot_blocked(state)) == expected


def waiting_step(config, *, clock=lambda: 0.0, allow_reboot=True):
    progress, slept = Lines(), []
    ctx = StepContext(config, aws=None, progress=progress, upstream=None, sleep=slept.append,
                      clock=clock, allow_reboot=allow_reboot)
    return DatabaseStep(ctx), progress, slept


def test_the_wait_before_a_reboot_polls_through_applying_with_progress(config):
    step, progress, slept = waiting_step(config)
    reads = [status("applying"), status("applying"), status("pending-reboot")]

    found = step._wait(lambda: reads.pop(0), ready_to_reboot, "matbakh-prod-1 to show it",
                       "rds:instance matbakh-prod-1", failed=reboot_blocked)

    assert found["group"] == "pending-reboot" and reads == []
    assert slept == [REBOOT_INTERVAL_S, REBOOT_INTERVAL_S]
    assert progress.lines == ["  waiting for matbakh-prod-1 to show it ... 0s"]


def test_a_member_that_never_comes_back_in_sync_fails_the_step_when_the_wait_ends(config):
    now = [0.0]

    def sleep_and_tick(seconds):
        now[0] += seconds

    step, _, _ = waiting_step(config, clock=lambda: now[0])
    step.ctx.sleep = sleep_and_tick

    with pytest.raises(StepFailed, match="rds:instance matbakh-prod-1.*still not ready"):
        step._wait(lambda: status("pending-reboot"), rebooted, "matbakh-prod-1 to restart",
                   "rds:instance matbakh-prod-1", failed=reboot_blocked)
    assert now[0] >= REBOOT_TIMEOUT_S


def test_a_failed_instance_ends_the_wait_at_once(config):
    step, _, slept = waiting_step(config)
    with pytest.raises(StepFailed, match="the instance is failed"):
        step._wait(lambda: status("pending-reboot", instance="failed"), rebooted,
                   "matbakh-prod-1 to restart", "rds:instance matbakh-prod-1",
                   failed=reboot_blocked)
    assert slept == []


# (writer, readers, --allow-reboot) -> the step fails (with what), or the line said
IN_FORCE_CHECKS = [
    ("in-sync", [("matbakh-prod-2", "in-sync")], True, None, None),
    ("in-sync", [("matbakh-prod-2", "pending-reboot")], True,
     "matbakh-prod-2 (pending-reboot) still not in-sync", None),
    ("pending-reboot", [], True, "matbakh-prod-1 (pending-reboot) still not in-sync", None),
    ("failed-to-apply", [], True, "matbakh-prod-1 (failed-to-apply)", None),
    ("pending-reboot", [("matbakh-prod-2", "pending-reboot")], False, None,
     "matbakh-prod-1, matbakh-prod-2 have yet to restart"),
    ("in-sync", [], False, None, None),
]


@pytest.mark.parametrize("writer, readers, allow_reboot, failure, said", IN_FORCE_CHECKS)
def test_after_apply_a_member_out_of_sync_fails_with_allow_reboot_and_is_said_without(
        config, writer, readers, allow_reboot, failure, said):
    step, progress, _ = waiting_step(config, allow_reboot=allow_reboot)
    state = DatabaseState(found={"cluster": parse_cluster(aws_cluster(writer, *readers))})

    if failure:
        with pytest.raises(StepFailed, match="rds.force_ssl is not in force") as error:
            step._check_in_force(state)
        assert failure in str(error.value)
    else:
        step._check_in_force(state)
    lines = [text for text in progress.lines if "reboot pending" in text]
    assert lines == ([] if said is None else [lines[0]])
    if said:
        assert said in lines[0] and REBOOT_COMMAND in lines[0]


def test_plan_error_names_the_field(config):
    ctx = StepContext(config, aws=None, progress=Progress(quiet=True), upstream=None)
    step = database_step(ctx)
    state = step.state(None, None, ParameterGroupFound(GROUP, {}, "arn:pg", "aurora-postgresql15",
                                                       "1"), None, [])
    with pytest.raises(PlanError, match="database.parameter_group"):
        step.plan(state)


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
    [first] = new_runner(config, aws, Progress(quiet=True), sleep=lambda s: None,
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


@pytest.mark.parametrize("lost", [False, True], ids=["refused", "answer-lost"])
def test_a_run_that_fails_at_the_one_modify_db_cluster_is_finished_by_the_next(account, config,
                                                                              lost):
    """The ModifyDBCluster that carries a cluster repair and the group together: refused,
    the next run sends both again in one call; lost (carried out), the next run finds
    both done and writes nothing to the cluster."""
    from botocore.exceptions import ConnectionClosedError

    cluster_without_the_group(config, readers=1, deletion_protection=False)

    def refuse(service, op, write):
        if op == "ModifyDBCluster" and not lost:
            raise ConnectionClosedError(endpoint_url="refused before it was sent")

    def lose(service, op, write, response):
        if op == "ModifyDBCluster" and lost:
            raise ConnectionClosedError(endpoint_url="answer lost")

    aws = ClientFactory(REGION, interceptors=[refuse], after_interceptors=[lose])
    [first] = new_runner(config, aws, Progress(quiet=True), sleep=lambda s: None).run(["database"])
    assert first.status == "failed" and "rds:cluster matbakh-prod" in first.error

    second, calls = run_database(config)

    assert second.status == "ok", second.error
    assert calls.count("rds:ModifyDBCluster") == (0 if lost else 1)
    assert cluster()["DeletionProtection"] is True
    assert cluster()["DBClusterParameterGroup"] == GROUP
    assert run_database(config)[1] == []
