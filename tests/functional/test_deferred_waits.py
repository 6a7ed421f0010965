"""Step database makes the cluster and its instances and moves on; the step that first
needs them available waits for them (runbook.steps.database.wait_available): store-secrets
before it sets the password, db-proxy before it registers the cluster, fix-tables before
it connects. Against in-process moto, where an instance that is stopped stands for one
still being made (it is not `available`); the calls each step makes are recorded in
order through the factory's interceptors."""

from __future__ import annotations

import boto3
import pytest

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.output.progress import Progress
from runbook.sandbox import rds_proxy as sandbox_rds_proxy
from runbook.steps import new_runner
from tests.conftest import REGION
from tests.functional.conftest import Clock

INSTANCE = "matbakh-prod-1"


@pytest.fixture(autouse=True)
def _sandbox_proxy():
    sandbox_rds_proxy.install()


@pytest.fixture
def config(write_config):
    """config/prod.yaml through phase a3's db-proxy, with the roles the proxy serves."""
    return config_mod.load(write_config(config_change))


def config_change(data) -> None:
    del data["phases"]["a4"], data["phases"]["a5"]
    data["database"]["roles"] = {"lambda_writer": {"write": ["app", "audit"]}}
    data["phases"]["a3"] = ["vpc-integrate", "db-proxy"]


class Calls:
    """The calls a factory sent, in order, with the step that made each."""

    def __init__(self):
        self.aws = ClientFactory(REGION, interceptors=[self.record])
        self.made: list[tuple[str, str]] = []

    def record(self, service: str, operation: str, write: bool) -> None:
        self.made.append((self.aws.scope, f"{service}:{operation}"))

    def of(self, step: str) -> list[str]:
        return [call for scope, call in self.made if scope == step]


def run(config, names, aws=None):
    runner = new_runner(config, aws or ClientFactory(REGION), Progress(quiet=True),
                        sleep=Clock().sleep, clock=Clock())
    return {r.name: r for r in runner.run(names)}


def stop_instance() -> None:
    boto3.client("rds", region_name=REGION).stop_db_instance(DBInstanceIdentifier=INSTANCE)


def test_database_moves_on_while_its_instance_is_not_available(account, config):
    run(config, ["network", "database"])
    stop_instance()
    calls = Calls()
    results = run(config, ["database"], calls.aws)
    assert results["database"].status == "ok"
    assert results["database"].outputs["available"] is False
    assert not any("Wait" in call for call in calls.of("database"))
    # Read once: with nothing to apply, settle does not describe it again.
    assert calls.of("database").count("rds:DescribeDBInstances") == 1


def test_a_cluster_this_run_created_is_not_described_again(account, config):
    run(config, ["network"])
    calls = Calls()
    results = run(config, ["database"], calls.aws)
    assert results["database"].status == "ok"
    made = calls.of("database")
    assert "rds:CreateDBCluster" in made and "rds:CreateDBInstance" in made
    # The read found none; the outputs come from the create calls' answers.
    assert made.count("rds:DescribeDBClusters") == 1
    assert "rds:DescribeDBInstances" not in made
    outputs = results["database"].outputs
    assert outputs["endpoint"].startswith("matbakh-prod.cluster-")
    assert outputs["instance_ids"] == [INSTANCE] and outputs["available"] is False


def test_a_cluster_that_existed_and_was_changed_is_described_again(account, config,
                                                                    write_config):
    run(config, ["network", "database"])

    def more_capacity(data):
        config_change(data)
        data["database"]["max_capacity"] = data["database"]["max_capacity"] * 2

    calls = Calls()
    results = run(config_mod.load(write_config(more_capacity)), ["database"], calls.aws)
    made = calls.of("database")
    assert results["database"].applied == 1 and "rds:ModifyDBCluster" in made
    # read, then settle: its instances, and its members until none is `applying`.
    assert made.count("rds:DescribeDBClusters") == 2
    assert made.count("rds:DescribeDBInstances") == 2


def test_a_converged_database_says_available_and_its_consumers_do_not_wait(account, config):
    run(config, ["network", "database", "store-secrets"])
    calls = Calls()
    results = run(config, ["database", "store-secrets"], calls.aws)
    assert results["database"].outputs["available"] is True
    assert "rds:DescribeDBInstances" not in calls.of("store-secrets")
    # Its own read of the cluster is answered by the run's read cache (database read it):
    # no wait asks again.
    assert "rds:DescribeDBClusters" not in calls.of("store-secrets")
    assert calls.of("database").count("rds:DescribeDBClusters") >= 1


def test_store_secrets_waits_for_the_cluster_before_it_sets_the_password(account, config):
    run(config, ["network", "database"])
    stop_instance()
    calls = Calls()
    results = run(config, ["database", "store-secrets"], calls.aws)
    assert results["store-secrets"].status == "ok"
    made = calls.of("store-secrets")
    modify = made.index("rds:ModifyDBCluster")
    assert made[modify - 1] == "rds:DescribeDBClusters"   # the wait's look, just before
    assert "rds:DescribeDBInstances" not in made           # the instances are not needed


def test_db_proxy_waits_for_the_cluster_before_it_registers_it(account, config):
    run(config, ["network", "database", "vpc-integrate"])
    stop_instance()
    calls = Calls()
    results = run(config, ["database", "vpc-integrate", "db-proxy"], calls.aws)
    assert results["db-proxy"].status == "ok", results["db-proxy"].error
    made = calls.of("db-proxy")
    create, register = made.index("rds:CreateDBProxy"), made.index("rds:RegisterDBProxyTargets")
    # Between making the proxy and registering the cluster: the wait's look at the cluster.
    assert "rds:DescribeDBClusters" in made[create:register]


def test_vpc_integrate_needs_only_the_database_s_ids_and_does_not_wait(account, config):
    run(config, ["network", "database"])
    stop_instance()
    calls = Calls()
    results = run(config, ["database", "vpc-integrate"], calls.aws)
    assert results["vpc-integrate"].status == "ok"
    assert not {"rds:DescribeDBClusters", "rds:DescribeDBInstances"} & set(
        calls.of("vpc-integrate"))
