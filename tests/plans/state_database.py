"""Step database's plan cases: {"context": {"allow_reboot": true} (optional: what
`runbook run --allow-reboot` says, which an environment file cannot), and what `read`
found, absent or null where nothing was: "security_group" {"id", "name", "tags"},
"subnet_group" SubnetGroupFound, "parameter_group" ParameterGroupFound, "cluster"
ClusterFound (its "members" [Member...]) and "instances" [InstanceFound...]."""

from __future__ import annotations

from runbook.aws.reachability import SecurityGroup
from runbook.resources.rds import (ClusterFound, InstanceFound, Member, ParameterGroupFound,
                                   SubnetGroupFound)
from tests.plans.harness import build


def state(step, data: dict):
    step.ctx.allow_reboot = data.get("context", {}).get("allow_reboot", False)
    cluster = data.get("cluster")
    if cluster is not None:
        cluster = build(ClusterFound, {**cluster, "members": []})
        cluster.members = [build(Member, m) for m in data["cluster"].get("members", [])]
    return step.state(build(SecurityGroup, data.get("security_group")),
                      build(SubnetGroupFound, data.get("subnet_group")),
                      build(ParameterGroupFound, data.get("parameter_group")), cluster,
                      [build(InstanceFound, i) for i in data.get("instances", [])])
