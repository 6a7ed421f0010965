"""Step msk-cluster's plan cases: {"ipv6", "groups": [SecurityGroup (id, name, tags)...],
"rules": {rule id: Rule} (the cluster group's), "cluster": ClusterFound or null, "topic":
TopicFound or null}. Empty when the network's VPC is still to be made."""

from __future__ import annotations

from runbook.aws.reachability import SecurityGroup
from runbook.aws.sgrules import Rule
from runbook.resources.kafka_topic import TopicFound
from runbook.resources.msk_cluster import ClusterFound
from tests.plans.harness import build


def state(step, data: dict):
    if "groups" not in data:
        return step.state()
    groups = [build(SecurityGroup, g) for g in data["groups"]]
    return step.state(
        ipv6=data.get("ipv6", False), groups={g.id: g for g in groups},
        rules={rule_id: build(Rule, rule) for rule_id, rule in data.get("rules", {}).items()},
        cluster=build(ClusterFound, data.get("cluster")),
        topic=build(TopicFound, data.get("topic")))
