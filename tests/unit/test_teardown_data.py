"""The teardown contract (owned, delete, gone) of the data kinds, against in-process moto:
the Aurora cluster, its instances and groups, the RDS Proxy and its registration, the MSK
cluster, the DynamoDB table, the KMS key and the secret.

For each kind, staging's and prod's are made through the kind's own `create`; `owned`
must list exactly staging's, with their tags; `delete` removes it (read back with plain
boto3), `gone` says so, a second `delete` makes no mutating call, and prod's is left as
it was. Where AWS needs a call before the delete (deletion protection off), the test
reads the call's effect back or finds it in the journal, rather than trusting moto to
refuse without it.
"""

from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from runbook.aws import naming
from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.resources.base import DeleteOptions, Inventory
from runbook.resources.dynamodb_table import DynamoTable, TableSpec
from runbook.resources.kms_key import KeySpec, KmsKey
from runbook.resources.msk_cluster import ClusterSpec as MskSpec
from runbook.resources.msk_cluster import MskCluster
from runbook.resources.rds import (Cluster, ClusterParameterGroup, ClusterSpec, Instance,
                                   InstanceSpec, ParameterGroupSpec, SubnetGroup,
                                   SubnetGroupSpec)
from runbook.resources.rds_proxy import DbProxy, ProxySpec, ProxyTarget, TargetSpec
from runbook.resources.secret import Secret, SecretSpec
from runbook.sandbox import rds_proxy as sandbox_rds_proxy
from tests.conftest import REGION

ENVS = ("staging", "prod")
STAMP = "20260102t030405z"



def tags(name: str, env: str, step: str) -> dict:
    return {"Name": name, naming.ENV_TAG: env, naming.STEP_TAG: step,
            naming.CREATED_TAG: naming.CREATED}


def journal(aws, since: int = 0) -> list[str]:
    """The mutating calls made through `aws` that AWS accepted, in order, from the
    `since`-th on."""
    return [e["call"] for e in aws.journal.entries[since:]]


def client(service: str):
    return boto3.client(service, region_name=REGION)


def error_code(call) -> str | None:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return None


def network() -> tuple[str, list[str], str]:
    """A VPC, two subnets and a security group (made by hand: not under test)."""
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                                 AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    return vpc, subnets, group


# -- RDS: the cluster, its instance, its groups ------------------------------------------------

def database(api, env: str, vpc: str, subnets: list[str], group: str) -> dict:
    """One environment's database as step `database` makes it, deletion-protected."""
    base = f"matbakh-{env}"
    subnet_group = SubnetGroup().create(api, SubnetGroupSpec(
        f"{base}-subnets", tags(f"{base}-subnets", env, "database"), "database.subnet_group",
        vpc_id=vpc, subnet_ids=tuple(subnets), description="the cluster's subnets"))
    params = ClusterParameterGroup().create(api, ParameterGroupSpec(
        f"{base}-params", tags(f"{base}-params", env, "database"), "database.parameter_group",
        family="aurora-postgresql16", description="TLS only"))
    cluster = Cluster().create(api, ClusterSpec(
        base, tags(base, env, "database"), "database.cluster_id", engine="aurora-postgresql",
        engine_version="16.8", database="app", master_username="postgres",
        subnet_group=subnet_group.id, parameter_group=params.id, security_group_id=group,
        deletion_protection=True))
    instance = Instance().create(api, InstanceSpec(
        f"{base}-1", tags(f"{base}-1", env, "database"), "database.cluster_id",
        cluster_id=base, engine="aurora-postgresql", instance_class="db.serverless"))
    return {"subnet_group": subnet_group, "params": params, "cluster": cluster,
            "instance": instance}


@pytest.fixture
def databases(api):
    vpc, subnets, group = network()
    return {env: database(api, env, vpc, subnets, group) for env in ENVS}


def delete_request(api) -> list[dict]:
    """The parameters of every DeleteDBCluster `api` sends (botocore's own event)."""
    sent: list[dict] = []
    api.client("rds").meta.events.register(
        "provide-client-params.rds.DeleteDBCluster", lambda params, **_: sent.append(
            dict(params)))
    return sent


