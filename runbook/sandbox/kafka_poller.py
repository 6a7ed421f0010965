"""Lambda's MSK poller, for the sandbox: what runs an MSK event source mapping there.

On AWS, Lambda reads each enabled MSK mapping's topic in the mapping's consumer group,
from its StartingPosition, invokes the function with up to BatchSize records in one
event, and commits the group's offsets only after the invocation succeeded; a failed
invocation is retried with the same records, so the batch is neither lost nor skipped
(AWS-FACTS C). moto keeps such mappings (runbook.sandbox.kafka_mapping) but runs none.

`KafkaPoller` does Lambda's part against the sandbox's real broker
(runbook.sandbox.kafka): one kafka-python consumer per enabled mapping, in the
mapping's consumer group (Tansu handles one member per group: Lambda's pollers are the
only members here), reading the mappings back through the sandbox's Lambda API as any
client would. Each event has Lambda's shape (`msk_event`): records by
"<topic>-<partition>", key and value base64, headers as byte lists. A failed invoke is
recorded, the consumer seeks back to the batch's first offsets, and the same records
come again after `retry_delay_s` (compressed time; Lambda retries at once, with
backoff, until the records expire).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from typing import Callable

from runbook.sandbox.kafka_mapping import is_msk

SIMULATED = ("Lambda's MSK poller: the sandbox reads each enabled MSK mapping's topic on "
             "its broker in the mapping's consumer group (one consumer per group, plain "
             "Kafka instead of the execution role's IAM login), invokes the function with "
             "up to BatchSize records in Lambda's event shape, commits the offsets only "
             "after a successful invocation, and after a failed one reads the same records "
             "again {delay:g} s later; provisioned pollers and their scaling are not "
             "modelled")

RETRY_DELAY_S = 1
# Timestamp types as kafka-python numbers them, and as Lambda's event spells them.
TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}
# Consumer settings that make a group join take about a second on Tansu (A5-BROKER).
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 200}
# How long a stopping poller lets a consumer finish joining before it leaves (_close).
JOIN_BEFORE_LEAVE_S = 5.0

Invoke = Callable[[str, dict], object]  # (function ARN, event) -> Invocation


def msk_event(batch: dict, cluster_arn: str, bootstrap: str) -> dict:
    """Lambda's event for a poll: `batch` is {TopicPartition: [ConsumerRecord]}."""
    records: dict[str, list[dict]] = {}
    for partition, consumed in sorted(batch.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
        records[f"{partition.topic}-{partition.partition}"] = [{
            "topic": r.topic, "partition": r.partition, "offset": r.offset,
            "timestamp": r.timestamp,
            "timestampType": TIMESTAMP_TYPES.get(r.timestamp_type, "CREATE_TIME"),
            "key": _b64(r.key), "value": _b64(r.value),
            "headers": [{name: list(value or b"")} for name, value in (r.headers or [])],
        } for r in consumed]
    return {"eventSource": "aws:kafka", "eventSourceArn": cluster_arn,
            "bootstrapServers": bootstrap, "records": records}


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


@dataclass(frozen=True)
class Failure:
    """A batch that failed: ids and error types only, never a record (values carry
    password hashes)."""

    mapping: str               # the mapping's UUID ("" for the poller's own errors)
    function: str
    reason: str                # "function error", "poller error"
    error_type: str | None
    records: int


class KafkaPoller:
    """Polls the enabled MSK mappings of one region of the sandbox, as Lambda does.

    `aws` gives its Lambda client (pointed at the sandbox), `invoke` runs a function
    (LocalInvoker.invoke), `bootstrap` is the broker's "host:port" (the sandbox has one
    broker for every cluster), `consumer_kwargs` the client settings (plain Kafka by
    default), `any_mapping` (optional) says cheaply whether the account holds an MSK
    mapping at all: while it holds none, a poll asks nothing. One thread does everything
    in turn.
    """

    def __init__(self, aws, invoke: Invoke, bootstrap: str, *, consumer_kwargs: dict | None = None,
                 interval_s: float = 0.2, poll_timeout_ms: int = 300,
                 retry_delay_s: float = RETRY_DELAY_S, refresh_s: float = 2.0,
                 join_timeout_s: float = 60.0, any_mapping: Callable[[], bool] | None = None):
        self.aws, self.invoke, self.bootstrap = aws, invoke, bootstrap
        self.any_mapping = any_mapping
        self.consumer_kwargs = consumer_kwargs or {"security_protocol": "PLAINTEXT"}
        self.interval_s, self.poll_timeout_ms = interval_s, poll_timeout_ms
        self.retry_delay_s, self.refresh_s = retry_delay_s, refresh_s
        self.join_timeout_s = join_timeout_s
        self.failures: list[Failure] = []
        self.invocations = 0
        self.committed = 0          # records whose offsets were committed
        self._consumers: dict[str, object] = {}     # mapping UUID -> KafkaConsumer
        self._mappings: dict[str, dict] = {}
        self._retry_at: dict[str, float] = {}
        self._refreshed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> "KafkaPoller":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="runbook-msk-poller",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Stop after the batch in flight and leave the groups (each consumer closes
        within its short session); False if the thread is still running after
        join_timeout_s."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(self.join_timeout_s)
        stopped = not self._thread.is_alive()
        if stopped:
            self._thread = None
        return stopped

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- polling -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    busy = self.poll_once()
                except Exception as exc:  # noqa: BLE001 - never raise into the sandbox
                    error = Failure("", "", "poller error", type(exc).__name__, 0)
                    if not self.failures or self.failures[-1] != error:
                        self.failures.append(error)
                    busy = False
                if not busy:
                    self._stop.wait(self.interval_s)
        finally:
            for uuid in list(self._consumers):
                self._close(uuid)

    def poll_once(self) -> bool:
        """One poll of each enabled MSK mapping; True if any records came."""
        if not self._mappings and self.any_mapping is not None and not self.any_mapping():
            return False
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_s or not self._mappings:
            self._refresh()
            self._refreshed = now
        busy = False
        for uuid, mapping in list(self._mappings.items()):
            if self._stop.is_set():
                break
            if time.monotonic() < self._retry_at.get(uuid, 0.0):
                continue
            busy = self._poll(uuid, mapping) or busy
        return busy

    def mappings(self) -> list[dict]:
        """The region's enabled mappings whose source is an MSK cluster."""
        lam = self.aws.client("lambda")
        found = []
        for page in lam.get_paginator("list_event_source_mappings").paginate():
            found += [m for m in page["EventSourceMappings"]
                      if m.get("State") == "Enabled" and is_msk(m.get("EventSourceArn", ""))]
        return found

    def _refresh(self) -> None:
        current = {m["UUID"]: m for m in self.mappings()}
        for uuid in list(self._consumers):
            if uuid not in current:
                self._close(uuid)
        self._mappings = current

    def _consumer(self, mapping: dict):
        uuid = mapping["UUID"]
        if uuid not in self._consumers:
            from kafka import KafkaConsumer

            group = (mapping.get("AmazonManagedKafkaEventSourceConfig") or {}).get(
                "ConsumerGroupId") or uuid  # Lambda's default group id is the mapping's UUID
            start = "latest" if mapping.get("StartingPosition") == "LATEST" else "earliest"
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap.split(","), group_id=group,
                client_id=f"lambda-{uuid}", auto_offset_reset=start,
                enable_auto_commit=False, max_poll_records=int(mapping.get("BatchSize") or 100),
                **FAST_GROUP, **self.consumer_kwargs)
            consumer.subscribe(list(mapping.get("Topics") or ()))
            self._consumers[uuid] = consumer
        return self._consumers[uuid]

    def _close(self, uuid: str) -> None:
        consumer = self._consumers.pop(uuid, None)
        if consumer is not None:
            try:
                self._finish_join(consumer)
                consumer.close(autocommit=False, timeout_ms=2000)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    @staticmethod
    def _finish_join(consumer) -> None:
        """Let a consumer still joining its group finish, so that closing it leaves the
        group. Tansu keeps a member that was closed part way through its join, and no
        later member of the group gets a partition: a run whose poller stopped a moment
        after it started (a run that failed early) left the loader's group unable to
        read, and the next run's records were never delivered. The records a poll here
        returns are neither invoked nor committed: the group's next member reads them."""
        deadline = time.monotonic() + JOIN_BEFORE_LEAVE_S
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200, max_records=1)

    def _poll(self, uuid: str, mapping: dict) -> bool:
        from kafka.structs import OffsetAndMetadata

        consumer = self._consumer(mapping)
        batch = consumer.poll(timeout_ms=self.poll_timeout_ms,
                              max_records=int(mapping.get("BatchSize") or 100))
        batch = {tp: records for tp, records in batch.items() if records}
        if not batch:
            return False
        count = sum(len(records) for records in batch.values())
        function = mapping["FunctionArn"]
        self.invocations += 1
        try:
            invocation = self.invoke(function, msk_event(batch, mapping["EventSourceArn"],
                                                         self.bootstrap))
            ok, error_type = bool(getattr(invocation, "ok", False)), getattr(
                invocation, "error_type", None)
        except Exception as exc:  # noqa: BLE001 - a failed invoke fails the batch
            ok, error_type = False, type(exc).__name__
        if not ok:
            self.failures.append(Failure(uuid, function, "function error", error_type, count))
            for partition, records in batch.items():
                consumer.seek(partition, records[0].offset)
            self._retry_at[uuid] = time.monotonic() + self.retry_delay_s
            return True
        consumer.commit({partition: OffsetAndMetadata(records[-1].offset + 1, "", -1)
                         for partition, records in batch.items()})
        self.committed += count
        return True
