"""Step db-proxy against in-process moto (with the sandbox's CreateDBProxy fix,
runbook.sandbox.rds_proxy): what a first apply makes, read back from the account; that a
second apply makes no mutating call; that vpc-integrate keeps the cluster group's rule
from the proxy; that a lost answer to RegisterDBProxyTargets does not register the
cluster twice; that a duplicate registration is refused; that the wait reports progress
and names an UNAVAILABLE target's reason."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError

from runbook import config as config_mod
from runbook.aws import naming
from runbook.aws.clients import ClientFactory
from runbook.output.progress import Progress
from runbook.sandbox import rds_proxy as sandbox_rds_proxy
from runbook.steps import new_runner
from tests.conftest import REGION
from tests.functional.conftest import Clock

STEP = "db-proxy"
ROLES = {"lambda_writer": {"write": ["app", "audit"]},
         "matbakh_post_confirmation": {"trigger": "post-confirmation"}}


@pytest.fixture(autouse=True)
def _sandbox_proxy():
    sandbox_rds_proxy.install()


@pytest.fixture
def config(write_config):
    """config/prod.yaml with database.roles and step db-proxy after vpc-integrate (a4 and
    a5, whose steps need the a3 steps left out, are left out too)."""
    def change(data):
        del data["phases"]["a4"], data["phases"]["a5"]
        data["database"]["roles"] = ROLES
        data["phases"]["a3"] = ["vpc-integrate", STEP]

    return config_mod.load(write_config(change))


class Lines(Progress):
    """Progress that keeps the wait lines."""

    def __init__(self):
        super().__init__(quiet=True)
        self.waits: list[str] = []

    def waiting(self, what, elapsed):
        self.waits.append(what)


def run(config, names, *, progress=None, aws=None):
    """The steps, with a fresh factory, as a separate `runbook` invocation would run them."""
    aws = aws or ClientFactory(REGION)
    clock = Clock()
    runner = new_runner(config, aws, progress or Progress(quiet=True), sleep=clock.sleep,
                        clock=clock)
    return {r.name: r for r in runner.run(names)}, aws


@pytest.fixture
def applied(account, config):
    results, _ = run(config, ["network", "database", "vpc-integrate", STEP])
    assert all(r.status == "ok" for r in results.values()), \
        {n: r.error for n, r in results.items()}
    return results


def rds():
    return boto3.client("rds", region_name=REGION)


def ec2():
    return boto3.client("ec2", region_name=REGION)


def ingress_sources(group_id: str, port: int) -> set[str]:
    rules = ec2().describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}])["SecurityGroupRules"]
    return {r["ReferencedGroupInfo"]["GroupId"] for r in rules
            if not r["IsEgress"] and r.get("ReferencedGroupInfo") and r["FromPort"] == port}


def test_a_first_apply_makes_a_tls_and_iam_only_proxy_with_its_role_and_rules(applied, config):
    out = applied[STEP].outputs
    database = applied["database"].outputs
    lambda_group = applied["vpc-integrate"].outputs["lambda_security_group_id"]

    [proxy] = rds().describe_db_proxies(DBProxyName=naming.db_proxy_name(config))["DBProxies"]
    assert proxy["RequireTLS"] is True
    assert proxy["DefaultAuthScheme"] == "IAM_AUTH" and proxy["Auth"] == []
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert sorted(proxy["VpcSubnetIds"]) == sorted(applied["network"].outputs["subnet_ids"])
    assert proxy["VpcSecurityGroupIds"] == [out["security_group_id"]]
    assert proxy["RoleArn"] == out["role_arn"]
    assert out["proxy_resource_id"].startswith("prx-") and out["proxy_arn"].endswith(
        out["proxy_resource_id"])
    assert out["endpoint"] == proxy["Endpoint"]
    assert list(out["target_health"].values()) == ["AVAILABLE"]

    iam = boto3.client("iam", region_name=REGION)
    role = iam.get_role(RoleName=naming.proxy_role_name(config))["Role"]
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [
        {"Service": "rds.amazonaws.com"}]
    policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="runbook")
    document = policy["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    [statement] = document["Statement"]
    assert statement["Action"] == ["rds-db:connect"]
    assert statement["Resource"] == [
        f"arn:aws:rds-db:{REGION}:123456789012:dbuser:{database['cluster_resource_id']}/{user}"
        for user in sorted(ROLES)]

    assert ingress_sources(out["security_group_id"], 5432) == {lambda_group}
    assert lambda_group in ingress_sources(database["security_group_id"], 5432)
    assert out["security_group_id"] in ingress_sources(database["security_group_id"], 5432)
    egress = [r for r in ec2().describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [out["security_group_id"]]}])["SecurityGroupRules"]
        if r["IsEgress"]]
    assert [(r["IpProtocol"], r["FromPort"], r["ReferencedGroupInfo"]["GroupId"])
            for r in egress] == [("tcp", 5432, database["security_group_id"])]


def test_a_second_apply_makes_no_mutating_call_and_vpc_integrate_keeps_the_proxy_rule(
        applied, config):
    again, _ = run(config, ["network", "database", "vpc-integrate", STEP])
    assert {n: r.status for n, r in again.items()} == dict.fromkeys(again, "ok")
    for name in ("vpc-integrate", STEP):
        assert again[name].api_calls["write"] == 0, name
        assert again[name].changes == []
    assert again[STEP].api_calls["read"] > 0
    database = applied["database"].outputs
    assert applied[STEP].outputs["security_group_id"] in ingress_sources(
        database["security_group_id"], 5432)


def test_a_lost_answer_to_the_registration_is_not_sent_again(moto_endpoint, config):
    """Against the moto server, as the crash sweep runs: the request is delivered, then
    the connection drops before the answer. botocore does not send it again
    (NOT_RETRIED_WHEN_UNCERTAIN), the step fails, and the next run finds the cluster
    registered: one target, not moto's two."""
    from botocore.httpsession import URLLib3Session

    run(config, ["network", "database", "vpc-integrate"])
    aws = ClientFactory(REGION)
    sent = []

    def deliver_then_drop(request, **_):
        sent.append(request.url)
        URLLib3Session().send(request)
        raise ConnectionClosedError(endpoint_url=request.url)

    aws.client("rds").meta.events.register(
        "before-send.rds.RegisterDBProxyTargets", deliver_then_drop)
    results, _ = run(config, [STEP], aws=aws)
    assert results[STEP].status == "failed"
    assert len(sent) == 1

    again, _ = run(config, [STEP])
    assert again[STEP].status == "ok", again[STEP].error
    assert again[STEP].changes == []
    targets = rds().describe_db_proxy_targets(
        DBProxyName=naming.db_proxy_name(config))["Targets"]
    assert [t["RdsResourceId"] for t in targets] == [config.database.cluster_id]


