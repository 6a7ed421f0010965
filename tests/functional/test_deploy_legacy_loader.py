"""Step `deploy-legacy-loader` against in-process moto, after hash-table, with an MSK
cluster made in moto (kafka CreateClusterV2) standing for step msk-cluster, which is
not built in this version: its outputs are fed to the run (tests/msk_outputs.py). The
function outside the VPC, its least-privilege role and the MSK event source mapping
are read back from the account; a second apply makes no mutating call."""

from __future__ import annotations

import boto3
import pytest
import yaml

from runbook import config as config_mod
from runbook.functions import package
from tests.conftest import PROD_CONFIG, REGION
from tests.functional.conftest import run_steps
from tests.msk_outputs import for_cluster

STEP = "deploy-legacy-loader"
FUNCTION = "matbakh-cognito-legacy-loader"
TABLE = "matbakh-prod-legacy-user-hashes"
ACCOUNT = "123456789012"
CLUSTER_NAME = "matbakh-prod-msk"


def with_a5(tmp_path, **legacy):
    data = yaml.safe_load(PROD_CONFIG.read_text())
    data["phases"]["a5"] = ["hash-table", "msk-cluster", STEP]
    data["legacy"].update(legacy)
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(path)


def client(service):
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def msk(account):
    """msk-cluster's outputs for a cluster made in moto."""
    arn = client("kafka").create_cluster_v2(ClusterName=CLUSTER_NAME, Provisioned={
        "BrokerNodeGroupInfo": {"InstanceType": "kafka.m5.large",
                                "ClientSubnets": ["subnet-pub-a", "subnet-pub-b"]},
        "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2,
        "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}}}})["ClusterArn"]
    return for_cluster(arn, CLUSTER_NAME, region=REGION, account=ACCOUNT)


def run(config, names, msk):
    results, aws = run_steps(config, names, upstream={"msk-cluster": msk})
    failed = {n: r.error for n, r in results.items() if r.status != "ok"}
    assert not failed, failed
    return results, aws


def deployed(config, msk):
    return run(config, ["hash-table", STEP], msk)[0]


def test_second_apply_makes_no_mutating_call(msk, tmp_path):
    config = with_a5(tmp_path)
    first = deployed(config, msk)
    assert first[STEP].changed
    again, aws = run(config, [STEP], msk)
    assert again[STEP].changes == []
    assert again[STEP].api_calls["write"] == 0 and again[STEP].api_calls["read"] > 0
    assert aws.journal.entries == []


def test_mapping_reads_the_topic_in_the_loaders_group_from_the_start(msk, tmp_path):
    results = deployed(with_a5(tmp_path), msk)
    [found] = client("lambda").list_event_source_mappings(
        FunctionName=FUNCTION, EventSourceArn=msk.cluster_arn)["EventSourceMappings"]
    assert found["Topics"] == ["legacy-users"]
    assert found["StartingPosition"] == "TRIM_HORIZON"
    assert found["BatchSize"] == 100
    assert found["AmazonManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": f"{TABLE}-loader"}
    assert found["ProvisionedPollerConfig"] == {"MinimumPollers": 1, "MaximumPollers": 2}
    assert found["State"] == "Enabled"
    assert found["FunctionArn"].endswith(f":function:{FUNCTION}")
    outputs = results[STEP].outputs
    assert outputs["mapping_uuid"] == found["UUID"]
    assert outputs["consumer_group"] == f"{TABLE}-loader"
    assert outputs["function_name"] == FUNCTION
    assert outputs["code_sha256"] == package.build_function("legacy_loader").sha256


def test_function_is_outside_the_vpc_with_the_table_in_its_environment(msk, tmp_path):
    deployed(with_a5(tmp_path), msk)
    conf = client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]
    assert not (conf.get("VpcConfig") or {}).get("SubnetIds")
    assert conf["Environment"]["Variables"] == {"HASH_TABLE": TABLE}
    assert (conf["MemorySize"], conf["Timeout"]) == (256, 60)
    assert client("lambda").list_tags(Resource=conf["FunctionArn"])["Tags"][
        "runbook:function"] == "legacy_loader"


def test_role_reads_one_topic_in_one_group_and_writes_one_table(msk, tmp_path):
    results = deployed(with_a5(tmp_path), msk)
    policy = client("iam").get_role_policy(RoleName=f"{FUNCTION}-role",
                                           PolicyName="runbook")["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert sorted(by_sid) == ["CommitInLoaderGroup", "ConnectToCluster", "DecryptTableKey",
                              "DescribeCluster", "Logs", "PollerNetwork", "ReadLegacyTopic",
                              "WriteHashes"]
    scope = f"{CLUSTER_NAME}/{msk.cluster_uuid}"
    prefix = f"arn:aws:kafka:{REGION}:{ACCOUNT}"
    assert by_sid["DescribeCluster"]["Resource"] == msk.cluster_arn
    assert by_sid["ConnectToCluster"]["Resource"] == msk.cluster_arn
    assert sorted(by_sid["ConnectToCluster"]["Action"]) == [
        "kafka-cluster:Connect", "kafka-cluster:DescribeClusterDynamicConfiguration"]
    assert by_sid["ReadLegacyTopic"]["Resource"] == f"{prefix}:topic/{scope}/legacy-users"
    assert by_sid["ReadLegacyTopic"]["Resource"] == msk.topic_arn
    assert sorted(by_sid["ReadLegacyTopic"]["Action"]) == [
        "kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    assert by_sid["CommitInLoaderGroup"]["Resource"] == (
        f"{prefix}:group/{scope}/{TABLE}-loader")
    assert by_sid["CommitInLoaderGroup"]["Resource"].startswith(msk.group_arn_prefix)
    assert sorted(by_sid["CommitInLoaderGroup"]["Action"]) == [
        "kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    table = results["hash-table"].outputs
    assert by_sid["WriteHashes"]["Action"] == "dynamodb:BatchWriteItem"
    assert by_sid["WriteHashes"]["Resource"] == table["table_arn"]
    assert by_sid["DecryptTableKey"]["Action"] == "kms:Decrypt"
    assert by_sid["DecryptTableKey"]["Resource"] == table["key_arn"]
    assert by_sid["DecryptTableKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"}}
    assert by_sid["PollerNetwork"]["Resource"] == "*"
    assert all(a.startswith("ec2:") for a in by_sid["PollerNetwork"]["Action"])
    assert client("iam").list_attached_role_policies(
        RoleName=f"{FUNCTION}-role")["AttachedPolicies"] == []
    with pytest.raises(client("lambda").exceptions.ResourceNotFoundException):
        client("lambda").get_policy(FunctionName=FUNCTION)


def test_a_changed_batch_size_and_pollers_update_only_the_mapping(msk, tmp_path):
    deployed(with_a5(tmp_path), msk)
    changed = with_a5(tmp_path, loader_batch_size=250, loader_max_pollers=4)
    results, _ = run(changed, [STEP], msk)
    assert [(c.action, c.resource.split()[0]) for c in results[STEP].changes] == [
        ("update", "lambda:event-source-mapping")]
    [found] = client("lambda").list_event_source_mappings(
        FunctionName=FUNCTION)["EventSourceMappings"]
    assert found["BatchSize"] == 250
    assert found["ProvisionedPollerConfig"] == {"MinimumPollers": 1, "MaximumPollers": 4}


def test_another_consumer_group_is_refused_naming_the_mapping_to_delete(msk, tmp_path):
    deployed(with_a5(tmp_path), msk)
    results, _ = run_steps(with_a5(tmp_path, loader_consumer_group="other-group"), [STEP],
                           upstream={"msk-cluster": msk})
    assert results[STEP].status == "failed" and results[STEP].error_kind == "input"
    assert "consumer_group" in results[STEP].error
    assert "delete-event-source-mapping" in results[STEP].error
