"""Two environments in one account: prod and staging side by side, and a copied
environment file that left one of prod's names in place.

Staging and prod often share an account. runbook finds resources by name, id and tags, so
a copy of config/prod.yaml with only the network and cluster renamed would find prod's
secrets, pool and functions by their names. It must refuse them (exit 2, before the run's
first write, naming the resource, its environment and the field to change), and a
staging file with names of its own (config/staging.yaml) must live beside prod without
changing anything of prod's.

prod's resources are described before and after with plain boto3 clients, in full (the
secrets' values by checksum, so that a failing comparison prints none), and compared.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.conninfo import make_conninfo

from runbook import app, config as config_mod, preflight
from runbook.aws import naming
from runbook.engine import lock
from runbook.lambda_runtime import dbroles
from runbook.steps import new_runner
from runbook.errors import OwnedElsewhere
from runbook.output.progress import Progress
from runbook.sandbox.stack import Sandbox
from runbook.sandbox import sweep
from tests.conftest import PROD_CONFIG, REPO

pytestmark = pytest.mark.slow

STAGING_CONFIG = REPO / "config" / "staging.yaml"
A1_TO_A3 = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
            "db-proxy", "deploy-post-confirmation", "integration-test"]


class Account(sweep.Account):
    def database(self) -> str:
        """The DSN of a new, empty database on the sandbox's server (one per environment,
        as each environment has a cluster of its own)."""
        name = f"env_{secrets.token_hex(4)}"
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return make_conninfo(self.pg_dsn, dbname=name)


def run(config, account: Account, steps: list[str], database_dsn: str):
    """A whole a1..a3 run against the sandbox's account with a database of its own, as the
    crash sweep runs one (runbook/sandbox/sweep.py): fix-tables and the integration test need the
    sandbox's PostgreSQL, which a live run cannot reach. Returns (results, writes made)."""
    aws = account.factory()
    run_lock = lock.RunLock(account.factory().client("ssm"), config.env)
    with run_lock.held(lock.me("environments test", "+".join(steps)), wait_s=0):
        preflight.ownership(config, aws, steps, dry_run=True, database_dsn=database_dsn)
        results = new_runner(config, aws, Progress(quiet=True), dry_run=True,
                         sleep=lambda s: None, database_dsn=database_dsn).run(steps)
    return results, aws.total("write")