def test_rds_owned_lists_exactly_the_environments_database_with_its_tags(api, databases):
    staging = databases["staging"]

    [subnet_group] = SubnetGroup().owned(api, "staging")
    [params] = ClusterParameterGroup().owned(api, "staging")
    [cluster] = Cluster().owned(api, "staging")
    [instance] = Instance().owned(api, "staging")

    assert subnet_group.id == "matbakh-staging-subnets"
    assert subnet_group.tags == staging["subnet_group"].tags
    assert params.id == "matbakh-staging-params" and params.tags == staging["params"].tags
    assert cluster.id == "matbakh-staging" and cluster.tags == staging["cluster"].tags
    assert cluster.deletion_protection is True
    # What teardown deletes before the cluster.
    assert [m.id for m in cluster.members] == ["matbakh-staging-1"]
    assert instance.id == "matbakh-staging-1" and instance.tags == staging["instance"].tags
    assert instance.cluster_id == "matbakh-staging"
    assert all(naming.created(f.tags) for f in (subnet_group, params, cluster, instance))


def test_rds_teardown_turns_protection_off_keeps_a_final_snapshot_and_leaves_prod(
        aws, api, databases):
    options = DeleteOptions(final_snapshot_stamp=STAMP)
    [instance] = Instance().owned(api, "staging")
    [cluster] = Cluster().owned(api, "staging")
    [subnet_group] = SubnetGroup().owned(api, "staging")
    [params] = ClusterParameterGroup().owned(api, "staging")
    sent = delete_request(api)
    start = len(aws.journal.entries)

    Instance().delete(api, instance, options)
    assert Instance().gone(api, instance)
    Cluster().delete(api, cluster, options)
    assert Cluster().gone(api, cluster)
    ClusterParameterGroup().delete(api, params, options)
    SubnetGroup().delete(api, subnet_group, options)

    rds = client("rds")
    snapshot = f"matbakh-staging-final-{STAMP}"
    assert Cluster.final_snapshot_id(cluster, options) == snapshot
    assert sent == [{"DBClusterIdentifier": "matbakh-staging",
                     "FinalDBSnapshotIdentifier": snapshot}]
    manual = [s["DBClusterSnapshotIdentifier"] for s in rds.describe_db_cluster_snapshots(
        SnapshotType="manual")["DBClusterSnapshots"]]
    assert manual == [snapshot]
    assert journal(aws, start) == ["rds:DeleteDBInstance", "rds:ModifyDBCluster", "rds:DeleteDBCluster",
                     "rds:DeleteDBClusterParameterGroup", "rds:DeleteDBSubnetGroup"]
    # Nothing of staging's is left; prod's is as it was, still protected.
    assert [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]] == [
        "matbakh-prod"]
    assert rds.describe_db_clusters()["DBClusters"][0]["DeletionProtection"] is True
    assert [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]] == [
        "matbakh-prod-1"]
    assert [g["DBSubnetGroupName"] for g in rds.describe_db_subnet_groups()[
        "DBSubnetGroups"]] == ["matbakh-prod-subnets"]
    assert [g["DBClusterParameterGroupName"] for g in rds.describe_db_cluster_parameter_groups()[
        "DBClusterParameterGroups"]] == ["matbakh-prod-params"]
    for kind in (SubnetGroup(), ClusterParameterGroup(), Cluster(), Instance()):
        assert kind.owned(api, "staging") == []
        assert [f.id for f in kind.owned(api, "prod")]


def test_rds_second_delete_of_each_makes_no_mutating_call(aws, api, databases):
    found = [(kind, kind.owned(api, "staging")[0]) for kind in (
        Instance(), Cluster(), ClusterParameterGroup(), SubnetGroup())]
    for kind, item in found:
        kind.delete(api, item)
    writes = aws.total("write")

    for kind, item in found:
        kind.delete(api, item)
        assert kind.gone(api, item)

    assert aws.total("write") == writes


