"""Step vpc-integrate's plan cases: {"account", "dns_support", "dns_hostnames", "ipv6",
"subnets": [Subnet...], "groups": [SecurityGroup (id, name, tags)...],
"rules": {group id: {rule id: Rule}}, "endpoints": [Endpoint...]} as runbook.aws.reachability
and runbook.aws.sgrules describe them. Only "account" when the network's VPC is still to
be made (its vpc_id "(known after apply)")."""

from __future__ import annotations

from runbook.aws.reachability import Endpoint, SecurityGroup, Subnet
from runbook.aws.sgrules import Rule
from tests.plans.harness import build


def endpoint(data: dict) -> Endpoint:
    """An Endpoint; its policy document as it is (not as build's tuples)."""
    found = build(Endpoint, {key: value for key, value in data.items() if key != "policy"})
    found.policy = data.get("policy")
    return found


def state(step, data: dict):
    if "dns_support" not in data:
        return step.state(data.get("account"))
    subnets = [build(Subnet, s) for s in data.get("subnets", [])]
    groups = [build(SecurityGroup, g) for g in data.get("groups", [])]
    return step.state(
        data.get("account"), dns=(data["dns_support"], data["dns_hostnames"]),
        ipv6=data.get("ipv6", False), subnets={s.id: s for s in subnets},
        groups={g.id: g for g in groups},
        rules={group_id: {rule_id: build(Rule, rule) for rule_id, rule in rules.items()}
               for group_id, rules in data.get("rules", {}).items()},
        endpoints=[endpoint(e) for e in data.get("endpoints", [])])
