"""The sandbox's MSK poller (runbook.sandbox.kafka_poller) end to end, with real parts
only: records produced with kafka-python to the real broker (Tansu, runbook.sandbox.kafka),
an MSK event source mapping made through moto's Lambda API (runbook.sandbox.kafka_mapping),
the poller consuming in the mapping's consumer group, and the real loader handler
(lambdas/legacy_loader) writing to moto's DynamoDB. The poller's `invoke` seam runs the
handler in process instead of the sandbox's LocalInvoker (which needs a moto server)."""

from __future__ import annotations

import io
import json
import time
import zipfile

import boto3
import pytest
from moto import mock_aws

from runbook.functions.invoke import Invocation
from runbook.lambda_runtime import legacy_hashes
from runbook.sandbox import kafka_mapping
from runbook.sandbox.kafka import Broker
from runbook.sandbox.kafka_poller import KafkaPoller
from tests.conftest import REGION
from tests.functional.test_legacy_loader import load_handler, scan, user

pytestmark = pytest.mark.slow

TOPIC, TABLE, GROUP = "legacy-users", "matbakh-prod-legacy-user-hashes", "hashes-loader"
FUNCTION = "matbakh-cognito-legacy-loader"
USERS = 250


class Aws:
    """What the poller takes as `aws`: clients of the in-process moto."""

    def client(self, service):
        return boto3.client(service, region_name=REGION)


class Handler:
    """The real handler behind the poller's invoke seam; `fail_first` invocations raise
    before the handler runs, as a function error would fail the batch."""

    def __init__(self, fail_first: int = 0):
        self.module = load_handler()
        self.fail_first = fail_first
        self.events: list[dict] = []

    def __call__(self, function: str, event: dict) -> Invocation:
        self.events.append(event)
        if self.fail_first > 0:
            self.fail_first -= 1
            return Invocation(function, "r", error_type="Runtime.ExitError")
        try:
            return Invocation(function, "r", result=self.module.handler(event, None))
        except Exception as exc:  # noqa: BLE001 - a function error, as Lambda reports it
            return Invocation(function, "r", error_type=type(exc).__name__)