def test_without_a_stamp_the_cluster_goes_with_skip_final_snapshot_and_no_snapshot(
        api, databases):
    [instance] = Instance().owned(api, "staging")
    [cluster] = Cluster().owned(api, "staging")
    sent = delete_request(api)
    options = DeleteOptions(final_snapshot_stamp=None)

    Instance().delete(api, instance, options)
    Cluster().delete(api, cluster, options)

    assert Cluster.final_snapshot_id(cluster, options) is None
    assert sent == [{"DBClusterIdentifier": "matbakh-staging", "SkipFinalSnapshot": True}]
    assert client("rds").describe_db_cluster_snapshots(
        SnapshotType="manual")["DBClusterSnapshots"] == []
    assert Cluster().gone(api, cluster)


def test_a_cluster_already_deleting_is_done_with_no_call(aws, api, databases):
    """moto deletes a cluster at once; AWS shows it `deleting` for minutes. The emulated
    account is set to what AWS would show."""
    from moto.rds.models import rds_backends

    [instance] = Instance().owned(api, "staging")
    [cluster] = Cluster().owned(api, "staging")
    Instance().delete(api, instance)
    rds_backends[api.account()][REGION].clusters[cluster.id].status = "deleting"
    writes = aws.total("write")

    Cluster().delete(api, cluster, DeleteOptions(final_snapshot_stamp=STAMP))

    assert aws.total("write") == writes
    assert not Cluster().gone(api, cluster)


# -- the RDS Proxy and its registration ------------------------------------------------------

@pytest.fixture
def proxies(api):
    """Each environment's proxy, and staging's registered with a cluster."""
    sandbox_rds_proxy.install()
    _, subnets, group = network()
    made = {env: DbProxy().create(api, ProxySpec(
        f"matbakh-{env}-proxy", tags(f"matbakh-{env}-proxy", env, "db-proxy"), "db_proxy",
        role_arn="arn:aws:iam::123456789012:role/proxy", subnet_ids=tuple(subnets),
        security_group_ids=(group,))) for env in ENVS}
    client("rds").create_db_cluster(DBClusterIdentifier="matbakh-staging",
                                    Engine="aurora-postgresql", MasterUsername="postgres",
                                    MasterUserPassword="x" * 20)
    made["target"] = ProxyTarget().create(api, TargetSpec(
        "matbakh-staging", tags("matbakh-staging", "staging", "db-proxy"),
        "database.cluster_id", proxy="matbakh-staging-proxy", cluster_id="matbakh-staging"))
    return made


def proxy_names() -> list[str]:
    return [p["DBProxyName"] for p in client("rds").describe_db_proxies()["DBProxies"]]


def test_proxy_owned_delete_gone_and_a_second_delete_writes_nothing(aws, api, proxies):
    [found] = DbProxy().owned(api, "staging")
    assert found.id == "matbakh-staging-proxy" and found.tags == proxies["staging"].tags
    assert ProxyTarget().owned(api, "staging") == []   # it goes with its proxy

    DbProxy().delete(api, found)

    assert DbProxy().gone(api, found)
    assert proxy_names() == ["matbakh-prod-proxy"]
    assert journal(aws)[-1] == "rds:DeleteDBProxy"
    writes = aws.total("write")
    DbProxy().delete(api, found)
    ProxyTarget().delete(api, proxies["target"])      # its proxy is gone: nothing to do
    assert aws.total("write") == writes
    assert DbProxy().owned(api, "staging") == []
    assert [p.id for p in DbProxy().owned(api, "prod")] == ["matbakh-prod-proxy"]


def test_a_registration_is_deregistered_once(aws, api, proxies):
    target = proxies["target"]
    assert target.proxy == "matbakh-staging-proxy"

    ProxyTarget().delete(api, target)

    assert ProxyTarget.read(api, "matbakh-staging-proxy") == []
    assert journal(aws)[-1] == "rds:DeregisterDBProxyTargets"
    writes = aws.total("write")
    ProxyTarget().delete(api, target)
    assert aws.total("write") == writes
    assert proxy_names() == ["matbakh-staging-proxy", "matbakh-prod-proxy"]


# -- MSK -------------------------------------------------------------------------------------