def test_a_cluster_registered_twice_is_refused_naming_the_fix(applied, config):
    rds().register_db_proxy_targets(DBProxyName=naming.db_proxy_name(config),
                                    DBClusterIdentifiers=[config.database.cluster_id])
    again, _ = run(config, [STEP])
    assert (again[STEP].status, again[STEP].error_kind) == ("failed", "input")
    assert "registered 2 times" in again[STEP].error
    assert "deregister-db-proxy-targets" in again[STEP].error


def test_the_wait_reports_progress_and_names_an_unavailable_targets_reason(
        account, config, monkeypatch):
    from runbook.resources import rds_proxy

    run(config, ["network", "database", "vpc-integrate"])
    registering = {"Type": "RDS_INSTANCE", "RdsResourceId": "matbakh-prod-1",
                   "TargetHealth": {"State": "REGISTERING"}}
    failing = {"Type": "RDS_INSTANCE", "RdsResourceId": "matbakh-prod-1",
               "TargetHealth": {"State": "UNAVAILABLE", "Reason": "AUTH_FAILURE",
                                "Description": "IAM authentication failed"}}
    # Registering at the registration's read-back and the wait's first look, then failing.
    answers = iter([[registering], [registering], [failing]])
    real = rds_proxy.ProxyTarget.read

    def read(api, proxy):
        targets = real(api, proxy)
        # The registration itself is read for real; the health is what AWS would report
        # of an instance whose login fails (moto reports every target AVAILABLE at once).
        return [*targets, *next(answers)] if targets else targets

    monkeypatch.setattr(rds_proxy.ProxyTarget, "read", staticmethod(read))
    progress = Lines()
    results, _ = run(config, [STEP], progress=progress)
    error = results[STEP].error
    assert results[STEP].error_kind == "failure"
    assert "rds_instance matbakh-prod-1 is UNAVAILABLE (AUTH_FAILURE" in error
    assert progress.waits == [f"the targets of rds:db-proxy "
                              f"{naming.db_proxy_name(config)} to be AVAILABLE"]


def test_the_step_refuses_a_missing_cluster_naming_the_next_command(account, config):
    run(config, ["network", "database", "vpc-integrate"])
    rds().modify_db_cluster(DBClusterIdentifier=config.database.cluster_id,
                            DeletionProtection=False, ApplyImmediately=True)
    for instance in rds().describe_db_instances()["DBInstances"]:
        rds().delete_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"],
                                 SkipFinalSnapshot=True)
    rds().delete_db_cluster(DBClusterIdentifier=config.database.cluster_id,
                            SkipFinalSnapshot=True)
    results, _ = run(config, [STEP])
    assert (results[STEP].status, results[STEP].error_kind) == ("failed", "input")
    assert "--phase a1" in results[STEP].error


def test_status_live_reads_the_targets_health_without_a_write(applied, config):
    from runbook import app
    from runbook.output import drift

    outcome = app.plan_live(config, [STEP], Progress(quiet=True))
    data = drift.drift_data(outcome.results, env=config.env, account=outcome.account,
                            region=config.region, plan_exit_code=outcome.exit_code)
    [step] = data["steps"]
    assert step["state"] == "in_sync"
    assert step["health"] == {f"tracked_cluster {config.database.cluster_id}": "AVAILABLE"}


def test_a_lost_answer_to_create_db_proxy_is_retried_and_the_proxy_adopted(moto_endpoint,
                                                                          config):
    """botocore sends CreateDBProxy again after a lost answer; the name is taken by then
    (DBProxyAlreadyExistsFault), so the step adopts the proxy it made: one proxy, no
    failure, and the next run plans nothing."""
    from botocore.httpsession import URLLib3Session

    run(config, ["network", "database", "vpc-integrate"])
    aws = ClientFactory(REGION)
    sent = []

    def deliver_first_then_drop(request, **_):
        sent.append(request.url)
        if len(sent) == 1:
            URLLib3Session().send(request)
            raise ConnectionClosedError(endpoint_url=request.url)

    aws.client("rds").meta.events.register("before-send.rds.CreateDBProxy",
                                           deliver_first_then_drop)
    results, _ = run(config, [STEP], aws=aws)
    assert results[STEP].status == "ok", results[STEP].error
    assert len(sent) == 2
    assert [p["DBProxyName"] for p in rds().describe_db_proxies()["DBProxies"]] == [
        naming.db_proxy_name(config)]
    again, _ = run(config, [STEP])
    assert again[STEP].changes == [] and again[STEP].api_calls["write"] == 0
