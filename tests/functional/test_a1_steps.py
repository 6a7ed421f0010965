"""Phase a1's steps against in-process moto: what they create, what they adopt, what
they refuse, and that a second apply makes no mutating call."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.steps import new_runner
from runbook.output.progress import Progress
from tests.conftest import REGION
from tests.functional.conftest import run_steps as run

A1 = ["network", "database", "store-secrets"]


def ec2():
    return boto3.client("ec2", region_name=REGION)


def rds():
    return boto3.client("rds", region_name=REGION)


def sm():
    return boto3.client("secretsmanager", region_name=REGION)


def our_vpcs():
    return [v for v in ec2().describe_vpcs()["Vpcs"] if v["CidrBlock"] == "10.0.0.0/16"]


def secret_value(name):
    return json.loads(sm().get_secret_value(SecretId=name)["SecretString"])


# -- idempotency ----------------------------------------------------------------------

@pytest.mark.parametrize("step", A1)
def test_second_apply_of_each_step_makes_no_mutating_call(account, config, step):
    first, _ = run(config, A1)
    assert all(r.status == "ok" and r.changed for r in first.values())
    again, aws = run(config, [step])
    assert again[step].status == "ok", again[step].error
    assert again[step].changes == []
    assert again[step].api_calls["write"] == 0
    assert again[step].api_calls["read"] > 0
    assert aws.journal.entries == []


def test_first_apply_journals_every_write_it_counts(account, config):
    results, aws = run(config, A1)
    writes = sum(r.api_calls["write"] for r in results.values())
    assert writes == len(aws.journal.entries) > 0
    calls = [e["call"] for e in aws.journal.entries]
    assert "ec2:CreateVpc" in calls and "rds:CreateDBCluster" in calls
    assert calls.count("secretsmanager:CreateSecret") == 2


# -- network --------------------------------------------------------------------------

def test_network_creates_private_subnets_with_own_route_tables(account, config):
    results, _ = run(config, ["network"])
    out = results["network"].outputs
    vpc_id = out["vpc_id"]
    for attribute in ("enableDnsSupport", "enableDnsHostnames"):
        key = attribute[0].upper() + attribute[1:]
        assert ec2().describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)[key]["Value"]
    # The public subnets (network.public_subnets) have tests of their own.
    subnets = {s["SubnetId"]: s for s in ec2().describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
        if s["SubnetId"] not in out["public_subnet_ids"]}
    assert sorted((s["CidrBlock"], s["AvailabilityZone"]) for s in subnets.values()) == [
        ("10.0.11.0/24", "eu-central-1a"), ("10.0.12.0/24", "eu-central-1b"),
        ("10.0.13.0/24", "eu-central-1c")]
    assert not any(s["MapPublicIpOnLaunch"] for s in subnets.values())
    for subnet_id, table_id in zip(out["subnet_ids"], out["route_table_ids"]):
        table = ec2().describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
        assert [a["SubnetId"] for a in table["Associations"]] == [subnet_id]
        assert [r["GatewayId"] for r in table["Routes"]] == ["local"]


def test_network_adopts_vpc_and_subnets_made_beforehand_by_cidr(account, config):
    vpc_id = ec2().create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    for cidr, az in (("10.0.11.0/24", "a"), ("10.0.12.0/24", "b"), ("10.0.13.0/24", "c")):
        ec2().create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=REGION + az)

    results, _ = run(config, ["network"])

    network = results["network"]
    assert network.status == "ok", network.error
    assert [v["VpcId"] for v in our_vpcs()] == [vpc_id]
    cidrs = [s["CidrBlock"] for s in ec2().describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]]
    # The three private ones adopted, not made again; the two public ones made.
    assert sorted(cidrs) == ["10.0.101.0/24", "10.0.102.0/24", "10.0.11.0/24",
                             "10.0.12.0/24", "10.0.13.0/24"]
    actions = {(c.action, c.resource.split()[0]) for c in network.changes}
    created = [c.resource for c in network.changes if c.action == "create"]
    assert not [r for r in created if r.startswith(("ec2:vpc", "ec2:subnet matbakh-prod-private"))]
    assert ("update", "ec2:vpc") in actions  # tags and DNS hostnames
    tags = {t["Key"]: t["Value"] for t in ec2().describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Tags"]}
    assert tags["runbook:env"] == "prod" and tags["runbook:step"] == "network"
    again, _ = run(config, ["network"])
    assert again["network"].api_calls["write"] == 0


def test_network_adopts_vpc_given_by_id(account, write_config):
    vpc_id = ec2().create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2().create_vpc(CidrBlock="10.0.0.0/16")  # a second one with the same block
    config = config_mod.load(write_config(lambda d: d["network"].update(vpc_id=vpc_id)))
    results, _ = run(config, ["network"])
    assert results["network"].outputs["vpc_id"] == vpc_id
    assert len(our_vpcs()) == 2


def test_network_refuses_to_guess_between_two_untagged_vpcs_with_the_block(account, config):
    for _ in range(2):
        ec2().create_vpc(CidrBlock="10.0.0.0/16")
    results, aws = run(config, ["network"])
    assert results["network"].status == "failed"
    assert results["network"].error_kind == "input"
    assert "network.vpc_id" in results["network"].error
    assert aws.total("write") == 0


def test_network_refuses_a_vpc_id_that_does_not_exist(account, write_config):
    config = config_mod.load(write_config(lambda d: d["network"].update(vpc_id="vpc-0123456789abcdef0")))
    results, aws = run(config, ["network"])
    assert results["network"].error_kind == "input"
    assert "network.vpc_id vpc-0123456789abcdef0" in results["network"].error
    assert aws.total("write") == 0


def test_network_refuses_to_adopt_a_public_subnet(account, config):
    vpc_id = ec2().create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2().create_subnet(VpcId=vpc_id, CidrBlock="10.0.11.0/24",
                                 AvailabilityZone="eu-central-1a")["Subnet"]["SubnetId"]
    igw = ec2().create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2().attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    table = ec2().create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2().create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2().associate_route_table(RouteTableId=table, SubnetId=subnet)

    results, aws = run(config, ["network"])

    assert results["network"].error_kind == "input"
    assert "network.subnets[0]" in results["network"].error and igw in results["network"].error
    assert aws.total("write") == 0


def test_network_refuses_an_existing_subnet_in_another_zone(account, config):
    vpc_id = ec2().create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2().create_subnet(VpcId=vpc_id, CidrBlock="10.0.12.0/24", AvailabilityZone="eu-central-1c")
    results, _ = run(config, ["network"])
    assert results["network"].error_kind == "input"
    assert "network.subnets[1]" in results["network"].error
    assert "cannot move" in results["network"].error


def test_network_associates_its_own_orphaned_route_table_instead_of_making_another(account, config):
    run(config, ["network"])
    out = run(config, ["network"])[0]["network"].outputs
    table = out["route_table_ids"][0]
    association = ec2().describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Associations"][0]
    ec2().disassociate_route_table(AssociationId=association["RouteTableAssociationId"])

    results, _ = run(config, ["network"])

    assert [(c.action, c.op) for c in results["network"].changes] == [("update", "associate")]
    assert results["network"].outputs["route_table_ids"] == out["route_table_ids"]


# -- database -------------------------------------------------------------------------

def test_database_creates_the_cluster_as_the_runbook_requires(account, config):
    results, aws = run(config, ["network", "database"])
    out = results["database"].outputs
    cluster = rds().describe_db_clusters(DBClusterIdentifier="matbakh-prod")["DBClusters"][0]
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["DatabaseName"] == "matbakh_main"
    assert cluster["IAMDatabaseAuthenticationEnabled"] is True
    assert cluster["StorageEncrypted"] is True
    assert cluster["DeletionProtection"] is True
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 4.0}
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [out["security_group_id"]]
    # AWS's default egress stays: Aurora's aws_s3, aws_lambda and ML features connect out
    # through the cluster's group. Its ingress is step vpc-integrate's.
    rules = ec2().describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [out["security_group_id"]]}])["SecurityGroupRules"]
    assert [(r["IsEgress"], r["IpProtocol"], r.get("CidrIpv4")) for r in rules] == [
        (True, "-1", "0.0.0.0/0")]
    assert "ec2:RevokeSecurityGroupEgress" not in [e["call"] for e in aws.journal.entries]
    group = rds().describe_db_subnet_groups(DBSubnetGroupName="matbakh-prod-subnets")["DBSubnetGroups"][0]
    assert sorted(s["SubnetIdentifier"] for s in group["Subnets"]) == \
        sorted(results["network"].outputs["subnet_ids"])
    instances = rds().describe_db_instances()["DBInstances"]
    assert [(i["DBInstanceIdentifier"], i["DBInstanceClass"]) for i in instances] == \
        [("matbakh-prod-1", "db.serverless")]
    assert out["endpoint"] == cluster["Endpoint"]


def test_database_repairs_drift_on_the_cluster_and_then_rests(account, config):
    run(config, ["network", "database"])
    rds().modify_db_cluster(DBClusterIdentifier="matbakh-prod", DeletionProtection=False,
                            ServerlessV2ScalingConfiguration={"MinCapacity": 1, "MaxCapacity": 8},
                            ApplyImmediately=True)

    results, _ = run(config, ["database"])

    [change] = results["database"].changes
    assert change.action == "update" and change.resource == "rds:cluster matbakh-prod"
    assert change.diff["deletion_protection"] == {"from": False, "to": True}
    assert change.diff["serverless_v2"]["to"] == {"MinCapacity": 0.5, "MaxCapacity": 4.0}
    cluster = rds().describe_db_clusters(DBClusterIdentifier="matbakh-prod")["DBClusters"][0]
    assert cluster["DeletionProtection"] is True
    assert run(config, ["database"])[0]["database"].api_calls["write"] == 0


def test_database_refuses_an_unencrypted_cluster_it_cannot_fix_in_place(account, config):
    run(config, ["network"])
    rds().create_db_subnet_group(DBSubnetGroupName="matbakh-prod-subnets", DBSubnetGroupDescription="x",
                                 SubnetIds=run(config, ["network"])[0]["network"].outputs["subnet_ids"])
    rds().create_db_cluster(DBClusterIdentifier="matbakh-prod", Engine="aurora-postgresql",
                            MasterUsername="postgres", MasterUserPassword="x" * 20,
                            DBSubnetGroupName="matbakh-prod-subnets", StorageEncrypted=False)
    results, aws = run(config, ["database"])
    assert results["database"].error_kind == "input"
    assert "not encrypted" in results["database"].error
    assert aws.total("write") == 0


def test_database_alone_on_an_empty_account_names_the_phase_to_run_first(account, config):
    results, aws = run(config, ["database"])
    assert results["database"].status == "failed"
    assert results["database"].error_kind == "input"
    assert "runbook run --phase a1" in results["database"].error
    assert aws.total("write") == 0


# -- store-secrets --------------------------------------------------------------------

def test_db_secret_is_rds_style_and_the_cluster_password_matches_it(account, config):
    results, _ = run(config, A1)
    value = secret_value("matbakh-db-postgres")
    assert set(value) >= {"engine", "host", "port", "dbname", "username", "password"}
    assert value["host"] == results["database"].outputs["endpoint"]
    assert value["dbname"] == "matbakh_main" and value["port"] == 5432
    assert len(value["password"]) >= 32
    tags = {t["Key"]: t["Value"] for t in rds().describe_db_clusters(
        DBClusterIdentifier="matbakh-prod")["DBClusters"][0]["TagList"]}
    assert tags["runbook:password-id"] == value["password_id"]
    app = secret_value("matbakh-app-config")
    assert len(app["jwt_secret"]) >= 48 and app["app_name"] == "matbakh"


def cluster_password(cluster_id="matbakh-prod"):
    """The master password moto holds for the cluster (no AWS API shows it)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.rds.models import rds_backends

    return rds_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id]._master_user_password


