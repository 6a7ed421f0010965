"""A Kafka topic on an MSK cluster, made and read with Kafka's admin protocol over the
cluster's public IAM listener (step `msk-cluster`).

MSK leaves `auto.create.topics.enable` off: a producer's first send to a missing topic
fails. So runbook creates the topic, as a planned change (a write, as any create is),
with its partitions, replication and retention.ms, and reads it back. It does so with
Kafka's own admin protocol, as the operator's tools would (the IAM action is
kafka-cluster:CreateTopic either way): botocore's newer kafka CreateTopic/DescribeTopic
calls exist, but moto 5.2.5 implements none of them, and the sandbox's broker answers
the admin protocol for real.

The topic carries password hashes: retention is short (msk.retention_hours), and a
retention that differs is set back (alter_configs). Partitions and replication are
not changed in place: fewer partitions cannot be had at all, and more, or another
replication, reassigns data, which runbook leaves to the operator.

Configs are read with `config_filter="all"`: a value set at creation may be reported
with source DEFAULT_CONFIG (the sandbox's broker does), and the default filter
("modified") would then return nothing.

A topic has no tags and no owner: it is found by its name on the cluster runbook
claimed. `access` is how the admin client connects (runbook.aws.kafka.KafkaAccess, or
the sandbox's), given as a callable so that nothing connects until a topic is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from runbook.engine.plan import Change, diff_field
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import Apply, Found, Resource, Spec

RETENTION = "retention.ms"
UNKNOWN_TOPIC = 3          # UNKNOWN_TOPIC_OR_PARTITION, in a topic's metadata


def retention_ms(hours: int) -> int:
    return hours * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec(Spec):
    """`name` is the topic's."""

    bootstrap: Any = None                 # the cluster's public IAM brokers (or Unknown)
    partitions: int = 1
    replication: int = 1
    retention_ms: int = 0


@dataclass
class TopicFound(Found):
    """`id` is the topic's name; it has no tags."""

    partitions: int = 0
    replication: int = 0
    retention_ms: int | None = None


class Topic(Resource[TopicSpec, TopicFound]):
    kind, service, plural = "kafka:topic", "kafka", "topics"
    label_id = False

    def __init__(self, access: Callable[[], Any]):
        self.access = access

    # -- read ------------------------------------------------------------------------

    def read(self, bootstrap: str, name: str) -> TopicFound | None:
        admin = self.access().admin(bootstrap)
        try:
            return read_topic(admin, name)
        finally:
            admin.close()

    # -- plan (pure) -------------------------------------------------------------------

    def label(self, spec: TopicSpec, found: TopicFound | None = None) -> str:
        return f"{self.kind} {spec.name}"

    def summary(self, spec: TopicSpec) -> dict:
        return {"partitions": spec.partitions, "replication": spec.replication,
                RETENTION: spec.retention_ms}

    def check(self, spec: TopicSpec, found: TopicFound) -> None:
        for name, current, wanted, field in (
                ("partitions", found.partitions, spec.partitions, "msk.partitions"),
                ("replication", found.replication, spec.replication, "msk.replication")):
            if current != wanted:
                raise PlanError(spec.step, self.label(spec),
                                f"its {name} is {current}, the file says {wanted}; runbook "
                                f"does not repartition or reassign a topic. Set {field} "
                                f"to {current}, or change the topic with kafka-topics.sh / "
                                "kafka-reassign-partitions.sh and run again.")

    def diff(self, spec: TopicSpec, found: TopicFound) -> dict:
        diff: dict = {}
        diff_field(diff, RETENTION, found.retention_ms, spec.retention_ms)
        return diff

    def plan(self, spec: TopicSpec, found: TopicFound | None, key: str) -> list[Change]:
        """Create it, or set its retention back; a topic has no tags to add."""
        if found is None:
            return [Change("create", self.label(spec), "create_topics", {"spec": spec},
                           self.summary(spec), run=Apply(self, key, "create"))]
        self.check(spec, found)
        diff = self.diff(spec, found)
        if not diff:
            return []
        return [Change("update", self.label(spec), "alter_configs",
                       {"spec": spec, "diff": diff}, diff, run=Apply(self, key, "update"))]

    # -- apply -------------------------------------------------------------------------

    def create(self, api, spec: TopicSpec) -> TopicFound:
        """CreateTopics; a topic that exists already (an earlier attempt's answer lost,
        a concurrent run) is read and its retention set as the spec says."""
        from kafka.errors import TopicAlreadyExistsError

        admin = self.access().admin(spec.bootstrap)
        try:
            try:
                admin.create_topics({spec.name: {
                    "num_partitions": spec.partitions,
                    "replication_factor": spec.replication,
                    "configs": {RETENTION: str(spec.retention_ms)}}})
            except TopicAlreadyExistsError:
                pass
            found = read_topic(admin, spec.name)
            if found is None:
                raise StepFailed(spec.step, self.label(spec), "the cluster accepted it, and "
                                 "then did not list it: run again")
            self.check(spec, found)
            if self.diff(spec, found):
                set_retention(admin, spec)
                found = read_topic(admin, spec.name)
            return found
        finally:
            admin.close()

    def update(self, api, spec: TopicSpec, found: TopicFound, diff: dict,
               tags: dict) -> TopicFound:
        admin = self.access().admin(spec.bootstrap)
        try:
            set_retention(admin, spec)
            return read_topic(admin, spec.name)
        finally:
            admin.close()

    def tag(self, api, found: TopicFound, tags: dict) -> TopicFound:
        return found


def read_topic(admin, name: str) -> TopicFound | None:
    """The topic's partitions, replication (the replicas of its first partition) and
    retention.ms, or None when the cluster has no such topic."""
    from kafka.admin import ConfigResource, ConfigResourceType

    [meta] = admin.describe_topics([name]) or [{"error_code": UNKNOWN_TOPIC}]
    if meta.get("error_code") == UNKNOWN_TOPIC or not meta.get("partitions"):
        return None
    partitions = sorted(meta["partitions"], key=lambda p: p.get("partition_index", 0))
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                     config_filter="all")
    value = ((configs.get("topic") or {}).get(name) or {}).get(RETENTION) or {}
    retention = value.get("value") if isinstance(value, dict) else value
    return TopicFound(name, {}, partitions=len(partitions),
                      replication=len(partitions[0].get("replica_nodes") or ()),
                      retention_ms=int(retention) if retention is not None else None)


def set_retention(admin, spec: TopicSpec) -> None:
    """retention.ms as the spec says. kafka-python answers a refusal as a string, not an
    exception: anything but "OK" fails the step, or the next run would plan it again.
    raise_on_unknown=False: kafka-python's own check knows only the configs already set
    on the topic (a broker reporting retention.ms as its default fails it), and the
    brokers judge the key themselves."""
    from kafka.admin import ConfigResource, ConfigResourceType

    answer = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                                 configs={RETENTION: str(spec.retention_ms)})],
                                 raise_on_unknown=False)
    outcome = (answer.get("topic") or {}).get(spec.name)
    if outcome != "OK":
        raise StepFailed(spec.step, f"kafka:topic {spec.name}",
                         f"the brokers refused its {RETENTION} ({outcome}). The caller "
                         "needs kafka-cluster:AlterTopicDynamicConfiguration on the topic")