def run_live(config, account: Account, monkeypatch, tmp_path, *, phase=None, steps=()):
    """`runbook run` (app.run, live) against the sandbox's account, as an operator runs it
    against AWS: returns the OwnedElsewhere it raised, or its outcome."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", account.aws_url)
    try:
        return app.run(config, app.resolve(config, phase, list(steps)), dry_run=False,
                       report_dir=tmp_path / "reports", progress=Progress(quiet=True),
                       sleep=lambda s: None, lock_wait_s=0)
    except OwnedElsewhere as refused:
        return refused


def nothing_of(account: Account, env: str) -> bool:
    """No VPC, no lock and no secret of `env`: nothing was written for it."""
    vpcs = account.client("ec2").describe_vpcs(
        Filters=[{"Name": "tag:runbook:env", "Values": [env]}])["Vpcs"]
    locks = account.client("ssm").describe_parameters(ParameterFilters=[
        {"Key": "Name", "Values": [f"/runbook/{env}/lock"]}])["Parameters"]
    secrets_of_env = [s for s in account.client("secretsmanager").list_secrets()["SecretList"]
                      if {"Key": "runbook:env", "Value": env} in (s.get("Tags") or [])]
    return not vpcs and not locks and not secrets_of_env


def copied_from_prod(tmp_path: Path, mutate=None) -> config_mod.Config:
    """config/prod.yaml saved as staging.yaml with only the network and cluster renamed,
    as an operator making a second environment in a hurry would."""
    data = copy.deepcopy(yaml.safe_load(PROD_CONFIG.read_text()))
    data["network"]["name"] = "matbakh-stg"
    data["database"]["cluster_id"] = "matbakh-stg"
    if mutate is not None:
        mutate(data)
    path = tmp_path / "staging.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(path)


# -- describing prod -----------------------------------------------------------------------

# Fields that change on every read, not with the resource.
_VOLATILE = {"LastAccessedDate", "LatestRestorableTime", "ResponseMetadata"}


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted(value.items()) if k not in _VOLATILE}
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


def describe(account: Account, config, database_dsn: str) -> dict:
    """Everything of `config`'s environment, as AWS and the database describe it."""
    ec2, rds, sm = account.client("ec2"), account.client("rds"), account.client("secretsmanager")
    idp, iam, lam = account.client("cognito-idp"), account.client("iam"), account.client("lambda")
    logs = account.client("logs")
    found: dict = {}
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:runbook:env", "Values": [config.env]}])["Vpcs"]
    assert len(vpcs) == 1, f"{config.env} has {len(vpcs)} VPCs"
    vpc_id = vpcs[0]["VpcId"]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    found["vpc"] = vpcs[0]
    found["vpc attributes"] = [ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=a)
                               for a in ("enableDnsSupport", "enableDnsHostnames")]
    found["subnets"] = ec2.describe_subnets(Filters=in_vpc)["Subnets"]
    found["route tables"] = ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]
    groups = ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]
    found["security groups"] = groups
    found["rules"] = ec2.describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [g["GroupId"] for g in groups]}])["SecurityGroupRules"]
    found["endpoints"] = ec2.describe_vpc_endpoints(Filters=in_vpc)["VpcEndpoints"]
    db = config.database
    found["subnet group"] = rds.describe_db_subnet_groups(
        DBSubnetGroupName=db.subnet_group_name)["DBSubnetGroups"]
    found["cluster"] = rds.describe_db_clusters(DBClusterIdentifier=db.cluster_id)["DBClusters"]
    group = rds.describe_db_cluster_parameter_groups(
        DBClusterParameterGroupName=db.parameter_group_name)["DBClusterParameterGroups"]
    found["parameter group"] = {
        "described": group,
        "parameters": rds.describe_db_cluster_parameters(
            DBClusterParameterGroupName=db.parameter_group_name)["Parameters"],
        "tags": rds.list_tags_for_resource(
            ResourceName=group[0]["DBClusterParameterGroupArn"])["TagList"]}
    found["instances"] = rds.describe_db_instances(Filters=[
        {"Name": "db-cluster-id", "Values": [db.cluster_id]}])["DBInstances"]
    proxy = rds.describe_db_proxies(DBProxyName=naming.db_proxy_name(config))["DBProxies"]
    found["proxy"] = {
        "described": proxy,
        "targets": rds.describe_db_proxy_targets(DBProxyName=proxy[0]["DBProxyName"])["Targets"],
        "tags": rds.list_tags_for_resource(ResourceName=proxy[0]["DBProxyArn"])["TagList"]}
    proxy_role = naming.proxy_role_name(config)
    found[f"role {proxy_role}"] = {
        "role": iam.get_role(RoleName=proxy_role)["Role"],
        "policies": [iam.get_role_policy(RoleName=proxy_role, PolicyName=p)
                     for p in iam.list_role_policies(RoleName=proxy_role)["PolicyNames"]]}
    for name in (config.secrets.db, config.secrets.app_config):
        value = sm.get_secret_value(SecretId=name)
        found[f"secret {name}"] = {
            "described": sm.describe_secret(SecretId=name),
            "version": value["VersionId"],
            "value sha256": hashlib.sha256(value["SecretString"].encode()).hexdigest()}
    pool_id = next(p["Id"] for p in idp.list_user_pools(MaxResults=60)["UserPools"]
                   if p["Name"] == config.cognito.user_pool)
    found["pool"] = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    found["clients"] = [idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=c["ClientId"])
                        for c in idp.list_user_pool_clients(UserPoolId=pool_id,
                                                            MaxResults=60)["UserPoolClients"]]
    prefix = config.function_name("")
    for function in lam.list_functions()["Functions"]:
        name = function["FunctionName"]
        if not name.startswith(prefix):
            continue
        found[f"function {name}"] = {"function": lam.get_function(FunctionName=name),
                                     "policy": json.loads(lam.get_policy(
                                         FunctionName=name)["Policy"]) if name.endswith(
                                         ("pre-signup", "post-confirmation")) else None}
        role = f"{name}-role"
        found[f"role {role}"] = {
            "role": iam.get_role(RoleName=role)["Role"],
            "policies": [iam.get_role_policy(RoleName=role, PolicyName=p)
                         for p in iam.list_role_policies(RoleName=role)["PolicyNames"]]}
        found[f"role {role}"]["attached"] = iam.list_attached_role_policies(
            RoleName=role)["AttachedPolicies"]
        groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
        found[f"log group {name}"] = [
            {**group, "tags": logs.list_tags_for_resource(
                resourceArn=group["arn"].removesuffix(":*"))["tags"]} for group in groups]
    for layer in lam.list_layers()["Layers"]:
        if layer["LayerName"].startswith(prefix):
            found[f"layer {layer['LayerName']}"] = lam.list_layer_versions(
                LayerName=layer["LayerName"])["LayerVersions"]
    found["lock"] = account.client("ssm").describe_parameters(ParameterFilters=[
        {"Key": "Name", "Values": [f"/runbook/{config.env}/lock"]}])["Parameters"]
    with psycopg.connect(database_dsn) as conn:
        found["ledger"] = conn.execute(
            "SELECT version, name, checksum, applied_at FROM runbook.schema_migrations "
            "ORDER BY version").fetchall()
        # The roles' privileges in this environment's database (roles are server-wide,
        # their grants per database).
        found["grants"] = {
            name: sorted(p.label() for p in dbroles.read_role(conn, name).privileges)
            for name in sorted(config.database.roles)}
    return _clean(json.loads(json.dumps(found, default=str)))