@pytest.fixture
def account(monkeypatch):
    monkeypatch.setenv("HASH_TABLE", TABLE)
    kafka_mapping.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "email",
                                                     "AttributeType": "S"}])
        role = boto3.client("iam").create_role(
            RoleName="loader-role", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context): pass\n")
        lam = boto3.client("lambda", region_name=REGION)
        lam.create_function(FunctionName=FUNCTION, Runtime="python3.11", Role=role,
                            Handler="handler.handler", Code={"ZipFile": code.getvalue()})
        cluster = boto3.client("kafka", region_name=REGION).create_cluster_v2(
            ClusterName="matbakh-prod-msk", Provisioned={
                "BrokerNodeGroupInfo": {"InstanceType": "kafka.m5.large",
                                        "ClientSubnets": ["subnet-a", "subnet-b"]},
                "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2})["ClusterArn"]
        mapping = lam.create_event_source_mapping(
            FunctionName=FUNCTION, EventSourceArn=cluster, Topics=[TOPIC],
            StartingPosition="TRIM_HORIZON", BatchSize=100,
            AmazonManagedKafkaEventSourceConfig={"ConsumerGroupId": GROUP},
            ProvisionedPollerConfig={"MinimumPollers": 1, "MaximumPollers": 2})
        yield dynamodb, cluster, mapping


def produce(bootstrap: str, count: int, *, create: bool = True) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    if create:
        admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
        admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
        admin.close()
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=5)
    for n in range(count):
        record = user(n)
        producer.send(TOPIC, key=record["email"].encode(), value=json.dumps(record).encode(),
                      headers=[("content-type", b"application/json")])
    producer.flush(timeout=30)
    producer.close()


def wait_for(condition, timeout_s: float = 90) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def offsets(events: list[dict]) -> set[tuple[int, int]]:
    return {(r["partition"], r["offset"]) for event in events
            for records in event["records"].values() for r in records}


def committed(bootstrap: str) -> int:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        offsets = admin.list_group_offsets({GROUP: None})[GROUP]
    finally:
        admin.close()
    return sum(meta.offset for meta in offsets.values())


def test_produced_records_are_consumed_in_the_group_and_stored_by_the_loader(account, tmp_path):
    dynamodb, cluster, mapping = account
    handler = Handler(fail_first=1)
    with Broker(tmp_path) as broker:
        produce(broker.bootstrap, USERS)
        poller = KafkaPoller(Aws(), handler, broker.bootstrap, retry_delay_s=0.5).start()
        try:
            assert wait_for(lambda: len(scan(dynamodb)) == USERS), poller.failures
            assert wait_for(lambda: poller.committed == USERS), poller.failures
        finally:
            assert poller.stop()
        # Lambda commits only what an invocation stored: the group's offsets cover every
        # record produced, and no more.
        assert committed(broker.bootstrap) == USERS

    table = {email: legacy_hashes.LegacyHash.from_item(item)
             for email, item in scan(dynamodb).items()}
    for n in range(USERS):
        assert table[user(n)["email"]].hash == user(n)["hash"]
    # The first batch failed, and every one of its records came again in a later batch
    # (the consumer sought back to the batch's offsets; none was committed past).
    [failure] = poller.failures
    assert (failure.mapping, failure.reason) == (mapping["UUID"], "function error")
    failed = offsets(handler.events[:1])
    assert len(failed) == failure.records > 0
    assert failed <= offsets(handler.events[1:])
    assert len(offsets(handler.events[1:])) == USERS
    # Lambda's event shape, batches of at most BatchSize records.
    for event in handler.events:
        assert (event["eventSource"], event["eventSourceArn"]) == ("aws:kafka", cluster)
        assert event["bootstrapServers"] == broker.bootstrap
        assert sum(len(v) for v in event["records"].values()) <= 100
        for name, records in event["records"].items():
            for record in records:
                assert name == f"{record['topic']}-{record['partition']}"
                assert record["timestampType"] == "CREATE_TIME"
                assert record["headers"] == [{"content-type": list(b"application/json")}]
    assert poller.invocations == len(handler.events) >= USERS // 100 + 1


def test_a_poller_stopped_while_joining_leaves_the_group_readable_for_the_next(account,
                                                                               tmp_path):
    """A run that fails at once stops its poller a moment after it started, part way
    through the group join. The next poller in the group must still get the partitions:
    on Tansu a member closed mid-join used to hold the group, and the next run's records
    were never delivered."""
    dynamodb, _, _ = account
    with Broker(tmp_path) as broker:
        produce(broker.bootstrap, 0)
        first = KafkaPoller(Aws(), Handler(), broker.bootstrap).start()
        assert wait_for(lambda: first._consumers, timeout_s=30)  # joining has begun
        assert first.stop()

        produce(broker.bootstrap, 10, create=False)  # the next run's records
        second = KafkaPoller(Aws(), Handler(), broker.bootstrap).start()
        try:
            assert wait_for(lambda: len(scan(dynamodb)) == 10, timeout_s=60), second.failures
        finally:
            assert second.stop()
    assert second.failures == [] and second.committed == 10


def test_the_mapping_is_stored_and_read_back_as_aws_answers_it(account):
    _, cluster, mapping = account
    lam = boto3.client("lambda", region_name=REGION)
    got = lam.get_event_source_mapping(UUID=mapping["UUID"])
    assert got["EventSourceArn"] == cluster and got["Topics"] == [TOPIC]
    assert got["StartingPosition"] == "TRIM_HORIZON" and got["BatchSize"] == 100
    assert got["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": GROUP}
    assert got["ProvisionedPollerConfig"] == {"MinimumPollers": 1, "MaximumPollers": 2}
    [listed] = lam.list_event_source_mappings(FunctionName=FUNCTION,
                                              EventSourceArn=cluster)["EventSourceMappings"]
    assert listed["UUID"] == mapping["UUID"]
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_event_source_mapping(FunctionName=FUNCTION, EventSourceArn=cluster,
                                        Topics=[TOPIC], StartingPosition="TRIM_HORIZON")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="StartingPosition"):
        lam.create_event_source_mapping(FunctionName=FUNCTION, EventSourceArn=cluster,
                                        Topics=["other"])
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_event_source_mapping(FunctionName=FUNCTION, EventSourceArn=cluster + "x",
                                        Topics=[TOPIC], StartingPosition="LATEST")
    lam.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=250,
                                    ProvisionedPollerConfig={"MinimumPollers": 2,
                                                             "MaximumPollers": 4})
    got = lam.get_event_source_mapping(UUID=mapping["UUID"])
    assert got["BatchSize"] == 250
    assert got["ProvisionedPollerConfig"] == {"MinimumPollers": 2, "MaximumPollers": 4}