def test_a_new_cluster_is_created_with_the_db_secrets_password_and_its_tag(account, config):
    results, aws = run(config, A1)

    calls = [e["call"] for e in aws.journal.entries]
    assert "rds:CreateDBCluster" in calls
    assert "rds:ModifyDBCluster" not in calls and "rds:AddTagsToResource" not in calls
    value = secret_value("matbakh-db-postgres")
    assert cluster_password() == value["password"]
    assert "master_password" not in results["database"].outputs
    assert value["password"] not in repr(results["database"].outputs)


def test_a_run_that_stopped_before_the_secret_sets_the_password_the_secret_keeps(account,
                                                                                 config):
    run(config, ["network", "database"])    # its password is lost with the run
    made = cluster_password()

    results, aws = run(config, ["store-secrets"])

    value = secret_value("matbakh-db-postgres")
    assert value["password"] != made and cluster_password() == value["password"]
    assert [e["call"] for e in aws.journal.entries] == [
        "secretsmanager:CreateSecret", "secretsmanager:CreateSecret", "rds:ModifyDBCluster",
        "rds:AddTagsToResource"]
    tags = {t["Key"]: t["Value"] for t in rds().describe_db_clusters(
        DBClusterIdentifier="matbakh-prod")["DBClusters"][0]["TagList"]}
    assert tags["runbook:password-id"] == value["password_id"]


