"""Step msk-cluster in a dry run's sandbox, as `runbook run --dry-run` wires it: moto as a
server with the sandbox's MSK control plane, the Tansu broker as the cluster's brokers,
and runbook's Kafka clients through the sandbox's access (the MSK IAM token made and
checked). The cluster becomes ACTIVE, public access completes, the topic is on the
broker, and a second run writes nothing.

The network's public subnets are made here as the network step makes them, and handed
to the step as the network step's outputs (another part of phase a5 builds them)."""

from __future__ import annotations

import pytest
import yaml

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.output.progress import Progress
from runbook.resources.kafka_topic import read_topic
from runbook.sandbox import msk as sandbox_msk
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from runbook.steps import new_runner
from runbook.steps.network import NetworkOutputs
from tests.conftest import PROD_CONFIG, REGION
from tests.functional.conftest import Clock

pytestmark = pytest.mark.slow

STEP = "msk-cluster"


def config(tmp_path):
    data = yaml.safe_load(PROD_CONFIG.read_text())
    data["network"]["public_subnets"] = [{"cidr": "10.0.101.0/24", "az": "eu-central-1a"},
                                         {"cidr": "10.0.102.0/24", "az": "eu-central-1b"}]
    data["phases"]["a5"] = [STEP]
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(path)


def public_network(ec2) -> NetworkOutputs:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    subnets = []
    for cidr, az in (("10.0.101.0/24", "eu-central-1a"), ("10.0.102.0/24", "eu-central-1b")):
        subnets.append(ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)[
            "Subnet"]["SubnetId"])
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnets[-1])
    return NetworkOutputs(vpc_id=vpc, vpc_cidr="10.0.0.0/16", subnet_ids=(),
                          route_table_ids=(), availability_zones=(),
                          public_subnet_ids=tuple(subnets))


def test_a_dry_run_makes_the_cluster_active_and_public_and_the_topic_on_the_broker(tmp_path):
    env = config(tmp_path)
    with Sandbox(Progress(quiet=True), region=REGION) as box:
        assert sandbox_msk.SIMULATED in box.simulated
        aws = ClientFactory(REGION, endpoint_url=box.aws_url, credentials=SANDBOX_CREDENTIALS)
        network = public_network(aws.client("ec2"))
        context = box.step_context()

        def run():
            clock = Clock()
            runner = new_runner(env, ClientFactory(REGION, endpoint_url=box.aws_url,
                                                   credentials=SANDBOX_CREDENTIALS),
                                Progress(quiet=True), dry_run=True, sleep=clock.sleep,
                                clock=clock, **context)
            runner.outputs["network"] = network
            [result] = runner.run([STEP])
            assert result.status == "ok", result.error
            return result

        first = run()
        assert first.outputs["bootstrap_public"] == box.kafka_broker.bootstrap
        assert first.outputs["bootstrap_private"] == box.kafka_broker.bootstrap
        admin = context["kafka"].admin(box.kafka_broker.bootstrap)
        try:
            topic = read_topic(admin, env.msk.topic)
        finally:
            admin.close()
        assert (topic.partitions, topic.replication, topic.retention_ms) == (
            3, 2, 168 * 3600 * 1000)
        # Each admin client made the MSK IAM token and had it checked: the topic's create
        # (nothing to read before: the cluster was new), and this read-back.
        assert context["kafka"].tokens_checked == 2

        again = run()
        assert again.changes == [] and again.api_calls["write"] == 0
        assert context["kafka"].tokens_checked == 3  # the second run read the topic