@pytest.fixture
def msk_clusters(api):
    """A cluster of each environment, in real subnets and a real group: the sandbox's MSK
    (runbook.sandbox.msk, installed by any sandbox earlier in the session) checks them."""
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.7.{i}.0/24",
                                      AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
                    for i, zone in ((1, "a"), (2, "b")))
    group = ec2.create_security_group(GroupName="msk", Description="msk", VpcId=vpc)["GroupId"]
    return {env: MskCluster().create(api, MskSpec(
        f"matbakh-{env}-legacy", tags(f"matbakh-{env}-legacy", env, "msk-cluster"),
        "msk.cluster_name", kafka_version="3.6.0", broker_type="kafka.t3.small",
        broker_count=2, volume_gb=10, subnet_ids=subnets,
        security_group_ids=(group,))) for env in ENVS}


def msk_names() -> list[str]:
    return [c["ClusterName"] for c in client("kafka").list_clusters_v2()["ClusterInfoList"]]


def test_msk_owned_delete_gone_and_a_second_delete_writes_nothing(aws, api, msk_clusters):
    [found] = MskCluster().owned(api, "staging")
    assert found.id == msk_clusters["staging"].id and found.name == "matbakh-staging-legacy"
    assert found.tags == msk_clusters["staging"].tags

    MskCluster().delete(api, found)

    assert MskCluster().gone(api, found)
    assert msk_names() == ["matbakh-prod-legacy"]
    assert journal(aws)[-1] == "kafka:DeleteCluster"
    writes = aws.total("write")
    MskCluster().delete(api, found, DeleteOptions())
    assert aws.total("write") == writes
    assert MskCluster().owned(api, "staging") == []
    assert [c.name for c in MskCluster().owned(api, "prod")] == ["matbakh-prod-legacy"]


def test_an_msk_cluster_already_deleting_is_done_with_no_call(aws, api, msk_clusters):
    """moto deletes a cluster at once; AWS shows it DELETING for minutes. The emulated
    account is set to what AWS would show."""
    from moto.kafka.models import kafka_backends

    [found] = MskCluster().owned(api, "staging")
    kafka_backends[api.account()][REGION].clusters[found.id].state = "DELETING"
    writes = aws.total("write")

    MskCluster().delete(api, found)

    assert aws.total("write") == writes and not MskCluster().gone(api, found)


# -- DynamoDB --------------------------------------------------------------------------------

@pytest.fixture
def tables(api):
    key = client("kms").create_key()["KeyMetadata"]["Arn"]
    return {env: DynamoTable().create(api, TableSpec(
        f"matbakh-{env}-hashes", tags(f"matbakh-{env}-hashes", env, "hash-table"),
        "legacy.hash_table", kms_key_arn=key, deletion_protection=True)) for env in ENVS}


def table_names() -> list[str]:
    return client("dynamodb").list_tables()["TableNames"]


def test_dynamodb_owned_delete_gone_and_a_second_delete_writes_nothing(aws, api, tables):
    [found] = DynamoTable().owned(api, "staging")
    assert found.id == tables["staging"].id and found.tags == tables["staging"].tags
    assert found.deletion_protection is True

    DynamoTable().delete(api, found)

    assert DynamoTable().gone(api, found)
    assert table_names() == ["matbakh-prod-hashes"]
    assert journal(aws)[-2:] == ["dynamodb:UpdateTable", "dynamodb:DeleteTable"]
    writes = aws.total("write")
    DynamoTable().delete(api, found)
    assert aws.total("write") == writes
    assert DynamoTable().owned(api, "staging") == []
    prod = client("dynamodb").describe_table(TableName="matbakh-prod-hashes")["Table"]
    assert prod["DeletionProtectionEnabled"] is True


def test_dynamodb_protection_is_off_before_delete_table_is_sent(api, tables):
    """AWS refuses DeleteTable on a protected table: the delete turns protection off
    first. Stopped right before DeleteTable, the table is there with protection off."""
    class Stop(Exception):
        pass

    def stop_before_delete(service, operation, write):
        if operation == "DeleteTable":
            raise Stop

    stopping = Api(ClientFactory(REGION, interceptors=[stop_before_delete]),
                   sleep=lambda s: None)
    [found] = DynamoTable().owned(api, "staging")

    with pytest.raises(Stop):
        DynamoTable().delete(stopping, found)

    table = client("dynamodb").describe_table(TableName="matbakh-staging-hashes")["Table"]
    assert table["DeletionProtectionEnabled"] is False