@pytest.fixture(scope="module")
def prod():
    """A sandbox account where prod ran a1..a3: (account, prod config, its database)."""
    config = config_mod.load(PROD_CONFIG)
    with Sandbox(Progress(quiet=True)) as box:
        account = Account(box.aws_url, box.pg_dsn)
        database_dsn = account.database()
        results, _ = run(config, account, A1_TO_A3, database_dsn)
        assert [(r.name, r.status) for r in results] == [(s, "ok") for s in A1_TO_A3], \
            [r.error for r in results if not r.ok]
        yield account, config, database_dsn


def test_describing_prod_twice_gives_the_same_description(prod):
    """The comparisons below mean something only if nothing in a description varies
    from one read to the next."""
    account, config, database_dsn = prod
    assert describe(account, config, database_dsn) == describe(account, config, database_dsn)


@pytest.mark.parametrize("phase, resource, field", [
    ("a1", "secretsmanager:secret matbakh-db-postgres", "secrets.db"),
    ("a2", "cognito-idp:user-pool matbakh-prod-users", "cognito.user_pool"),
    ("a3", "secretsmanager:secret matbakh-db-postgres", "secrets.db"),
])
def test_a_copied_environment_file_is_refused_before_its_first_write(
        prod, tmp_path, monkeypatch, phase, resource, field):
    account, prod_config, prod_dsn = prod
    staging = copied_from_prod(tmp_path)
    before = describe(account, prod_config, prod_dsn)

    refused = run_live(staging, account, monkeypatch, tmp_path, phase=phase)

    assert isinstance(refused, OwnedElsewhere), refused
    assert refused.exit_code == 2
    message = str(refused)
    assert resource in message
    assert "environment 'prod'" in message and f"change {field} " in message
    assert describe(account, prod_config, prod_dsn) == before
    assert nothing_of(account, "staging")


