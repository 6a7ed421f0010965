"""The sandbox's MSK control plane (runbook.sandbox.msk) refuses what AWS refuses and
moto 5.2.5 takes, and serves what moto lacks: a cluster that becomes ACTIVE, bootstrap
brokers, UpdateConnectivity with AWS's preconditions, and its cluster operation, also
through a moto server (the sandbox's mode), whose routes moto lacks for operations."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from runbook.sandbox import msk as sandbox_msk
from tests.conftest import REGION

BROKER = "127.0.0.1:19092"
PUBLIC = {"PublicAccess": {"Type": "SERVICE_PROVIDED_EIPS"}}


@pytest.fixture
def account():
    sandbox_msk.install()
    sandbox_msk.serve(BROKER)
    with mock_aws():
        yield
    sandbox_msk.serve(None)


def network(ec2, *, public=True, zones=("eu-central-1a", "eu-central-1b")):
    """(subnet ids, security group id) in a new VPC; public: routed to an igw."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{100 + i}.0/24",
                                 AvailabilityZone=az)["Subnet"]["SubnetId"]
               for i, az in enumerate(zones)]
    if public:
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        for subnet in subnets:
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    group = ec2.create_security_group(GroupName="msk", Description="msk", VpcId=vpc)["GroupId"]
    return subnets, group


def provisioned(subnets, group, *, brokers=2, public="DISABLED", unauthenticated=False,
                client_broker="TLS"):
    return {"KafkaVersion": "3.6.0", "NumberOfBrokerNodes": brokers,
            "BrokerNodeGroupInfo": {
                "InstanceType": "kafka.m5.large", "ClientSubnets": subnets,
                "SecurityGroups": [group],
                "StorageInfo": {"EbsStorageInfo": {"VolumeSize": 100}},
                "ConnectivityInfo": {"PublicAccess": {"Type": public}}},
            "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}},
                                     "Unauthenticated": {"Enabled": unauthenticated}},
            "EncryptionInfo": {"EncryptionInTransit": {"ClientBroker": client_broker,
                                                       "InCluster": True}}}


def clients(endpoint=None):
    return (boto3.client("kafka", region_name=REGION, endpoint_url=endpoint),
            boto3.client("ec2", region_name=REGION, endpoint_url=endpoint))


def active(kafka, arn):
    """Read until ACTIVE, as a run's wait would; the number of reads it took."""
    for reads in range(1, 10):
        if kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["State"] == "ACTIVE":
            return reads
    raise AssertionError("never ACTIVE")


def refused(call, text):
    with pytest.raises(ClientError) as raised:
        call()
    assert text in str(raised.value), str(raised.value)
    return raised.value.response["Error"]["Code"]


def test_a_cluster_is_creating_then_active_and_keeps_its_security_settings(account):
    kafka, ec2 = clients()
    arn = kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(*network(ec2)))[
        "ClusterArn"]

    assert refused(lambda: kafka.get_bootstrap_brokers(ClusterArn=arn),
                   "CREATING state") == "BadRequestException"
    assert active(kafka, arn) > 1
    prov = kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["Provisioned"]
    assert prov["ClientAuthentication"]["Sasl"]["Iam"] == {"Enabled": True}
    assert prov["EncryptionInfo"]["EncryptionInTransit"] == {"ClientBroker": "TLS",
                                                             "InCluster": True}
    brokers = kafka.get_bootstrap_brokers(ClusterArn=arn)
    assert brokers["BootstrapBrokerStringSaslIam"] == BROKER
    assert "BootstrapBrokerStringPublicSaslIam" not in brokers


@pytest.mark.parametrize("change, text", [
    ({"public": "SERVICE_PROVIDED_EIPS"}, "the only valid value for the Type parameter in "
                                          "PublicAccess is DISABLED"),
    ({"brokers": 3}, "must be a multiple of Availability Zones"),
])
def test_create_refuses_what_aws_refuses(account, change, text):
    kafka, ec2 = clients()
    subnets, group = network(ec2)

    assert refused(lambda: kafka.create_cluster_v2(
        ClusterName="c", Provisioned=provisioned(subnets, group, **change)), text) == \
        "BadRequestException"
    assert kafka.list_clusters_v2()["ClusterInfoList"] == []


def test_create_refuses_subnets_sharing_a_zone_and_a_second_cluster_with_the_name(account):
    kafka, ec2 = clients()
    subnets, group = network(ec2, zones=("eu-central-1a", "eu-central-1a"))
    refused(lambda: kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(
        subnets, group)), "different Availability Zones")

    subnets, group = network(ec2)
    kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(subnets, group))
    assert refused(lambda: kafka.create_cluster_v2(
        ClusterName="c", Provisioned=provisioned(subnets, group)),
        "already exists") == "ConflictException"
    assert len(kafka.list_clusters_v2()["ClusterInfoList"]) == 1


