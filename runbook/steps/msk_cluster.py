"""Step `msk-cluster`: the Kafka cluster the legacy users' password hashes pass through
on their way to DynamoDB (phase a5), reachable from the operator's machine over MSK's
public IAM listener, and from the loader's event source mapping inside the VPC.

The step converges, in order:
- the cluster's security group (`<cluster>-msk`) in the network's VPC, whose whole rule
  set this step owns: the public IAM port 9198 from each of msk.operator_cidrs, the
  private IAM port 9098 from the group itself (Lambda's MSK pollers run in the cluster's
  subnets with the cluster's security groups, so "the loader's group" is this one), and
  AWS's default egress (the pollers reach Lambda and STS from there);
- the cluster (runbook.resources.msk_cluster): provisioned brokers, brokers_per_az in
  each of network.public_subnets, IAM authentication, TLS only, in-cluster encryption;
- its public access, once it is ACTIVE: UpdateConnectivity, followed through its cluster
  operation until UPDATE_COMPLETE;
- the topic (runbook.resources.kafka_topic), over the public IAM listener, with a short
  retention: it carries password hashes.

Creating a cluster takes 20-40 minutes on AWS, and public access about as long; botocore
has no waiter for either, so both are polled here, with the elapsed time shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, sgrules
from runbook.aws.kafka import kafka_access
from runbook.aws.reachability import SecurityGroup as Group
from runbook.engine import UNKNOWN, Change, Outputs, Step, Unknown, is_known
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import Inventory
from runbook.resources.kafka_topic import Topic, TopicFound, TopicSpec, retention_ms
from runbook.resources.msk_cluster import (ACTIVE, DELETING, FAILED, OPERATION_DONE,
                                           OPERATION_FAILED, PRIVATE_IAM_PORT, PUBLIC,
                                           PUBLIC_IAM_PORT, ClusterFound, ClusterSpec,
                                           MskCluster)
from runbook.resources.security_group import SecurityGroup, SecurityGroupSpec
from runbook.resources.security_group_rule import RuleSet, RuleSetSpec, SecurityGroupRule
from runbook.resources.vpc import has_ipv6

STEP_NAME = "msk-cluster"
FIELD = "msk.cluster_name"
GROUP, RULE, CLUSTER = SecurityGroup(), SecurityGroupRule(), MskCluster()
# AWS documents 20-40 minutes to create a provisioned cluster, and public access takes
# as long again; both are given twice that before the step gives up (the cluster goes
# on; the next run picks up where this one stopped).
CREATE_TIMEOUT_S = 80 * 60
PUBLIC_ACCESS_TIMEOUT_S = 80 * 60
INTERVAL_S = 30


@dataclass
class MskState(Inventory):
    """found: "group", "rules" (the group's), "cluster", "topic"."""

    ipv6: bool = False
    groups: dict[str, Group] = field(default_factory=dict)   # the VPC's, for rule labels


@dataclass(frozen=True)
class MskClusterOutputs(Outputs):
    cluster_arn: str
    cluster_name: str
    cluster_uuid: str                 # the ARN's last segment: topic and group ARNs carry it
    security_group_id: str            # the cluster's, which Lambda's pollers use too
    subnet_ids: tuple                 # the brokers' (network's public) subnets
    bootstrap_public: str             # BootstrapBrokerStringPublicSaslIam, port 9198
    bootstrap_private: str            # BootstrapBrokerStringSaslIam, port 9098
    topic: str
    topic_arn: str
    group_arn_prefix: str             # + a consumer group id: the group's ARN


class MskClusterStep(Step):
    name = STEP_NAME

    def __init__(self, ctx, inputs=None):
        super().__init__(ctx, inputs)
        self.topic = Topic(lambda: kafka_access(self.ctx))

    # -- what the step wants -------------------------------------------------------------

    @property
    def msk(self):
        return self.config.msk

    @property
    def group_name(self) -> str:
        return f"{self.msk.cluster_name}-msk"

    def tags(self, name: str | None = None) -> dict:
        return naming.tags(self.config, STEP_NAME, name)

    def subnet_ids(self) -> tuple:
        return tuple(self.inputs.network.public_subnet_ids)

    def group_spec(self, ipv6: bool) -> SecurityGroupSpec:
        return SecurityGroupSpec(
            self.group_name, self.tags(self.group_name), FIELD,
            vpc_id=self.inputs.network.vpc_id,
            description=f"MSK cluster {self.msk.cluster_name} (managed by runbook)",
            ipv6=ipv6)

    def rules_spec(self, state: MskState) -> RuleSetSpec:
        """The group's whole rule set: 9198 from each operator CIDR, 9098 from itself,
        and AWS's default egress (its IPv6 twin kept where the VPC has IPv6)."""
        group = state.ref("group")
        rules = {sgrules.Rule.tcp_from(PUBLIC_IAM_PORT, cidr) for cidr in self.msk.operator_cidrs}
        rules |= {sgrules.Rule.tcp_from(PRIVATE_IAM_PORT, group), sgrules.ALL_TRAFFIC_OUT}
        kept = frozenset({sgrules.ALL_TRAFFIC_OUT_V6} if state.ipv6 else ())
        return RuleSetSpec(
            self.group_name, self.tags(), FIELD, group_id=group, rules=frozenset(rules),
            kept=kept, description=f"MSK IAM clients (runbook {STEP_NAME})",
            source_name=self.group_name,
            names={g.id: g.name for g in state.groups.values()})

    def cluster_spec(self, state: MskState) -> ClusterSpec:
        name = self.msk.cluster_name
        subnets = self.subnet_ids()
        return ClusterSpec(name, self.tags(name), FIELD, kafka_version=self.msk.kafka_version,
                           broker_type=self.msk.broker_type,
                           broker_count=self.msk.brokers_per_az * len(subnets),
                           volume_gb=self.msk.volume_gb, subnet_ids=subnets,
                           security_group_ids=(state.ref("group"),))

    def topic_spec(self, state: MskState) -> TopicSpec:
        # The public brokers exist once public access is on: until then (the cluster to
        # be made, or made and still private) they are known only after apply.
        cluster = state.found.get("cluster")
        bootstrap = (cluster.bootstrap_public if cluster is not None else None) or \
            Unknown(("cluster", "bootstrap_public"))
        return TopicSpec(self.msk.topic, {naming.ENV_TAG: self.config.env,
                                          naming.STEP_TAG: STEP_NAME}, "msk.topic",
                         bootstrap=bootstrap,
                         partitions=self.msk.partitions, replication=self.msk.replication,
                         retention_ms=retention_ms(self.msk.retention_hours))

    # -- read ----------------------------------------------------------------------------

    def read(self) -> MskState:
        network = self.inputs.network
        if not is_known(network.vpc_id):
            return self.state()
        api = self.api
        ipv6 = has_ipv6(api, network.vpc_id)
        groups = GROUP.in_vpc(api, network.vpc_id)
        mine = GROUP.select(self.group_spec(ipv6), groups)
        rules = RULE.of_groups(api, [mine.id]).get(mine.id, {}) if mine else {}
        cluster = CLUSTER.find(api, self.cluster_spec(MskState()))
        topic = None
        if cluster is not None and cluster.bootstrap_public and not self.ctx.outputs_only:
            topic = self._read_topic(cluster.bootstrap_public)
        return self.state(ipv6=ipv6, groups=groups, rules=rules, cluster=cluster, topic=topic)

    def _read_topic(self, bootstrap: str) -> TopicFound | None:
        from kafka.errors import KafkaError

        try:
            return self.topic.read(bootstrap, self.msk.topic)
        except KafkaError as exc:
            # A live run from an address the group does not admit waits out the client's
            # bootstrap timeout, and kafka-python says only that it could not bootstrap.
            # kafka-python's errors read "<class>: <message>" already.
            raise StepFailed(STEP_NAME, f"kafka:topic {self.msk.topic}",
                             f"the cluster's public brokers did not answer ({exc}). This "
                             "machine's address must be "
                             "in msk.operator_cidrs (tcp/9198), and its IAM identity needs "
                             "kafka-cluster:Connect, DescribeTopic and "
                             "DescribeTopicDynamicConfiguration on the cluster.") from None

    def state(self, *, ipv6: bool = False, groups: dict[str, Group] | None = None,
              rules: dict[str, sgrules.Rule] | None = None, cluster: ClusterFound | None = None,
              topic: TopicFound | None = None) -> MskState:
        """What was read, keyed for the plan: pure, so that plans are tested from data.
        What another environment owns is refused here."""
        state = MskState(ipv6=ipv6, groups=dict(groups or {}))
        group = GROUP.select(self.group_spec(ipv6), state.groups)
        if group is not None:
            GROUP.claim(self.group_spec(ipv6), group,
                        f"ec2:security-group {group.name} ({group.id})")
            state.found["group"] = group
            state.found["rules"] = RuleSet(group.id, {}, dict(rules or {}))
        if cluster is not None:
            CLUSTER.claim(self.cluster_spec(state), cluster)
            state.found["cluster"] = cluster
        if topic is not None:
            state.found["topic"] = topic
        return state

    # -- plan ----------------------------------------------------------------------------

    def plan(self, state: MskState) -> list[Change]:
        if not self.subnet_ids():
            raise PlanError(STEP_NAME, "network.public_subnets",
                            "the MSK brokers run in the network's public subnets, and the "
                            "network step has none. List them in network.public_subnets "
                            "and run `runbook run --phase a1` first.")
        rules, found_rules = self.rules_spec(state), state.found.get("rules")
        changes = GROUP.plan(self.group_spec(state.ipv6), state.found.get("group"), "group")
        # What is missing, in two parts so that each rule's peer reads as itself: the
        # group by its name, a CIDR as written; then what is too much.
        ours = frozenset(r for r in rules.rules if r.peer == state.ref("group") or r.egress)
        changes += RULE.plan_missing(dataclasses.replace(rules, rules=ours), found_rules,
                                     "rules")
        changes += RULE.plan_missing(dataclasses.replace(rules, rules=rules.rules - ours,
                                                         source_name=""), found_rules, "rules")
        changes += RULE.plan_extra(rules, found_rules, "rules")
        changes += CLUSTER.plan(self.cluster_spec(state), state.found.get("cluster"), "cluster")
        changes += self.topic.plan(self.topic_spec(state), state.found.get("topic"), "topic")
        return changes

    # -- apply ---------------------------------------------------------------------------

    def apply(self, state: MskState, change: Change) -> bool | None:
        """AWS takes UpdateConnectivity only from an ACTIVE cluster, and the topic is
        reached through public access: each waits for what it needs, with progress."""
        key = getattr(change.run, "key", None)
        if key == "cluster" and change.op == "update_connectivity":
            self._wait_active(state)
            result = super().apply(state, change)
            self._wait_public(state)
            return result
        if key == "topic":
            self._wait_public(state)
        return super().apply(state, change)

    def settle(self, state: MskState) -> None:
        """A cluster an earlier run left creating or updating is waited for, so that
        the outputs (its brokers) are known."""
        if state.found.get("cluster") is not None:
            self._wait_public(state)

    def _wait_active(self, state: MskState) -> ClusterFound:
        cluster = state.found["cluster"]
        if cluster.state == ACTIVE:
            return cluster
        found = self.wait_until(
            lambda: CLUSTER.describe(self.api, cluster.id), lambda c: c.state == ACTIVE,
            what=f"kafka:cluster {cluster.name} to be {ACTIVE}",
            resource=f"kafka:cluster {cluster.name}", timeout_s=CREATE_TIMEOUT_S,
            interval_s=INTERVAL_S, failed=_broken)
        state.found["cluster"] = found
        return found

    def _wait_public(self, state: MskState) -> ClusterFound:
        """Until the connectivity update (this run's, or an earlier one's) is complete:
        the cluster ACTIVE with public access on and its public brokers listed."""
        cluster = state.found["cluster"]
        label = f"kafka:cluster {cluster.name}"
        if cluster.operation:
            self.wait_until(
                lambda: CLUSTER.operation(self.api, cluster.operation),
                lambda op: op["state"] == OPERATION_DONE,
                what=f"the public access of {label} ({cluster.operation}) to be "
                     f"{OPERATION_DONE}", resource=label, timeout_s=PUBLIC_ACCESS_TIMEOUT_S,
                interval_s=INTERVAL_S,
                failed=lambda op: (f"its public access failed ({op['error'] or 'no reason'})"
                                   if op["state"] == OPERATION_FAILED else None))
        if _public(cluster):
            return cluster
        found = self.wait_until(
            lambda: CLUSTER.describe(self.api, cluster.id), _public,
            what=f"{label} to be {ACTIVE} with public access", resource=label,
            timeout_s=CREATE_TIMEOUT_S + PUBLIC_ACCESS_TIMEOUT_S, interval_s=INTERVAL_S,
            failed=_broken)
        state.found["cluster"] = found
        return found

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, state: MskState) -> MskClusterOutputs:
        cluster, group = state.found.get("cluster"), state.found.get("group")
        name, topic = self.msk.cluster_name, self.msk.topic
        arn = cluster.id if cluster else None
        prefix = _arn_prefix(arn)
        uuid = cluster.uuid if cluster else None
        return MskClusterOutputs(
            cluster_arn=arn or UNKNOWN, cluster_name=name, cluster_uuid=uuid or UNKNOWN,
            security_group_id=group.id if group else UNKNOWN,
            subnet_ids=self.subnet_ids(),
            bootstrap_public=(cluster.bootstrap_public if cluster else None) or UNKNOWN,
            bootstrap_private=(cluster.bootstrap_private if cluster else None) or UNKNOWN,
            topic=topic,
            topic_arn=f"{prefix}:topic/{name}/{uuid}/{topic}" if arn else UNKNOWN,
            group_arn_prefix=f"{prefix}:group/{name}/{uuid}/" if arn else UNKNOWN)


def _public(cluster: ClusterFound) -> bool:
    return (cluster.state == ACTIVE and cluster.public_access == PUBLIC
            and bool(cluster.bootstrap_public))


def _broken(cluster: ClusterFound) -> str | None:
    return f"its state is {cluster.state}" if cluster.state in (FAILED, DELETING) else None


def _arn_prefix(arn: Any) -> str:
    """arn:<partition>:kafka:<region>:<account> of a cluster's ARN."""
    return ":".join(arn.split(":")[:5]) if arn else ""


STEP = MskClusterStep