def test_generated_values_survive_a_change_of_non_secret_fields(account, config, write_config):
    run(config, A1)
    before_db, before_app = secret_value("matbakh-db-postgres"), secret_value("matbakh-app-config")
    changed = config_mod.load(write_config(
        lambda d: d["secrets"]["app_settings"].update(default_language="en")))

    results, aws = run(changed, ["store-secrets"])

    step = results["store-secrets"]
    assert [(c.action, c.resource) for c in step.changes] == [
        ("update", "secretsmanager:secret matbakh-app-config")]
    assert step.changes[0].diff == {"default_language": {"from": "de", "to": "en"}}
    assert [e["call"] for e in aws.journal.entries] == ["secretsmanager:PutSecretValue"]
    after_app = secret_value("matbakh-app-config")
    assert after_app["jwt_secret"] == before_app["jwt_secret"]
    assert after_app["default_language"] == "en"
    assert secret_value("matbakh-db-postgres") == before_db


def test_secret_scheduled_for_deletion_is_restored_not_recreated(account, config):
    run(config, A1)
    before = secret_value("matbakh-db-postgres")
    sm().delete_secret(SecretId="matbakh-db-postgres", RecoveryWindowInDays=7)

    results, aws = run(config, ["store-secrets"])

    calls = [e["call"] for e in aws.journal.entries]
    assert calls == ["secretsmanager:RestoreSecret"]
    assert results["store-secrets"].changes[0].diff["deletion"]["to"] == "restored"
    assert secret_value("matbakh-db-postgres") == before
    assert "DeletedDate" not in sm().describe_secret(SecretId="matbakh-db-postgres")


