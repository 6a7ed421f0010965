"""Step msk-cluster against in-process moto with the sandbox's MSK control plane
(runbook.sandbox.msk) and a real Kafka broker (Tansu, runbook.sandbox.kafka): what a
first apply makes, read back from the account and the broker (the group and its rules,
the cluster with IAM and TLS from creation, public access through UpdateConnectivity
and its operation, the topic with its retention); that a second apply writes nothing;
that a run cut short after the create converges without a second cluster; that a
retention changed behind runbook's back is set back; that a second cluster with the
name is refused.

The network's public subnets are made here as the network step makes them (an internet
gateway, one route table with 0.0.0.0/0 to it), and handed to the step as the network
step's outputs: step network's public subnets are another part of phase a5."""

from __future__ import annotations

import boto3
import pytest
import yaml

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.output.progress import Progress
from runbook.resources.kafka_topic import read_topic
from runbook.sandbox import kafka as sandbox_kafka
from runbook.sandbox import msk as sandbox_msk
from runbook.sandbox.stack import SANDBOX_CREDENTIALS
from runbook.steps import new_runner
from runbook.steps.network import NetworkOutputs
from tests.conftest import PROD_CONFIG, REGION
from tests.functional.conftest import Clock

STEP = "msk-cluster"
CLUSTER = "matbakh-prod-legacy"
GROUP = f"{CLUSTER}-msk"
WEEK_MS = 168 * 3600 * 1000


class Lines(Progress):
    """Progress that keeps the wait lines."""

    def __init__(self):
        super().__init__(quiet=True)
        self.waits: list[str] = []

    def waiting(self, what, elapsed):
        self.waits.append(what)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with sandbox_kafka.Broker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


@pytest.fixture
def account(broker):
    from moto import mock_aws

    sandbox_msk.install()
    sandbox_msk.serve(broker.bootstrap)
    with mock_aws():
        yield
    sandbox_msk.serve(None)


@pytest.fixture
def config(tmp_path):
    data = yaml.safe_load(PROD_CONFIG.read_text())
    data["network"]["public_subnets"] = [{"cidr": "10.0.101.0/24", "az": "eu-central-1a"},
                                         {"cidr": "10.0.102.0/24", "az": "eu-central-1b"}]
    data["phases"]["a5"] = [STEP]
    # A topic of its own per test: the broker outlives each test's account.
    data["msk"]["topic"] = f"legacy-users-{tmp_path.name[-12:].strip('_')}"
    path = tmp_path / "config" / "prod.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(path)