# -- KMS -------------------------------------------------------------------------------------

@pytest.fixture
def keys(api):
    return {env: KmsKey().create(api, KeySpec(
        f"alias/matbakh-{env}-hashes", tags(f"matbakh-{env}-hashes", env, "hash-table"),
        "legacy.hash_table", description="the hash table's key")) for env in ENVS}


def aliases() -> list[str]:
    return sorted(a["AliasName"] for a in client("kms").list_aliases()["Aliases"]
                  if not a["AliasName"].startswith("alias/aws/"))


def test_kms_owned_delete_schedules_the_key_without_its_alias(aws, api, keys):
    [found] = KmsKey().owned(api, "staging")
    assert found.key_id == keys["staging"].key_id and found.tags == keys["staging"].tags

    KmsKey().delete(api, found, DeleteOptions(key_pending_days=7))

    meta = client("kms").describe_key(KeyId=found.key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    ahead = meta["DeletionDate"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=6) < ahead <= datetime.timedelta(days=7)
    assert aliases() == ["alias/matbakh-prod-hashes"]
    assert journal(aws)[-2:] == ["kms:DeleteAlias", "kms:ScheduleKeyDeletion"]
    assert KmsKey().gone(api, found)
    writes = aws.total("write")
    KmsKey().delete(api, found)
    assert aws.total("write") == writes
    assert KmsKey().owned(api, "staging") == []
    prod = client("kms").describe_key(KeyId="alias/matbakh-prod-hashes")["KeyMetadata"]
    assert prod["KeyId"] == keys["prod"].key_id and prod["KeyState"] == "Enabled"


def test_a_key_scheduled_by_hand_loses_its_alias_and_is_not_scheduled_again(aws, api, keys):
    """KMS keeps an alias naming a key pending deletion: left, it would refuse the next
    run's CreateAlias."""
    found = keys["staging"]
    client("kms").schedule_key_deletion(KeyId=found.key_id, PendingWindowInDays=30)
    start = len(aws.journal.entries)

    KmsKey().delete(api, found)

    assert journal(aws, start) == ["kms:DeleteAlias"]
    assert aliases() == ["alias/matbakh-prod-hashes"]


def test_after_a_destroy_step_hash_table_makes_a_new_key_not_the_scheduled_one(
        tmp_path, aws):
    """A run after a destroy finds no key for the alias (deleted with the key) and passes
    over the environment's key scheduled for deletion: it makes a new key."""
    import yaml

    from runbook import config as config_mod
    from tests.conftest import PROD_CONFIG
    from tests.functional.conftest import run_steps

    data = yaml.safe_load(PROD_CONFIG.read_text())
    data["phases"]["a5"] = ["hash-table"]
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = config_mod.load(path)
    alias = f"alias/{config.legacy.hash_table}"
    first, _ = run_steps(config, ["hash-table"])
    assert first["hash-table"].status == "ok", first["hash-table"].error
    old = client("kms").describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]

    api = Api(ClientFactory(REGION), sleep=lambda s: None)
    for kind in (DynamoTable(), KmsKey()):
        for found in kind.owned(api, config.env):
            kind.delete(api, found)
    again, _ = run_steps(config, ["hash-table"])

    assert again["hash-table"].status == "ok", again["hash-table"].error
    new = client("kms").describe_key(KeyId=alias)["KeyMetadata"]
    assert new["KeyId"] != old and new["KeyState"] == "Enabled"
    assert client("kms").describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    table = client("dynamodb").describe_table(TableName=config.legacy.hash_table)["Table"]
    assert table["SSEDescription"]["KMSMasterKeyArn"] == new["Arn"]


# -- Secrets Manager -------------------------------------------------------------------------

def secret_spec(env: str) -> SecretSpec:
    name = f"matbakh/{env}/db"
    return SecretSpec(name, tags(name, env, "store-secrets"), "secrets.db",
                      fields={"host": f"{env}.example.internal", "port": 5432},
                      generated=("password",))