def test_adopted_secret_keeps_its_password_and_extra_fields(account, config):
    run(config, ["network", "database"])
    sm().create_secret(Name="matbakh-db-postgres", SecretString=json.dumps(
        {"username": "postgres", "password": "made-by-the-old-script", "note": "keep me"}))

    results, _ = run(config, ["store-secrets"])

    value = secret_value("matbakh-db-postgres")
    assert value["password"] == "made-by-the-old-script"
    assert value["note"] == "keep me"
    endpoint = rds().describe_db_clusters(DBClusterIdentifier="matbakh-prod")["DBClusters"][0]["Endpoint"]
    assert value["host"] == endpoint  # runbook's fields are added to the adopted secret
    resources = [c.resource for c in results["store-secrets"].changes]
    assert "rds:cluster matbakh-prod" in resources  # the cluster is set to the kept password
    assert all("made-by-the-old-script" not in json.dumps(c.as_report())
               for c in results["store-secrets"].changes)


def test_secret_that_is_not_json_is_refused_untouched(account, config):
    run(config, ["network", "database"])
    sm().create_secret(Name="matbakh-db-postgres", SecretString="not json")
    results, aws = run(config, ["store-secrets"])
    assert results["store-secrets"].error_kind == "input"
    assert "not a JSON object" in results["store-secrets"].error
    assert aws.total("write") == 0
    assert sm().get_secret_value(SecretId="matbakh-db-postgres")["SecretString"] == "not json"


# -- tags -----------------------------------------------------------------------------