@pytest.fixture
def network(account):
    """A VPC with two public subnets, as step network makes them: its outputs."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    subnets = []
    for cidr, az in (("10.0.101.0/24", "eu-central-1a"), ("10.0.102.0/24", "eu-central-1b")):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)
        subnets.append(subnet["Subnet"]["SubnetId"])
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnets[-1])
    return NetworkOutputs(vpc_id=vpc, vpc_cidr="10.0.0.0/16", subnet_ids=(),
                          route_table_ids=(), availability_zones=("eu-central-1a",
                                                                  "eu-central-1b"),
                          public_subnet_ids=tuple(subnets))


def access():
    session = boto3.Session(region_name=REGION, **SANDBOX_CREDENTIALS)
    return sandbox_kafka.SandboxKafkaAccess(session, REGION, SANDBOX_CREDENTIALS)


def run(config, network, *, progress=None):
    clock = Clock()
    runner = new_runner(config, ClientFactory(REGION), progress or Progress(quiet=True),
                        kafka=access(), sleep=clock.sleep, clock=clock)
    runner.outputs["network"] = network
    [result] = runner.run([STEP])
    return result


def apply(config, network, **kw):
    result = run(config, network, **kw)
    assert result.status == "ok", result.error
    return result


def kafka():
    return boto3.client("kafka", region_name=REGION)


def ec2():
    return boto3.client("ec2", region_name=REGION)


def topic_now(broker, name):
    admin = access().admin(broker.bootstrap)
    try:
        return read_topic(admin, name)
    finally:
        admin.close()


def test_a_first_apply_makes_the_group_the_cluster_its_public_access_and_the_topic(
        broker, config, network):
    progress = Lines()
    result = apply(config, network, progress=progress)
    topic = config.msk.topic

    assert [(c.action, c.resource, c.op) for c in result.changes] == [
        ("create", f"ec2:security-group {GROUP}", "create"),
        ("create", f"ec2:ingress-rule {GROUP} tcp/9098 from {GROUP}", "authorize"),
        ("create", f"ec2:ingress-rule {GROUP} tcp/9198 from 203.0.113.10/32", "authorize"),
        ("create", f"kafka:cluster {CLUSTER}", "create_cluster_v2"),
        ("update", f"kafka:cluster {CLUSTER}", "update_connectivity"),
        ("create", f"kafka:topic {topic}", "create_topics")]
    # The cluster was CREATING after its create, and its public access in progress.
    assert progress.waits == [
        f"kafka:cluster {CLUSTER} to be ACTIVE",
        next(w for w in progress.waits if w.startswith("the public access of"))]

    [info] = kafka().list_clusters_v2(ClusterNameFilter=CLUSTER)["ClusterInfoList"]
    prov = info["Provisioned"]
    nodes = prov["BrokerNodeGroupInfo"]
    out = result.outputs
    assert info["State"] == "ACTIVE"
    assert sorted(nodes["ClientSubnets"]) == sorted(network.public_subnet_ids)
    assert nodes["SecurityGroups"] == [out["security_group_id"]]
    assert (nodes["InstanceType"], prov["NumberOfBrokerNodes"]) == ("kafka.m5.large", 2)
    assert nodes["ConnectivityInfo"]["PublicAccess"]["Type"] == "SERVICE_PROVIDED_EIPS"
    assert prov["ClientAuthentication"] == {"Sasl": {"Iam": {"Enabled": True}},
                                            "Unauthenticated": {"Enabled": False}}
    assert prov["EncryptionInfo"]["EncryptionInTransit"] == {"ClientBroker": "TLS",
                                                             "InCluster": True}
    assert info["Tags"] == {"project": "matbakh", "Name": CLUSTER, "runbook:env": "prod",
                            "runbook:step": STEP, "runbook:created": "true"}

    [group] = ec2().describe_security_groups(GroupIds=[out["security_group_id"]])[
        "SecurityGroups"]
    ingress = {(p["FromPort"], r.get("CidrIp") or r.get("GroupId"))
               for p in group["IpPermissions"]
               for r in (*p.get("IpRanges", ()), *p.get("UserIdGroupPairs", ()))}
    assert ingress == {(9198, "203.0.113.10/32"), (9098, group["GroupId"])}

    assert topic_now(broker, topic).retention_ms == WEEK_MS
    assert (topic_now(broker, topic).partitions, topic_now(broker, topic).replication) == (3, 2)

    arn, uuid = info["ClusterArn"], info["ClusterArn"].rsplit("/", 1)[-1]
    prefix = f"arn:aws:kafka:{REGION}:123456789012"
    assert out == {
        "cluster_arn": arn, "cluster_name": CLUSTER, "cluster_uuid": uuid,
        "security_group_id": group["GroupId"], "subnet_ids": list(network.public_subnet_ids),
        "bootstrap_public": broker.bootstrap, "bootstrap_private": broker.bootstrap,
        "topic": topic, "topic_arn": f"{prefix}:topic/{CLUSTER}/{uuid}/{topic}",
        "group_arn_prefix": f"{prefix}:group/{CLUSTER}/{uuid}/"}


def test_a_second_apply_plans_nothing_and_makes_no_mutating_call(config, network):
    apply(config, network)
    again = apply(config, network)

    assert again.changes == []
    assert again.api_calls["write"] == 0
    assert again.api_calls["read"] > 0


def test_a_run_cut_short_after_the_create_converges_without_a_second_cluster(
        broker, config, network, monkeypatch):
    from runbook.resources.msk_cluster import MskCluster

    def cut(self, api, spec, found):
        raise KeyboardInterrupt("cut short")

    with monkeypatch.context() as patch:
        patch.setattr(MskCluster, "enable_public_access", cut)
        with pytest.raises(KeyboardInterrupt):
            run(config, network)
    [left] = kafka().list_clusters_v2(ClusterNameFilter=CLUSTER)["ClusterInfoList"]
    assert left["Provisioned"]["BrokerNodeGroupInfo"]["ConnectivityInfo"][
        "PublicAccess"]["Type"] == "DISABLED"

    result = apply(config, network)

    assert [(c.resource, c.op) for c in result.changes] == [
        (f"kafka:cluster {CLUSTER}", "update_connectivity"),
        (f"kafka:topic {config.msk.topic}", "create_topics")]
    [info] = kafka().list_clusters_v2(ClusterNameFilter=CLUSTER)["ClusterInfoList"]
    assert info["ClusterArn"] == left["ClusterArn"]
    assert result.outputs["bootstrap_public"] == broker.bootstrap
    assert apply(config, network).changes == []


def test_a_retention_changed_outside_runbook_is_set_back(broker, config, network):
    from kafka.admin import ConfigResource, ConfigResourceType

    apply(config, network)
    admin = access().admin(broker.bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, config.msk.topic,
                                            configs={"retention.ms": str(90 * 24 * 3600_000)})])
    finally:
        admin.close()

    result = apply(config, network)

    assert [(c.resource, c.op, c.diff) for c in result.changes] == [
        (f"kafka:topic {config.msk.topic}", "alter_configs",
         {"retention.ms": {"from": 90 * 24 * 3600_000, "to": WEEK_MS}})]
    assert topic_now(broker, config.msk.topic).retention_ms == WEEK_MS


def test_two_clusters_with_the_name_are_refused_and_nothing_is_written(config, network):
    """AWS refuses a second cluster with a name; moto does not, and the sandbox does: a
    pair left by some other tool (moto's record, here) is refused, not guessed between."""
    from moto.kafka.models import kafka_backends

    backend = kafka_backends["123456789012"][REGION]
    for _ in range(2):
        backend.create_cluster_v2(CLUSTER, {}, {"brokerNodeGroupInfo": {}}, None)

    result = run(config, network)

    assert result.status == "failed"
    assert f"2 MSK clusters are named {CLUSTER}" in result.error
    assert "aws kafka delete-cluster" in result.error
    assert result.api_calls.get("write", 0) == 0


def test_public_brokers_that_do_not_answer_fail_the_read_naming_operator_cidrs(
        config, network, monkeypatch):
    """What a live run from an address the group does not admit sees: kafka-python gives
    up bootstrapping (after its timeout; raised at once here)."""
    from kafka.errors import KafkaTimeoutError

    from runbook.resources.kafka_topic import Topic

    apply(config, network)

    def unreachable(self, bootstrap, name):
        raise KafkaTimeoutError(f"Unable to bootstrap from [{bootstrap!r}]")

    monkeypatch.setattr(Topic, "read", unreachable)
    result = run(config, network)

    assert result.status == "failed" and result.error_kind == "failure"
    assert "public brokers did not answer (KafkaTimeoutError: Unable to bootstrap" in result.error
    assert "msk.operator_cidrs (tcp/9198)" in result.error
    assert result.api_calls.get("write", 0) == 0


def test_a_cluster_made_between_the_plan_and_the_create_is_adopted_not_duplicated(
        config, network, monkeypatch):
    """What a lost answer to CreateClusterV2 (sent again) or a concurrent run leaves: the
    name is taken when runbook's create arrives, AWS answers ConflictException, and the
    cluster there is adopted."""
    from runbook.resources import msk_cluster

    real = msk_cluster.MskCluster.create
    made = []

    def create(self, api, spec):
        made.append(kafka().create_cluster_v2(ClusterName=spec.name, Tags=dict(spec.tags),
                                              Provisioned=msk_cluster.provisioned(spec))[
            "ClusterArn"])
        return real(self, api, spec)

    monkeypatch.setattr(msk_cluster.MskCluster, "create", create)
    result = apply(config, network)

    clusters = kafka().list_clusters_v2(ClusterNameFilter=CLUSTER)["ClusterInfoList"]
    assert [c["ClusterArn"] for c in clusters] == made
    assert result.outputs["cluster_arn"] == made[0]
    assert clusters[0]["Provisioned"]["BrokerNodeGroupInfo"]["ConnectivityInfo"][
        "PublicAccess"]["Type"] == "SERVICE_PROVIDED_EIPS"
