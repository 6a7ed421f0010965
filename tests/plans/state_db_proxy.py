"""Step db-proxy's plan cases: {"account", "ipv6", "groups": [SecurityGroup (id, name,
tags)...], "rules": {group id: {rule id: Rule}}, "role": RoleFound or null (its trust and
policy documents as they are), "proxy": ProxyFound or null, "targets": [what
DescribeDBProxyTargets lists]}. Only "account" when the network's VPC is still to be made."""

from __future__ import annotations

from runbook.aws.reachability import SecurityGroup
from runbook.aws.sgrules import Rule
from runbook.resources.iam_role import RoleFound
from runbook.resources.rds_proxy import ProxyFound
from tests.plans.harness import build


def role(data: dict | None) -> RoleFound | None:
    """A RoleFound; its documents as they are (not as build's tuples)."""
    if data is None:
        return None
    documents = ("trust", "policy", "others", "attached")
    found = build(RoleFound, {k: v for k, v in data.items() if k not in documents})
    for key in documents:
        if key in data:
            setattr(found, key, data[key])
    return found


def state(step, data: dict):
    if "groups" not in data:
        return step.state(data.get("account"))
    groups = [build(SecurityGroup, g) for g in data["groups"]]
    return step.state(
        data.get("account"), ipv6=data.get("ipv6", False), groups={g.id: g for g in groups},
        rules={group_id: {rule_id: build(Rule, rule) for rule_id, rule in rules.items()}
               for group_id, rules in data.get("rules", {}).items()},
        role=role(data.get("role")), proxy=build(ProxyFound, data.get("proxy")),
        targets=list(data.get("targets", [])))