def test_everything_taggable_carries_env_and_step_tags(account, config):
    run(config, A1)

    def tagged(tags, step):
        tags = {t["Key"]: t["Value"] for t in tags or ()}
        return tags.get("runbook:env") == "prod" and tags.get("runbook:step") == step

    [vpc] = our_vpcs()
    assert tagged(vpc["Tags"], "network")
    filters = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    assert all(tagged(s["Tags"], "network") for s in ec2().describe_subnets(Filters=filters)["Subnets"])
    tables = [t for t in ec2().describe_route_tables(Filters=filters)["RouteTables"]
              if not any(a.get("Main") for a in t["Associations"])]
    # One table per private subnet, and the public one (network.public_subnets).
    assert len(tables) == 4 and all(tagged(t["Tags"], "network") for t in tables)
    [group] = [g for g in ec2().describe_security_groups(Filters=filters)["SecurityGroups"]
               if g["GroupName"] != "default"]
    assert tagged(group["Tags"], "database")
    cluster = rds().describe_db_clusters()["DBClusters"][0]
    assert tagged(cluster["TagList"], "database")
    assert tagged(rds().describe_db_instances()["DBInstances"][0]["TagList"], "database")
    subnet_group = rds().describe_db_subnet_groups()["DBSubnetGroups"][0]
    assert tagged(rds().list_tags_for_resource(
        ResourceName=subnet_group["DBSubnetGroupArn"])["TagList"], "database")
    for name in ("matbakh-db-postgres", "matbakh-app-config"):
        assert tagged(sm().describe_secret(SecretId=name)["Tags"], "store-secrets")


# -- plan -----------------------------------------------------------------------------

def test_plan_on_an_empty_account_lists_every_resource_and_writes_nothing(account, config):
    results, aws = run(config, A1, plan_only=True)
    assert aws.total("write") == 0
    resources = [(c.action, c.resource) for r in results.values() for c in r.changes]
    assert ("create", "ec2:vpc matbakh-prod-vpc") in resources
    assert sum(1 for a, r in resources if r.startswith("ec2:subnet matbakh-prod-private")) == 3
    assert sum(1 for a, r in resources if r.startswith("ec2:subnet matbakh-prod-public")) == 2
    assert ("create", "rds:cluster matbakh-prod") in resources
    assert ("create", "secretsmanager:secret matbakh-db-postgres") in resources
    assert our_vpcs() == []


# -- waiting --------------------------------------------------------------------------

def test_waiting_on_a_cluster_that_never_becomes_available_prints_elapsed_time_then_fails(
        account, config, capsys):
    """Step database moves on; the step that needs the instances available waits."""
    run(config, ["network", "database", "store-secrets"])
    rds().stop_db_instance(DBInstanceIdentifier="matbakh-prod-1")  # "stopped" is not "available"
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    runner = new_runner(config, ClientFactory(REGION), Progress(wait_report_every_s=300),
                    sleep=sleep, clock=lambda: now[0])
    database, result = runner.run(["database", "fix-tables"])

    assert database.status == "ok" and database.outputs["available"] is False
    assert result.status == "failed" and result.error_kind == "failure"  # exit 1, not 2
    assert "rds instances of matbakh-prod to be available" in result.error
    assert "still not ready after 45m00s" in result.error
    assert result.api_calls["write"] == 0
    waiting = [line for line in capsys.readouterr().out.splitlines() if "waiting for" in line]
    assert [line.rsplit("... ", 1)[1] for line in waiting[:3]] == ["0s", "5m00s", "10m00s"]


def test_a_stopped_cluster_is_refused_with_the_command_that_starts_it(account, config):
    run(config, ["network", "database"])
    rds().stop_db_cluster(DBClusterIdentifier="matbakh-prod")
    results, aws = run(config, ["database"])
    assert results["database"].error_kind == "input"
    assert "aws rds start-db-cluster --db-cluster-identifier matbakh-prod" in results["database"].error
    assert aws.total("write") == 0


# -- review findings ------------------------------------------------------------------

