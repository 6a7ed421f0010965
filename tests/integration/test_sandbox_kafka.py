"""The sandbox's Kafka broker (runbook.sandbox.kafka): a real broker on loopback that
runbook's own clients reach through the sandbox's access, with the MSK IAM token made
and checked on every client."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook.sandbox.kafka import FAST_GROUP, Broker, SandboxKafkaAccess, tansu_binary
from runbook.sandbox.msk_token import TokenRefused

pytestmark = pytest.mark.slow

REGION = "eu-central-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def access(creds=CREDS, checked_with=CREDS) -> SandboxKafkaAccess:
    return SandboxKafkaAccess(boto3.Session(region_name=REGION, **creds), REGION, checked_with)


def test_records_go_through_the_broker_with_real_clients(tmp_path):
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    kafka = access()
    with Broker(tmp_path) as broker:
        admin = kafka.admin(broker.bootstrap)
        admin.create_topics([NewTopic("legacy-users", num_partitions=3, replication_factor=1,
                                      topic_configs={"retention.ms": "604800000"})])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "legacy-users")],
                                         config_filter="all")
        admin.close()
        assert "604800000" in json.dumps(configs, default=str)

        producer = kafka.producer(broker.bootstrap)
        sent = [producer.send("legacy-users", key=f"user{i}@example.com".encode(),
                              value=json.dumps({"n": i}).encode()) for i in range(30)]
        producer.flush(timeout=10)
        partition_of = {f"user{i}@example.com": s.get(timeout=10).partition
                        for i, s in enumerate(sent)}
        producer.close()

        consumer = kafka.consumer(broker.bootstrap, group_id="loader", auto_offset_reset="earliest",
                                  enable_auto_commit=False, **FAST_GROUP)
        consumer.subscribe(["legacy-users"])
        seen, empty = {}, 0
        while empty < 3 and len(seen) < 30:
            batch = consumer.poll(timeout_ms=1000)
            empty = 0 if batch else empty + 1
            for records in batch.values():
                for record in records:
                    seen[record.key.decode()] = (record.partition, json.loads(record.value))
        consumer.commit()
        consumer.close()
    assert {key: partition for key, (partition, _) in seen.items()} == partition_of
    assert sorted(value["n"] for _, value in seen.values()) == list(range(30))
    # Every client connected with a token the sandbox checked.
    assert kafka.tokens_checked == 3


def test_a_token_signed_with_other_credentials_is_refused_before_any_connection(tmp_path):
    kafka = access(creds={**CREDS, "aws_secret_access_key": "not-the-sandbox-one"})
    with Broker(tmp_path) as broker, pytest.raises(TokenRefused, match="signature"):
        kafka.producer(broker.bootstrap)
    assert kafka.tokens_checked == 0


def test_the_broker_stops_and_leaves_no_process(tmp_path):

    broker = Broker(tmp_path).start()
    process = broker._process
    broker.stop()
    assert process.poll() is not None
    broker.stop()  # twice is fine
    assert tansu_binary().endswith("bin/tansu")


def test_a_port_another_process_took_first_is_given_up_for_another(tmp_path, monkeypatch):
    """Sandboxes side by side: the port picked as free is bound by another process before
    the broker binds it. The broker is not taken for ready by a connection to that
    process, and starts on another port."""
    import socket

    from runbook.sandbox import kafka

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()  # accepts connections, as another broker would
    ports = [taken.getsockname()[1]]
    free = kafka._free_port
    monkeypatch.setattr(kafka, "_free_port", lambda: ports.pop() if ports else free())
    try:
        with Broker(tmp_path) as broker:
            assert broker.port != taken.getsockname()[1]
            admin = access().admin(broker.bootstrap)  # the broker answers Kafka there
            assert isinstance(admin.list_topics(), list)
            admin.close()
    finally:
        taken.close()