@pytest.fixture
def secrets(api):
    made = {env: Secret().create(api, secret_spec(env)) for env in ENVS}
    sm = client("secretsmanager")
    # Near misses of staging's tag pair: ListSecrets' filters match each part alone, and
    # by prefix.
    sm.create_secret(Name="other/dev-named-staging", SecretString="{}",
                     Tags=[{"Key": naming.ENV_TAG, "Value": "dev"},
                           {"Key": "Name", "Value": "staging"}])
    sm.create_secret(Name="other/staging-old", SecretString="{}",
                     Tags=[{"Key": naming.ENV_TAG, "Value": "staging-old"}])
    return made


def secret_names() -> list[str]:
    return sorted(s["Name"] for s in client("secretsmanager").list_secrets(
        IncludePlannedDeletion=True)["SecretList"])


def test_secret_owned_lists_exactly_the_environments_with_tags_and_no_value(api, secrets):
    [found] = Secret().owned(api, "staging")

    assert (found.id, found.name) == (secrets["staging"].id, "matbakh/staging/db")
    assert found.tags == secrets["staging"].tags
    assert found.value is None and found.deleted_on is None
    assert [s.name for s in Secret().owned(api, "prod")] == ["matbakh/prod/db"]


def test_secret_delete_keeps_the_recovery_window_and_a_second_delete_writes_nothing(
        aws, api, secrets):
    [found] = Secret().owned(api, "staging")

    Secret().delete(api, found, DeleteOptions(secret_recovery_days=7))

    described = client("secretsmanager").describe_secret(SecretId=found.id)
    ahead = described["DeletedDate"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=6) < ahead <= datetime.timedelta(days=7)
    assert Secret().gone(api, found)
    assert Secret().owned(api, "staging") == []
    writes = aws.total("write")
    Secret().delete(api, found, DeleteOptions(secret_recovery_days=None))
    assert aws.total("write") == writes
    assert "DeletedDate" in client("secretsmanager").describe_secret(SecretId=found.id)
    assert "DeletedDate" not in client("secretsmanager").describe_secret(
        SecretId="matbakh/prod/db")


def test_secret_delete_without_a_window_deletes_at_once(api, secrets):
    [found] = Secret().owned(api, "staging")

    Secret().delete(api, found, DeleteOptions(secret_recovery_days=None))

    sm = client("secretsmanager")
    assert error_code(lambda: sm.describe_secret(SecretId=found.id)) == \
        "ResourceNotFoundException"
    assert Secret().gone(api, found)
    assert "matbakh/staging/db" not in secret_names()


def test_a_secret_deleted_with_a_window_is_restored_with_its_value_not_made_again(
        api, secrets):
    spec = secret_spec("staging")
    sm = client("secretsmanager")
    before = sm.get_secret_value(SecretId=spec.name)["SecretString"]
    [found] = Secret().owned(api, "staging")
    Secret().delete(api, found)

    found = Secret().find(api, spec)
    assert found.deleted_on is not None and found.value is None
    [change] = Secret().plan(spec, found, "db-secret")
    inventory = Inventory({"db-secret": found})
    change.run(api, inventory, **change.args)

    assert change.op == "restore"
    described = sm.describe_secret(SecretId=spec.name)
    assert described["ARN"] == secrets["staging"].id and "DeletedDate" not in described
    assert sm.get_secret_value(SecretId=spec.name)["SecretString"] == before
    assert secret_names().count(spec.name) == 1
    assert inventory.found["db-secret"].deleted_on is None
    assert Secret().plan(spec, Secret().find(api, spec), "db-secret") == []


def test_an_adopted_secret_is_owned_too_and_said_not_created(api, secrets):
    """owned lists what the environment holds; teardown keeps what runbook adopted."""
    client("secretsmanager").create_secret(
        Name="matbakh/staging/legacy", SecretString="{}",
        Tags=[{"Key": naming.ENV_TAG, "Value": "staging"},
              {"Key": naming.STEP_TAG, "Value": "store-secrets"}])

    owned = {s.name: s for s in Secret().owned(api, "staging")}

    assert sorted(owned) == ["matbakh/staging/db", "matbakh/staging/legacy"]
    assert naming.created(owned["matbakh/staging/db"].tags)
    assert not naming.created(owned["matbakh/staging/legacy"].tags)