def test_a_route_table_shared_by_all_subnets_is_adopted_once_and_keeps_its_name(account, config):
    vpc_id = ec2().create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[{
        "ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "legacy-vpc"}]}])["Vpc"]["VpcId"]
    table = ec2().create_route_table(VpcId=vpc_id, TagSpecifications=[{
        "ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": "legacy-private"}]}],
    )["RouteTable"]["RouteTableId"]
    for cidr, az in (("10.0.11.0/24", "a"), ("10.0.12.0/24", "b"), ("10.0.13.0/24", "c")):
        subnet = ec2().create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=REGION + az)
        ec2().associate_route_table(RouteTableId=table, SubnetId=subnet["Subnet"]["SubnetId"])

    first, _ = run(config, ["network"])
    second, _ = run(config, ["network"])

    assert first["network"].status == "ok", first["network"].error
    private = [c for c in first["network"].changes if c.resource.startswith("ec2:route-table")
               and not c.resource.startswith("ec2:route-table matbakh-prod-public")]
    assert len(private) == 1
    assert second["network"].api_calls["write"] == 0
    tags = {t["Key"]: t["Value"] for t in
            ec2().describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Tags"]}
    assert tags["Name"] == "legacy-private" and tags["runbook:env"] == "prod"
    vpc_tags = {t["Key"]: t["Value"] for t in ec2().describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Tags"]}
    assert vpc_tags["Name"] == "legacy-vpc"


def test_the_default_vpc_is_never_adopted(account, write_config):
    [default] = [v for v in ec2().describe_vpcs()["Vpcs"] if v.get("IsDefault")]

    def use_default_block(data):
        data["network"]["cidr"] = default["CidrBlock"]
        base = default["CidrBlock"].rsplit(".", 2)[0]
        for index, subnet in enumerate(data["network"]["subnets"]):
            subnet["cidr"] = f"{base}.{200 + index}.0/24"
        for index, subnet in enumerate(data["network"].get("public_subnets", ())):
            subnet["cidr"] = f"{base}.{210 + index}.0/24"

    results, _ = run(config_mod.load(write_config(use_default_block)), ["network"])
    assert results["network"].status == "ok", results["network"].error
    assert results["network"].outputs["vpc_id"] != default["VpcId"]
    assert any(c.action == "create" and c.resource.startswith("ec2:vpc")
               for c in results["network"].changes)


def test_an_adopted_password_rds_would_refuse_is_reported_without_its_value(account, config):
    run(config, ["network", "database"])
    sm().create_secret(Name="matbakh-db-postgres",
                       SecretString=json.dumps({"password": 12345678901}))
    results, aws = run(config, ["store-secrets"])
    step = results["store-secrets"]
    assert step.error_kind == "input" and "not shown" in step.error
    assert "12345678901" not in step.error
    assert aws.total("write") == 0


def test_a_publicly_accessible_instance_is_made_private(account, config):
    run(config, ["network", "database"])
    rds().modify_db_instance(DBInstanceIdentifier="matbakh-prod-1", PubliclyAccessible=True,
                             ApplyImmediately=True)
    results, _ = run(config, ["database"])
    assert [(c.op, c.diff) for c in results["database"].changes] == [
        ("make_private", {"publicly_accessible": {"from": True, "to": False}})]
    assert rds().describe_db_instances()["DBInstances"][0]["PubliclyAccessible"] is False
    assert run(config, ["database"])[0]["database"].api_calls["write"] == 0


def test_an_interrupted_run_keeps_the_results_of_the_steps_before_it(account, config):
    from runbook.app import _keep_interrupted

    def interrupt(service, operation, write):
        if operation == "CreateDBCluster":
            raise KeyboardInterrupt

    aws = ClientFactory(REGION, interceptors=[interrupt])
    runner = new_runner(config, aws, Progress(quiet=True), sleep=lambda s: None)
    results = []
    with pytest.raises(KeyboardInterrupt):
        try:
            runner.run(A1, results)
        finally:
            _keep_interrupted(runner, results)
    assert [(r.name, r.status) for r in results] == [("network", "ok"), ("database", "interrupted")]
    assert [e["call"] for e in aws.journal.entries][-4:] == [
        "ec2:CreateSecurityGroup", "rds:CreateDBSubnetGroup",
        "rds:CreateDBClusterParameterGroup", "rds:ModifyDBClusterParameterGroup"]
