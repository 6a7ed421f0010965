"""Step `vpc-integrate`: the network path from Lambda functions in the VPC to the cluster
and to Secrets Manager, and a preflight that proves the path exists.

In the environment's VPC the step converges
- the Lambda security group (`<network>-lambda`): no ingress, and AWS's default egress
  (all traffic to 0.0.0.0/0), kept because the functions' outbound is bounded where it
  lands: the cluster and the endpoints admit only this group, the private subnets route
  nowhere else unless the operator adds a NAT gateway (whose path needs 443 out);
- the cluster's security group (made by step `database`): the DB port from the Lambda
  group, and AWS's default egress, kept because Aurora features open connections through
  the cluster's security group (aws_s3 import and export, aws_lambda, Aurora machine
  learning), and a cluster that uses them would lose them without it;
- the endpoints' security group (`<network>-endpoints`): TCP 443 from the Lambda group,
  and no egress (an interface endpoint opens no connection either);
- interface endpoints for Secrets Manager and the RDS Data API in the network's subnets,
  with that group, private DNS and an endpoint policy (see ENDPOINT_ACTIONS); with phase
  a4 in the environment (step event-bus), one for EventBridge too, whose policy allows
  PutEvents on the environment's bus only.

Everything is described before anything is created, and what was made outside runbook is
adopted (groups by VPC and name, endpoints by VPC and service), never duplicated.

This step owns the whole rule set of those three groups, the cluster's included (step
`database` only makes that group, with AWS's default egress): one owner, so two steps
never undo each other's rules. The one rule of the cluster's group it leaves to another
step is the DB port from the RDS Proxy's group, which step db-proxy owns (`kept_rules`).
Rules are compared one by one (`runbook.aws.sgrules`): a missing rule is added, and
every other rule, in either direction, is removed, whoever added it; a broader rule (a
port range, 0.0.0.0/0) is not taken for the exact one. The one exception is the all-traffic egress to ::/0 on a group that keeps AWS's default
egress, in a VPC with an IPv6 block: it is part of that default (moto adds it there), so
it is neither added nor removed. The new rule is added before the ones it replaces are
removed, so the functions never lose their path.

moto is laxer than AWS here, and runbook does not rely on the API to refuse anything:
moto 5.2.5 accepts a second endpoint for the same service with private DNS, ignores
ClientToken, accepts private DNS in a VPC without DNS hostnames, keeps deleted endpoints
listed (state `deleted`) and ignores PrivateDnsEnabled in ModifyVpcEndpoint. So the step
checks the VPC's DNS attributes itself, leaves endpoints in a final state out, and in
`settle` describes everything again and fails if the result differs from the plan.

`settle` (after apply, and on every re-run) then runs `runbook.aws.reachability.preflight`
over the described state: a pure function that says whether each Lambda subnet reaches
Secrets Manager and whether the security groups let Lambda reach the cluster's port. A
missing piece fails the step with a message that names it and the way to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, retry, sgrules
from runbook.aws.reachability import FINAL_STATES, HTTPS, Described, Endpoint, Subnet, preflight
from runbook.aws.reachability import SecurityGroup as Group
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import Inventory
from runbook.resources.security_group import SecurityGroup, SecurityGroupSpec
from runbook.resources.security_group_rule import RuleSet, RuleSetSpec, SecurityGroupRule
from runbook.resources.vpc import has_ipv6, routed_subnets, vpc_attribute
from runbook.resources.event_bus import DEFAULT_BUS, rule_arn
from runbook.resources.vpc_endpoint import VpcEndpoint, VpcEndpointSpec

STEP_NAME = "vpc-integrate"
SERVICES = ("secretsmanager", "rds-data")
# With phase a4 (step event-bus in the environment file), Post-Confirmation publishes to
# EventBridge from the private subnets: an endpoint for `events` too.
EVENT_SERVICES = ("events",)
# The security groups whose rule sets this step owns, in the order their rules are planned.
GROUP_ROLES = ("database", "endpoints", "lambda")

# The one action an endpoint policy allows on "*": AWS authorizes it on nothing else,
# and it answers only what GetSecretValue on each secret allows (Secret.read_values).
BATCH_READ = ("secretsmanager:BatchGetSecretValue",)

# What may pass each endpoint: its endpoint policy allows these, on the environment's
# own resources (BATCH_READ aside), to principals of this account only. An endpoint made
# without a policy gets AWS's default, which allows any principal any action on any
# resource ("Action": "*"), so runbook always sets one, also on an endpoint it adopts.
# With private DNS all of the VPC's calls to the service pass the endpoint.
ENDPOINT_ACTIONS = {
    "secretsmanager": {
        # The functions' and runbook's reads of the DB and app-config secrets.
        "ReadTheSecrets": ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"),
        # store-secrets reads both values in one call (on "*": see BATCH_READ).
        "ReadTheSecretsInOneCall": BATCH_READ,
        # store-secrets' writes, for runbook run inside the VPC (database.connect: direct).
        "KeepTheSecrets": ("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                           "secretsmanager:RestoreSecret", "secretsmanager:TagResource"),
    },
    "events": {
        # Post-Confirmation's user.registered entries, on the environment's own bus.
        "PublishRegistrations": ("events:PutEvents",),
        # event-bus's and deploy-process-user-signup's calls, and registration-test's
        # read-back, for runbook run inside the VPC (database.connect: direct): on the
        # bus and the two rules only.
        "KeepTheRouting": ("events:CreateEventBus", "events:DescribeEventBus",
                           "events:DescribeRule", "events:ListTagsForResource",
                           "events:ListTargetsByRule", "events:PutRule", "events:PutTargets",
                           "events:TagResource"),
    },
    "rds-data": {
        # The Data API's statements and transactions, on the environment's cluster.
        "DataApiOnTheCluster": ("rds-data:BatchExecuteStatement", "rds-data:BeginTransaction",
                                "rds-data:CommitTransaction", "rds-data:ExecuteStatement",
                                "rds-data:RollbackTransaction"),
    },
}

# Interface endpoints usually become available within 1-3 minutes on AWS.
ENDPOINT_TIMEOUT_S = 10 * 60
ENDPOINT_INTERVAL_S = 10
# After a write, DescribeSecurityGroups / DescribeVpcEndpoints can lag it by a few seconds;
# 12 polls 5 s apart before the step calls the difference a failure.
PROPAGATION_TIMEOUT_S = 60
PROPAGATION_INTERVAL_S = 5

# The groups whose rule sets keep AWS's default egress (the module docstring says why).
KEEP_DEFAULT_EGRESS = ("database", "lambda")

GROUP, RULE, ENDPOINT = SecurityGroup(), SecurityGroupRule(), VpcEndpoint()


# -- the step --------------------------------------------------------------------------

@dataclass
class IntegrateState(Inventory):
    """found: "group lambda", "group endpoints", "endpoint <service>" and "rules <role>"
    (the rules of the group of each of GROUP_ROLES)."""

    vpc_id: Any = UNKNOWN
    vpc_cidr: str = ""
    subnet_ids: list = field(default_factory=list)  # the network step's: where functions run
    database_group_id: Any = UNKNOWN
    port: int = 0
    account: str | None = None            # in the endpoint policies
    ipv6: bool = False                    # the VPC has an IPv6 block (see sgrules)
    dns_support: bool | None = None
    dns_hostnames: bool | None = None
    subnets: dict[str, Subnet] = field(default_factory=dict)        # every subnet of the VPC
    groups: dict[str, Group] = field(default_factory=dict)          # every group of the VPC
    endpoints: list[Endpoint] = field(default_factory=list)         # interface, not final


@dataclass(frozen=True)
class IntegrateOutputs(Outputs):
    lambda_security_group_id: str
    endpoint_security_group_id: str
    subnet_ids: tuple
    vpc_id: str
    endpoints: dict                       # {service: endpoint id}


class VpcIntegrateStep(Step):
    name = STEP_NAME

    def __init__(self, ctx, inputs=None):
        super().__init__(ctx, inputs)
        self._wrote = False

    # -- what the step wants ---------------------------------------------------------

    def _group_name(self, role: str) -> str:
        if role == "lambda":
            return naming.lambda_security_group_name(self.config)
        if role == "database":
            return self.config.database.security_group_name
        return naming.endpoint_security_group_name(self.config)

    def _service_name(self, service: str) -> str:
        return f"com.amazonaws.{self.ctx.aws.region}.{service}"

    def services(self) -> tuple[str, ...]:
        """The services that get an interface endpoint in this environment."""
        if self.config.publishes_registrations():
            return SERVICES + EVENT_SERVICES
        return SERVICES

    def endpoint_policy(self, service: str, account: str | None) -> dict:
        """The endpoint policy of `service`'s endpoint (see ENDPOINT_ACTIONS)."""
        region = self.ctx.aws.region
        if service == "secretsmanager":
            # A secret's ARN ends in its name, a hyphen and six random characters.
            resource = [f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-??????"
                        for name in (self.config.secrets.db, self.config.secrets.app_config)]
        elif service == "events":
            bus = naming.event_bus_name(self.config)
            resource = f"arn:aws:events:{region}:{account}:event-bus/{bus}"
        else:
            resource = f"arn:aws:rds:{region}:{account}:cluster:{self.config.database.cluster_id}"

        def resources(sid: str):
            if ENDPOINT_ACTIONS[service][sid] == BATCH_READ:
                return "*"
            if sid != "KeepTheRouting":
                return resource
            return [resource,
                    rule_arn(region, account, bus, naming.registration_rule_name(self.config)),
                    rule_arn(region, account, DEFAULT_BUS, naming.relay_rule_name(self.config))]

        return {"Version": "2012-10-17", "Statement": [
            {"Sid": sid, "Effect": "Allow", "Principal": "*", "Action": list(actions),
             "Resource": resources(sid),
             "Condition": {"StringEquals": {"aws:PrincipalAccount": account}}}
            for sid, actions in ENDPOINT_ACTIONS[service].items()]}

    def group_spec(self, role: str, vpc_id, ipv6: bool) -> SecurityGroupSpec:
        """The Lambda group or the endpoints' ("lambda", "endpoints")."""
        name = self._group_name(role)
        purpose = "Lambda functions" if role == "lambda" else "interface VPC endpoints"
        return SecurityGroupSpec(
            name, naming.tags(self.config, STEP_NAME, name), "network.name", vpc_id=vpc_id,
            description=f"{purpose} of {self.config.network.name} (managed by runbook)",
            default_egress=role in KEEP_DEFAULT_EGRESS, ipv6=ipv6)

    def desired_rules(self, state: IntegrateState, role: str) -> frozenset[sgrules.Rule]:
        """The complete rule set of `role`'s group (see the module docstring)."""
        egress = {sgrules.ALL_TRAFFIC_OUT} if role in KEEP_DEFAULT_EGRESS else set()
        if role == "lambda":
            return frozenset(egress)
        port = state.port if role == "database" else HTTPS
        return frozenset({sgrules.Rule.tcp_from(port, state.ref("group lambda")), *egress})

    def kept_rules(self, state: IntegrateState, role: str) -> frozenset[sgrules.Rule]:
        """Rules of `role`'s group left as they are: the ::/0 part of AWS's default
        egress, on a group that keeps that default, in a VPC with IPv6; and on the
        cluster's group, the DB port from the RDS Proxy's group, which step db-proxy
        owns (with db-proxy in the environment file, once its group exists)."""
        kept = set()
        if state.ipv6 and role in KEEP_DEFAULT_EGRESS:
            kept.add(sgrules.ALL_TRAFFIC_OUT_V6)
        if role == "database" and "db-proxy" in self.config.all_steps():
            name = naming.proxy_security_group_name(self.config)
            kept.update(sgrules.Rule.tcp_from(state.port, group.id)
                        for group in state.groups.values() if group.name == name)
        return frozenset(kept)

    def rules_spec(self, state: IntegrateState, role: str) -> RuleSetSpec:
        """The rules of `role`'s group: "database" (the cluster's), "endpoints", "lambda"."""
        what = "Aurora PostgreSQL" if role == "database" else "VPC endpoints (HTTPS)"
        return RuleSetSpec(
            self._group_name(role), naming.tags(self.config, STEP_NAME),
            "database.security_group_name" if role == "database" else "network.name",
            group_id=(state.database_group_id if role == "database"
                      else state.ref(f"group {role}")),
            rules=self.desired_rules(state, role), kept=self.kept_rules(state, role),
            description=f"Lambda to {what} (runbook {STEP_NAME})",
            source_name=self._group_name("lambda"),
            names={group.id: group.name for group in state.groups.values()})

    def endpoint_spec(self, state: IntegrateState, service: str) -> VpcEndpointSpec:
        name = naming.vpc_endpoint_name(self.config, service)
        return VpcEndpointSpec(
            name, naming.tags(self.config, STEP_NAME, name), "network.name",
            vpc_id=state.vpc_id, service=service, service_name=self._service_name(service),
            subnets=tuple(state.subnet_ids),
            zones={subnet.id: subnet.az for subnet in state.subnets.values()},
            group_id=state.ref("group endpoints"),
            policy=self.endpoint_policy(service, state.account))

    # -- what was found ----------------------------------------------------------------

    @staticmethod
    def group(state: IntegrateState, role: str) -> Group | None:
        """The group for `role` ("lambda" or "endpoints")."""
        return state.found.get(f"group {role}")

    @staticmethod
    def owned_group(state: IntegrateState, role: str) -> Group | None:
        """The group of `role`: "database" (the cluster's), "endpoints" or "lambda"."""
        if role == "database":
            return state.groups.get(state.database_group_id)
        return state.found.get(f"group {role}")

    @staticmethod
    def endpoint(state: IntegrateState, service: str) -> Endpoint | None:
        return state.found.get(f"endpoint {service}")

    def owned_groups(self, vpc_id, ipv6: bool, groups: dict[str, Group]) -> dict[str, Group]:
        """{role: group} of GROUP_ROLES' groups among the VPC's `groups`, those found."""
        owned = {role: GROUP.select(self.group_spec(role, vpc_id, ipv6), groups)
                 for role in ("lambda", "endpoints")}
        owned["database"] = groups.get(self.inputs.database.security_group_id)
        return {role: group for role, group in owned.items() if group is not None}

    # -- read ------------------------------------------------------------------------

    def read(self) -> IntegrateState:
        state = self._read()
        # The endpoint policies name the account; outputs do not need it. Asked last, once
        # nothing read can still refuse the plan.
        state.account = None if self.ctx.outputs_only else self.api.account()
        return state

    def _read(self) -> IntegrateState:
        network = self.inputs.network
        self.inputs.database
        account = None
        vpc_id = network.vpc_id
        if not is_known(vpc_id):
            return self.state(account)
        api = self.api
        dns = (vpc_attribute(api, vpc_id, "enableDnsSupport"),
               vpc_attribute(api, vpc_id, "enableDnsHostnames"))
        ipv6 = has_ipv6(api, vpc_id)
        subnets = routed_subnets(api, vpc_id)
        groups = GROUP.in_vpc(api, vpc_id)
        owned = sorted(group.id for group in self.owned_groups(vpc_id, ipv6, groups).values())
        rules = RULE.of_groups(api, owned) if owned else {}
        return self.state(account, dns=dns, ipv6=ipv6, subnets=subnets, groups=groups,
                          rules=rules, endpoints=ENDPOINT.in_vpc(api, vpc_id))

    def state(self, account: str | None, *, dns: tuple = (None, None), ipv6: bool = False,
              subnets: dict[str, Subnet] | None = None,
              groups: dict[str, Group] | None = None,
              rules: dict[str, dict[str, sgrules.Rule]] | None = None,
              endpoints: list[Endpoint] | None = None) -> IntegrateState:
        """What was read, keyed for the plan: pure, so that plans are tested from data.

        The groups and endpoints this step would adopt are refused here when another
        environment owns them (their names derive from network.name)."""
        network, database = self.inputs.network, self.inputs.database
        state = IntegrateState(
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr,
            subnet_ids=list(network.subnet_ids), database_group_id=database.security_group_id,
            port=int(database.port), account=account, ipv6=ipv6, dns_support=dns[0],
            dns_hostnames=dns[1], subnets=dict(subnets or {}), groups=dict(groups or {}),
            endpoints=list(endpoints or ()))
        if not is_known(state.vpc_id):
            return state
        owned = self.owned_groups(state.vpc_id, state.ipv6, state.groups)
        for role in ("lambda", "endpoints"):
            if role in owned:
                group = owned[role]
                GROUP.claim(self.group_spec(role, state.vpc_id, state.ipv6), group,
                            f"ec2:security-group {group.name} ({group.id})")
                state.found[f"group {role}"] = group
        for service in self.services():
            spec = self.endpoint_spec(state, service)
            endpoint = ENDPOINT.select(spec, state.endpoints)
            if endpoint is not None:
                ENDPOINT.claim(spec, endpoint, f"ec2:vpc-endpoint {service} ({endpoint.id})")
                state.found[f"endpoint {service}"] = endpoint
        for role, group in owned.items():
            state.found[f"rules {role}"] = RuleSet(group.id, {},
                                                   dict((rules or {}).get(group.id, {})))
        return state

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: IntegrateState) -> list[Change]:
        self._check_prerequisites(state)
        changes = []
        for role in ("lambda", "endpoints"):
            changes += GROUP.plan(self.group_spec(role, state.vpc_id, state.ipv6),
                                  self.group(state, role), f"group {role}")
        rule_sets = {role: self.rules_spec(state, role) for role in GROUP_ROLES}
        for role in GROUP_ROLES:  # first what is missing, then what is too much
            changes += RULE.plan_missing(rule_sets[role], state.found.get(f"rules {role}"),
                                         f"rules {role}")
        for role in GROUP_ROLES:
            changes += RULE.plan_extra(rule_sets[role], state.found.get(f"rules {role}"),
                                       f"rules {role}")
        for service in self.services():
            changes += ENDPOINT.plan(self.endpoint_spec(state, service),
                                     self.endpoint(state, service), f"endpoint {service}")
        return changes

    def _check_prerequisites(self, state: IntegrateState) -> None:
        if not is_known(state.vpc_id):
            return
        off = [attr for attr, on in (("enableDnsSupport", state.dns_support),
                                     ("enableDnsHostnames", state.dns_hostnames)) if not on]
        if off:
            raise PlanError(STEP_NAME, f"vpc {state.vpc_id}",
                            f"{' and '.join(off)} {'is' if len(off) == 1 else 'are'} off, and "
                            "the interface endpoints' private DNS needs enableDnsSupport and "
                            "enableDnsHostnames on. `runbook run --step network` turns them on.")
        missing = [s for s in state.subnet_ids if is_known(s) and s not in state.subnets]
        if missing:
            raise PlanError(STEP_NAME, f"subnet {missing[0]}",
                            f"the network step's subnet is not in {state.vpc_id}. Run "
                            "`runbook run --phase a1` first.")
        if is_known(state.database_group_id) and state.database_group_id not in state.groups:
            raise PlanError(STEP_NAME, f"security group {state.database_group_id}",
                            f"the database step's security group is not in {state.vpc_id}. "
                            "Run `runbook run --phase a1` first.")

    # -- apply -----------------------------------------------------------------------

    def apply(self, state: IntegrateState, change: Change) -> bool | None:
        self._wrote = True
        return super().apply(state, change)

    # -- settle: wait, describe again, check ------------------------------------------

    def settle(self, state: IntegrateState) -> None:
        """Wait for the endpoints, then prove from a fresh description that the plan took
        effect and that the preflight passes. Read calls only."""
        self._wait_for_endpoints(state)
        fresh, problems = state, {}

        def describe() -> dict:
            nonlocal fresh, problems
            fresh = self.read()
            problems = self.unsettled(fresh)
            return problems

        # Only our own writes can still be propagating; otherwise one look decides.
        timeout = PROPAGATION_TIMEOUT_S if self._wrote else 0
        try:
            retry.wait_until(describe, lambda found: not found,
                             what=f"the security groups and endpoints of {state.vpc_id}",
                             timeout_s=timeout, interval_s=PROPAGATION_INTERVAL_S,
                             sleep=self.ctx.sleep, clock=self.ctx.clock,
                             on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout:
            [(resource, lines)] = list(problems.items())[:1]
            text = lines[0] if len(lines) == 1 else "\n" + "\n".join(f"- {p}" for p in lines)
            raise StepFailed(STEP_NAME, resource, text) from None
        state.__dict__.update(fresh.__dict__)

    def unsettled(self, state: IntegrateState) -> dict[str, list[str]]:
        """{what failed: problems} for freshly described `state`; {} when all is well.

        The preflight comes first: a missing path is what the operator has to hear about.
        Then the plan, which must be empty once applied; moto, for one, accepts a
        ModifyVpcEndpoint that turns private DNS on and does not turn it on.
        """
        problems = preflight(self.described(state))
        if problems:
            return {"reachability preflight": problems}
        left = self.plan(state)
        if left:
            return {"convergence": ["still to do after apply (AWS accepted the change, but "
                                    "describing shows it has not taken effect): "
                                    + "; ".join(c.describe() for c in left)]}
        return {}

    def described(self, state: IntegrateState) -> Described:
        lam = self.group(state, "lambda")
        return Described(
            vpc_id=state.vpc_id, vpc_cidr=state.vpc_cidr,
            dns_support=bool(state.dns_support), dns_hostnames=bool(state.dns_hostnames),
            subnets=[state.subnets[s] for s in state.subnet_ids if s in state.subnets],
            lambda_group_id=lam.id if lam else naming.lambda_security_group_name(self.config),
            database_group_id=state.database_group_id, database_port=state.port,
            groups=state.groups, endpoints=state.endpoints,
            services=("secretsmanager", *(s for s in self.services() if s in EVENT_SERVICES)))

    def _wait_for_endpoints(self, state: IntegrateState) -> None:
        ids = sorted(e.id for e in (self.endpoint(state, s) for s in self.services())
                     if e is not None and e.state.lower() != "available")
        if not ids:
            return
        ec2 = self.client("ec2")

        def states() -> dict[str, str]:
            found = self.api.retry_ec2(lambda: ec2.describe_vpc_endpoints(VpcEndpointIds=ids))
            return {e["VpcEndpointId"]: str(e.get("State", "")).lower()
                    for e in found["VpcEndpoints"]}

        def failed(current: dict[str, str]) -> str | None:
            gone = [f"{i} is {s}" for i, s in sorted(current.items()) if s in FINAL_STATES]
            return ", ".join(gone) or None

        self.wait_until(states, lambda now: all(s == "available" for s in now.values()),
                        what=f"vpc endpoints {', '.join(ids)} to be available",
                        resource="vpc endpoints", timeout_s=ENDPOINT_TIMEOUT_S,
                        interval_s=ENDPOINT_INTERVAL_S, failed=failed)

    # -- outputs -----------------------------------------------------------------------

    def outputs(self, state: IntegrateState) -> IntegrateOutputs:
        lam, endpoints_group = self.group(state, "lambda"), self.group(state, "endpoints")
        found = {service: self.endpoint(state, service) for service in self.services()}
        return IntegrateOutputs(
            lambda_security_group_id=lam.id if lam else UNKNOWN,
            endpoint_security_group_id=endpoints_group.id if endpoints_group else UNKNOWN,
            subnet_ids=tuple(state.subnet_ids),
            vpc_id=state.vpc_id,
            endpoints={service: e.id if e else UNKNOWN for service, e in found.items()})


STEP = VpcIntegrateStep