@pytest.mark.parametrize("step, mutate, resource, field", [
    # Each resource kind a step finds by name or id, left with prod's name.
    ("network", lambda d: d["network"].update(vpc_id="{prod_vpc}"), "ec2:vpc", "network.vpc_id"),
    ("database", lambda d: d["database"].update(subnet_group="matbakh-prod-subnets"),
     "rds:subnet-group matbakh-prod-subnets", "database.subnet_group"),
    ("database", lambda d: d["database"].update(security_group="matbakh-prod-db"),
     None, None),  # a group is found in the environment's own VPC: no clash
    ("database", lambda d: d["database"].update(cluster_id="matbakh-prod",
                                                subnet_group="matbakh-stg-subnets"),
     "rds:cluster matbakh-prod", "database.cluster_id"),
    ("database", lambda d: d["database"].update(parameter_group="matbakh-prod-params"),
     "rds:cluster-parameter-group matbakh-prod-params", "database.parameter_group"),
    ("store-secrets", lambda d: d["secrets"].update(db="matbakh-staging-db",
                                                     app_config="matbakh-app-config"),
     "secretsmanager:secret matbakh-app-config", "secrets.app_config"),
    ("cognito", lambda d: d["cognito"].update(pool_id="{prod_pool}"),
     "cognito-idp:user-pool matbakh-prod-users", "cognito.pool_id"),
    ("cognito", lambda d: d["lambdas"].update(prefix="matbakh-cognito"),
     "iam:role matbakh-cognito-pre-signup-role", "lambdas.prefix"),
])
def test_each_step_refuses_what_another_environment_owns(prod, tmp_path, monkeypatch, step,
                                                          mutate, resource, field):
    account, prod_config, prod_dsn = prod
    prod_vpc = account.client("ec2").describe_vpcs(
        Filters=[{"Name": "tag:runbook:env", "Values": ["prod"]}])["Vpcs"][0]["VpcId"]
    prod_pool = next(p["Id"] for p in account.client("cognito-idp").list_user_pools(
        MaxResults=60)["UserPools"] if p["Name"] == "matbakh-prod-users")

    def staging_file(data):
        for section in ("secrets", "cognito", "lambdas"):
            data[section] = {**data[section]}
        data["secrets"].update(db="matbakh-staging-db", app_config="matbakh-staging-app")
        data["cognito"].update(user_pool="matbakh-staging-users", client="matbakh-staging-web")
        data["lambdas"]["prefix"] = "matbakh-staging"
        mutate(data)
        for section in ("network", "cognito"):
            for key, value in data[section].items():
                if isinstance(value, str):
                    data[section][key] = value.format(prod_vpc=prod_vpc, prod_pool=prod_pool)

    staging = copied_from_prod(tmp_path, staging_file)
    before = describe(account, prod_config, prod_dsn)

    refused = run_live(staging, account, monkeypatch, tmp_path, steps=[step])

    if resource is None:
        assert not isinstance(refused, OwnedElsewhere), refused
    else:
        assert isinstance(refused, OwnedElsewhere), refused
        assert nothing_of(account, "staging")
        assert resource in str(refused) and f"change {field} " in str(refused)
        assert refused.owner == "prod" and refused.env == "staging"
    # Whatever staging made, nothing of prod's changed.
    assert describe(account, prod_config, prod_dsn) == before


def test_the_shipped_staging_file_lives_beside_prod_and_changes_nothing_of_it(prod):
    account, prod_config, prod_dsn = prod
    staging = config_mod.load(STAGING_CONFIG)
    assert staging.env == "staging"
    assert staging.database.deletion_protection is False
    assert staging.cognito.deletion_protection is False
    before = describe(account, prod_config, prod_dsn)
    staging_dsn = account.database()

    results, writes = run(staging, account, A1_TO_A3, staging_dsn)

    assert [(r.name, r.status) for r in results] == [(s, "ok") for s in A1_TO_A3], \
        [r.error for r in results if not r.ok]
    assert writes > 0
    assert describe(account, prod_config, prod_dsn) == before
    # Staging has everything of its own, and a second run of each changes nothing.
    described = describe(account, staging, staging_dsn)
    assert described["vpc"]["CidrBlock"] == "10.1.0.0/16"
    assert described["proxy"]["described"][0]["DBProxyArn"] != \
        before["proxy"]["described"][0]["DBProxyArn"]
    assert [t.get("RdsResourceId") for t in described["proxy"]["targets"]] == [
        staging.database.cluster_id]
    again, writes = run(staging, account, A1_TO_A3[:-1], staging_dsn)
    assert [r.status for r in again] == ["ok"] * (len(A1_TO_A3) - 1) and writes == 0
    assert describe(account, prod_config, prod_dsn) == before


def test_the_command_exits_2_naming_the_field_and_writes_nothing(moto_endpoint, workdir, cli):
    """The operator's view: `runbook run --phase a1 --env staging` with the copied file,
    against the account where prod's a1 ran."""
    import boto3

    assert cli("run", "--phase", "a1").exit_code == 0
    data = yaml.safe_load((workdir / "config" / "prod.yaml").read_text())
    data["network"]["name"] = data["database"]["cluster_id"] = "matbakh-stg"
    (workdir / "config" / "staging.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint)
    vpcs = ec2.describe_vpcs()["Vpcs"]

    result = cli("run", "--phase", "a1", "--env", "staging")

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert ("secretsmanager:secret matbakh-db-postgres: it belongs to environment 'prod'"
            in result.stderr)
    assert "change secrets.db in its environment file" in result.stderr
    assert ec2.describe_vpcs()["Vpcs"] == vpcs
    assert not (workdir / "reports" / "staging" / "a1.json").exists()