@pytest.mark.parametrize("public, settings, text", [
    (False, {}, "has no route to an internet gateway"),
    (True, {"unauthenticated": True}, "unauthenticated access to be turned off"),
    (True, {"client_broker": "TLS_PLAINTEXT"}, "TLS-only encryption"),
])
def test_update_connectivity_refuses_what_public_access_needs_and_the_cluster_lacks(
        account, public, settings, text):
    kafka, ec2 = clients()
    arn = kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(
        *network(ec2, public=public), **settings))["ClusterArn"]
    active(kafka, arn)
    version = kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["CurrentVersion"]

    refused(lambda: kafka.update_connectivity(ClusterArn=arn, CurrentVersion=version,
                                              ConnectivityInfo=PUBLIC), text)
    assert "BootstrapBrokerStringPublicSaslIam" not in kafka.get_bootstrap_brokers(
        ClusterArn=arn)


def test_update_connectivity_needs_an_active_cluster_and_its_current_version(account):
    kafka, ec2 = clients()
    arn = kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(*network(ec2)))[
        "ClusterArn"]
    refused(lambda: kafka.update_connectivity(ClusterArn=arn, CurrentVersion="1.0",
                                              ConnectivityInfo=PUBLIC), "CREATING state")
    active(kafka, arn)

    refused(lambda: kafka.update_connectivity(ClusterArn=arn, CurrentVersion="K0STALE",
                                              ConnectivityInfo=PUBLIC),
            "is not the current version")


def public_access(kafka, arn) -> str:
    version = kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["CurrentVersion"]
    operation = kafka.update_connectivity(ClusterArn=arn, CurrentVersion=version,
                                          ConnectivityInfo=PUBLIC)["ClusterOperationArn"]
    states = [kafka.describe_cluster_operation_v2(ClusterOperationArn=operation)[
        "ClusterOperationInfo"]["OperationState"] for _ in range(3)]
    assert states[0] == "UPDATE_IN_PROGRESS" and states[-1] == "UPDATE_COMPLETE", states
    info = kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]
    assert info["State"] == "ACTIVE" and info["CurrentVersion"] != version
    assert info["Provisioned"]["BrokerNodeGroupInfo"]["ConnectivityInfo"] == PUBLIC
    v1 = kafka.describe_cluster_operation(ClusterOperationArn=operation)["ClusterOperationInfo"]
    assert (v1["OperationType"], v1["TargetClusterInfo"]["ConnectivityInfo"]) == (
        "UPDATE_CONNECTIVITY", PUBLIC)
    return operation


def test_public_access_completes_through_its_operation_and_lists_the_public_brokers(account):
    kafka, ec2 = clients()
    arn = kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(*network(ec2)))[
        "ClusterArn"]
    active(kafka, arn)

    public_access(kafka, arn)

    assert kafka.get_bootstrap_brokers(ClusterArn=arn)[
        "BootstrapBrokerStringPublicSaslIam"] == BROKER


def test_the_operations_routes_answer_through_a_moto_server(monkeypatch):
    """The sandbox runs moto as a server, whose routes are built from moto's own, which
    have no /v1/operations or /api/v2/operations."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sandbox_msk.install()
    sandbox_msk.serve(BROKER)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = None
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        reset(url)  # moto's state is the process's: start from an empty account
        kafka, ec2 = clients(url)
        arn = kafka.create_cluster_v2(ClusterName="c", Provisioned=provisioned(
            *network(ec2)))["ClusterArn"]
        active(kafka, arn)
        public_access(kafka, arn)
    finally:
        if url:
            reset(url)
        server.stop()
        sandbox_msk.serve(None)


def reset(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).read()


def test_placeholder_subnets_pass_the_create_as_in_moto_and_public_access_refuses_them(
        account):
    kafka, _ = clients()
    arn = kafka.create_cluster_v2(ClusterName="c", Provisioned={
        "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2,
        "BrokerNodeGroupInfo": {"InstanceType": "kafka.m5.large",
                                "ClientSubnets": ["subnet-pub-a", "subnet-pub-b"]},
        "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}}}})["ClusterArn"]
    active(kafka, arn)
    version = kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["CurrentVersion"]

    refused(lambda: kafka.update_connectivity(ClusterArn=arn, CurrentVersion=version,
                                              ConnectivityInfo=PUBLIC),
            "subnet subnet-pub-a has no route to an internet gateway")
