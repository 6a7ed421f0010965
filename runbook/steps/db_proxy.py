"""Step `db-proxy`: an RDS Proxy in front of the cluster, so that functions log in with an
IAM token over TLS and no function holds a password.

The step converges, in order:
- the proxy's role (`<cluster>-proxy-role`), which only rds.amazonaws.com may assume and
  which may `rds-db:connect` as exactly the database users of `database.roles`, on the
  cluster (`dbuser:cluster-<DbClusterResourceId>/<user>`): end-to-end IAM, the proxy logs
  in to the cluster with IAM too, so no per-user secret exists;
- the proxy's own security group (`<network>-proxy`), whose whole rule set this step
  owns: the proxy's port (5432 for PostgreSQL, whatever the cluster's) from the Lambda
  group (vpc-integrate's), and egress only to the cluster's group on the cluster's port;
- one rule on the cluster's group: the DB port from the proxy's group. vpc-integrate owns
  the rest of that group's rules and keeps this one (its `kept_rules`), so two steps
  never undo each other's rules: each rule has one owner;
- the proxy (`<cluster>-proxy`): engine family PostgreSQL, in the network step's private
  subnets, RequireTLS, DefaultAuthScheme IAM_AUTH (runbook.resources.rds_proxy);
- the registration of the cluster with the proxy's default target group, read before it
  is made, and never made twice (runbook.resources.rds_proxy.ProxyTarget).

`settle` waits, with progress, until the proxy is available and every target AVAILABLE;
a target UNAVAILABLE for a reason that does not pass fails the step with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, sgrules
from runbook.aws.reachability import SecurityGroup as Group
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import PlanError
from runbook.resources.base import Inventory
from runbook.resources.iam_role import Role, RoleFound, RoleSpec
from runbook.resources.rds_proxy import PORT as PROXY_PORT
from runbook.resources.rds_proxy import (AVAILABLE, UNAVAILABLE, DbProxy, ProxyFound, ProxySpec,
                                         ProxyTarget, TargetSpec, health_text, target_name)
from runbook.resources.security_group import SecurityGroup, SecurityGroupSpec
from runbook.resources.security_group_rule import RuleSet, RuleSetSpec, SecurityGroupRule
from runbook.resources.vpc import has_ipv6
from runbook.steps.database import wait_available

STEP_NAME = "db-proxy"
ROLE, GROUP, RULE, PROXY, TARGET = Role(), SecurityGroup(), SecurityGroupRule(), DbProxy(), \
    ProxyTarget()
# A proxy's name: 1-63 letters, digits and single hyphens (CreateDBProxy).
MAX_NAME = 63
# AWS makes a proxy in a few minutes, and registers its target in a few more.
PROXY_TIMEOUT_S = 20 * 60
TARGET_TIMEOUT_S = 20 * 60
INTERVAL_S = 15
# An UNAVAILABLE target for this reason is still being given capacity: it is waited for.
PASSING_REASONS = frozenset({"PENDING_PROXY_CAPACITY"})


@dataclass
class ProxyState(Inventory):
    """found: "role", "group", "rules proxy" (the proxy group's), "rules database" (the
    cluster group's), "proxy", "target" (the cluster's registration)."""

    account: str | None = None
    ipv6: bool = False
    groups: dict[str, Group] = field(default_factory=dict)   # the VPC's, for rule labels
    targets: list = field(default_factory=list)              # DescribeDBProxyTargets


@dataclass(frozen=True)
class DbProxyOutputs(Outputs):
    proxy_name: str
    proxy_arn: str
    proxy_resource_id: str                # prx-...: the functions' rds-db:connect resource
    endpoint: str
    security_group_id: str
    role_arn: str
    target_health: dict                   # {target: state}


class DbProxyStep(Step):
    name = STEP_NAME

    # -- what the step wants -------------------------------------------------------------

    def tags(self, name: str | None = None) -> dict:
        return naming.tags(self.config, STEP_NAME, name)

    @property
    def port(self) -> Any:
        return self.inputs.database.port

    def users(self) -> list[str]:
        return sorted(self.config.database.roles)

    def role_policy(self, account: str | None) -> dict:
        """rds-db:connect as each of database.roles' users, on the cluster."""
        resource_id = self.inputs.database.cluster_resource_id
        region = self.ctx.aws.region
        resources = [f"arn:aws:rds-db:{region}:{account}:dbuser:{resource_id}/{user}"
                     if is_known(resource_id) and account else UNKNOWN
                     for user in self.users()]
        return {"Version": "2012-10-17", "Statement": [
            {"Sid": "ConnectAsTheDatabaseUsers", "Effect": "Allow",
             "Action": ["rds-db:connect"], "Resource": resources}]}

    def role_spec(self, account: str | None) -> RoleSpec:
        name = naming.proxy_role_name(self.config)
        return RoleSpec(name, self.tags(name), "database.cluster_id",
                        service="rds.amazonaws.com", policy=self.role_policy(account),
                        description=f"Role of RDS Proxy {naming.db_proxy_name(self.config)}: "
                                    "IAM logins to the cluster (managed by runbook)",
                        holder=f"rds:db-proxy {naming.db_proxy_name(self.config)}")

    def group_spec(self, ipv6: bool) -> SecurityGroupSpec:
        name = naming.proxy_security_group_name(self.config)
        return SecurityGroupSpec(
            name, self.tags(name), "network.name", vpc_id=self.inputs.network.vpc_id,
            description=f"RDS Proxy of {self.config.network.name} (managed by runbook)",
            default_egress=False, ipv6=ipv6)

    def proxy_rules_spec(self, state: ProxyState) -> RuleSetSpec:
        """The proxy group's whole rule set: the proxy's port (5432, whatever the
        cluster's) in from the Lambda group, and out to the cluster's group only, on the
        cluster's port."""
        lambda_group = self.inputs.vpc_integrate.lambda_security_group_id
        database_group = self.inputs.database.security_group_id
        port = self.port
        rules = frozenset({sgrules.Rule.tcp_from(PROXY_PORT, lambda_group),
                           sgrules.Rule(True, "tcp", port, port, database_group)})
        return RuleSetSpec(
            naming.proxy_security_group_name(self.config), self.tags(), "network.name",
            group_id=state.ref("group"), rules=rules,
            description=f"Lambda to RDS Proxy (runbook {STEP_NAME})",
            source_name=naming.lambda_security_group_name(self.config),
            names={group.id: group.name for group in state.groups.values()})

    def database_rules_spec(self, state: ProxyState) -> RuleSetSpec:
        """The one rule of the cluster's group this step owns: the DB port from the proxy."""
        return RuleSetSpec(
            self.config.database.security_group_name, self.tags(),
            "database.security_group_name",
            group_id=self.inputs.database.security_group_id,
            rules=frozenset({sgrules.Rule.tcp_from(self.port, state.ref("group"))}),
            description=f"RDS Proxy to Aurora PostgreSQL (runbook {STEP_NAME})",
            source_name=naming.proxy_security_group_name(self.config))

    def proxy_spec(self, state: ProxyState) -> ProxySpec:
        name = naming.db_proxy_name(self.config)
        return ProxySpec(name, self.tags(name), "database.cluster_id",
                         role_arn=state.ref("role", "arn"),
                         subnet_ids=tuple(self.inputs.network.subnet_ids),
                         security_group_ids=(state.ref("group"),))

    def target_spec(self) -> TargetSpec:
        cluster = self.inputs.database.cluster_id
        return TargetSpec(cluster, self.tags(), "database.cluster_id",
                          proxy=naming.db_proxy_name(self.config), cluster_id=cluster)

    # -- read ----------------------------------------------------------------------------

    def read(self) -> ProxyState:
        network, database = self.inputs.network, self.inputs.database
        self.inputs.vpc_integrate
        api = self.api
        account = None if self.ctx.outputs_only else api.account()
        if not is_known(network.vpc_id):
            return self.state(account)
        ipv6 = has_ipv6(api, network.vpc_id)
        groups = GROUP.in_vpc(api, network.vpc_id)
        mine = GROUP.select(self.group_spec(ipv6), groups)
        owned = [g for g in (mine and mine.id, database.security_group_id)
                 if g and is_known(g) and g in groups]
        rules = RULE.of_groups(api, owned) if owned else {}
        role = ROLE.find(api, self.role_spec(account))
        proxy = PROXY.find(api, self.proxy_spec(ProxyState()))
        targets = TARGET.read(api, proxy.id) if proxy else []
        return self.state(account, ipv6=ipv6, groups=groups, rules=rules, role=role,
                          proxy=proxy, targets=targets)

    def state(self, account: str | None, *, ipv6: bool = False,
              groups: dict[str, Group] | None = None,
              rules: dict[str, dict[str, sgrules.Rule]] | None = None,
              role: RoleFound | None = None, proxy: ProxyFound | None = None,
              targets: list | None = None) -> ProxyState:
        """What was read, keyed for the plan: pure, so that plans are tested from data.
        What another environment owns is refused here."""
        state = ProxyState(account=account, ipv6=ipv6, groups=dict(groups or {}),
                           targets=list(targets or ()))
        rules = rules or {}
        if role is not None:
            ROLE.claim(self.role_spec(account), role)
            state.found["role"] = role
        group = GROUP.select(self.group_spec(ipv6), state.groups)
        if group is not None:
            GROUP.claim(self.group_spec(ipv6), group,
                        f"ec2:security-group {group.name} ({group.id})")
            state.found["group"] = group
            state.found["rules proxy"] = RuleSet(group.id, {}, dict(rules.get(group.id, {})))
        database_group = self.inputs.database.security_group_id
        if is_known(database_group) and database_group in state.groups:
            state.found["rules database"] = RuleSet(database_group, {},
                                                    dict(rules.get(database_group, {})))
        if proxy is not None:
            PROXY.claim(self.proxy_spec(state), proxy)
            state.found["proxy"] = proxy
            state.found["target"] = TARGET.select(self.target_spec(), state.targets)
        return state

    # -- plan ----------------------------------------------------------------------------

    def plan(self, state: ProxyState) -> list[Change]:
        self._check(state)
        changes = ROLE.plan(self.role_spec(state.account), state.found.get("role"), "role")
        changes += GROUP.plan(self.group_spec(state.ipv6), state.found.get("group"), "group")
        proxy_rules, database_rules = self.proxy_rules_spec(state), self.database_rules_spec(state)
        # First what is missing, then what is too much: the path is never lost between.
        changes += RULE.plan_missing(proxy_rules, state.found.get("rules proxy"), "rules proxy")
        changes += RULE.plan_missing(database_rules, state.found.get("rules database"),
                                     "rules database")
        changes += RULE.plan_extra(proxy_rules, state.found.get("rules proxy"), "rules proxy")
        changes += PROXY.plan(self.proxy_spec(state), state.found.get("proxy"), "proxy")
        changes += TARGET.plan(self.target_spec(), state.found.get("target"), "target")
        return changes

    def _check(self, state: ProxyState) -> None:
        name = naming.db_proxy_name(self.config)
        if len(name) > MAX_NAME:
            raise PlanError(STEP_NAME, "database.cluster_id",
                            f"the proxy's name {name!r} is {len(name)} characters; AWS "
                            f"allows {MAX_NAME}. Use a cluster_id of at most "
                            f"{MAX_NAME - len('-proxy')} characters.")
        if not self.users():
            raise PlanError(STEP_NAME, "database.roles",
                            "the proxy logs in to the cluster by IAM as the database users "
                            "of database.roles, and there are none. Declare the functions' "
                            "roles there (lambda_writer: {write: [...]}).")
        group = self.inputs.database.security_group_id
        if is_known(group) and state.groups and group not in state.groups:
            raise PlanError(STEP_NAME, f"security group {group}",
                            "the database step's security group is not in the network's "
                            "VPC. Run `runbook run --phase a1` first.")

    # -- apply ---------------------------------------------------------------------------

    def apply(self, state: ProxyState, change: Change) -> bool | None:
        """A proxy takes registrations only once it and the cluster are available (AWS:
        InvalidDBProxyStateFault, InvalidDBClusterStateFault; step database does not
        wait for a new cluster): wait for both first, with progress."""
        if getattr(change.run, "key", None) == "target":
            self._wait_for_proxy(state)
            wait_available(self.ctx, self.inputs.database, instances=False)
        return super().apply(state, change)

    # -- settle: wait for the proxy and its targets ---------------------------------------

    def settle(self, state: ProxyState) -> None:
        if state.found.get("proxy") is None:
            return
        self._wait_for_proxy(state)
        self._wait_for_targets(state)

    def _wait_for_proxy(self, state: ProxyState) -> None:
        proxy = state.found.get("proxy")
        if proxy is None or proxy.status == "available":
            return
        spec = self.proxy_spec(state)

        def status() -> ProxyFound | None:
            [found] = PROXY.by_name(self.api, spec) or [None]
            return found

        def failed(found: ProxyFound | None) -> str | None:
            if found is None:
                return "it is gone"
            return f"its status is {found.status}" if found.status in (
                "incompatible-network", "insufficient-resource-limits", "deleting") else None

        found = self._wait(status, lambda f: f is not None and f.status == "available",
                           f"rds:db-proxy {spec.name} to be available", PROXY_TIMEOUT_S,
                           failed)
        state.found["proxy"] = found

    def _wait_for_targets(self, state: ProxyState) -> None:
        proxy = state.found["proxy"]

        def healthy(targets: list) -> bool:
            rows = [t for t in targets if t.get("TargetHealth")]
            return bool(rows) and all(t["TargetHealth"].get("State") == AVAILABLE for t in rows)

        def failed(targets: list) -> str | None:
            down = [f"{target_name(t)} is {health_text(t)}" for t in targets
                    if (t.get("TargetHealth") or {}).get("State") == UNAVAILABLE
                    and t["TargetHealth"].get("Reason") not in PASSING_REASONS]
            return "; ".join(down) or None

        state.targets = self._wait(lambda: TARGET.read(self.api, proxy.id), healthy,
                                   f"the targets of rds:db-proxy {proxy.id} to be AVAILABLE",
                                   TARGET_TIMEOUT_S, failed)
        state.found["target"] = TARGET.select(self.target_spec(), state.targets)

    def _wait(self, read, done, what: str, timeout_s: float, failed):
        return self.wait_until(read, done, what=what, resource=what.split(" to be ")[0],
                               timeout_s=timeout_s, interval_s=INTERVAL_S, failed=failed)

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, state: ProxyState) -> DbProxyOutputs:
        proxy, group, role = (state.found.get(k) for k in ("proxy", "group", "role"))
        target = state.found.get("target")
        return DbProxyOutputs(
            proxy_name=naming.db_proxy_name(self.config),
            proxy_arn=proxy.arn if proxy else UNKNOWN,
            proxy_resource_id=proxy.resource_id if proxy else UNKNOWN,
            endpoint=proxy.endpoint if proxy else UNKNOWN,
            security_group_id=group.id if group else UNKNOWN,
            role_arn=role.arn if role else UNKNOWN,
            target_health=target.health if target else {})


STEP = DbProxyStep
