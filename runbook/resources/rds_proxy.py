"""An RDS Proxy in end-to-end IAM mode, and its default target group's registration with
the cluster (step `db-proxy`).

End-to-end IAM: clients log in to the proxy with an IAM auth token over TLS, and the
proxy logs in to the cluster with IAM too (`DefaultAuthScheme=IAM_AUTH`), as its role
allows (`rds-db:connect` on the cluster's users). No per-user secret exists, so no
function and no proxy holds a password. The request carries no `Auth`: AWS requires it
only without IAM_AUTH (botocore's model of CreateDBProxy). moto 5.2.5 fails such a
request and drops DefaultAuthScheme; the sandbox fixes that (runbook.sandbox.rds_proxy).

A proxy's name is unique in the account and region, and cannot change; nor can its engine
family or its subnets (ModifyDBProxy has neither), so a difference there is a PlanError.

Registration is not idempotent on AWS: a second RegisterDBProxyTargets for the cluster is
DBProxyTargetAlreadyRegisteredFault; moto 5.2.5 silently adds a second target. So the
targets are read first and registered only when the cluster is not among them; two rows
for the cluster are refused; a fault saying it is registered is taken as done; and the
request is never sent again by botocore after a lost answer
(runbook.aws.clients.NOT_RETRIED_WHEN_UNCERTAIN).

Teardown deletes the proxy, whose target groups and registrations go with it, before
the cluster. Each delete reads first, by the proxy's name: moto 5.2.5 answers a
DeleteDBProxy, DescribeDBProxyTargets or DeregisterDBProxyTargets that names no proxy
with an internal error (KeyError), not DBProxyNotFoundFault; DescribeDBProxies says
"not found" there as AWS does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, retry
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import Change, diff_field
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec

ENGINE_FAMILY = "POSTGRESQL"
IAM_AUTH = "IAM_AUTH"
DEFAULT_TARGET_GROUP = "default"
# A PostgreSQL proxy listens on the engine's default port, whatever the cluster's port
# (AWS's RDS Proxy limitations; DescribeDBProxies gives no port). It reaches the cluster
# on the cluster's.
PORT = 5432
CLUSTER_TARGET = "TRACKED_CLUSTER"
AVAILABLE, UNAVAILABLE = "AVAILABLE", "UNAVAILABLE"
# A proxy's Status while RDS deletes it.
DELETING = "deleting"
# CreateDBProxy checks that RDS may assume the role: right after the role was made it can
# refuse until IAM has propagated it (InvalidParameterValue "... role ... assume").
ROLE_PROPAGATION = retry.IAM_PROPAGATION


def is_role_not_ready(exc: BaseException) -> bool:
    text = str(exc).lower()
    return retry.error_code(exc) in ("InvalidParameterValue", "InvalidParameterCombination") \
        and "role" in text


def resource_id(arn: str) -> str:
    """The proxy's `prx-...` id: the last segment of its ARN, which the functions'
    rds-db:connect resources name (arn:aws:rds-db:<region>:<account>:dbuser:prx-.../user)."""
    return arn.rsplit(":", 1)[-1] if arn else ""


# -- the proxy ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ProxySpec(Spec):
    role_arn: Any = None                 # the proxy role's ARN, or an Unknown with a ref
    subnet_ids: tuple = ()               # the network step's private subnets
    security_group_ids: tuple = ()       # the proxy's own group (id or Unknown)
    engine_family: str = ENGINE_FAMILY
    require_tls: bool = True
    default_auth_scheme: str = IAM_AUTH
    idle_client_timeout_s: int = 1800


@dataclass
class ProxyFound(Found):
    """`id` is the proxy's name."""

    arn: str = ""
    endpoint: str = ""
    status: str = ""
    vpc_id: str = ""
    engine_family: str = ""
    role_arn: str = ""
    subnet_ids: tuple = ()
    security_group_ids: tuple = ()
    require_tls: bool = False
    default_auth_scheme: str | None = None
    # The Auth items (one per secret, standard mode): end-to-end IAM uses none.
    secrets: tuple = ()
    idle_client_timeout_s: int = 1800

    @property
    def resource_id(self) -> str:
        return resource_id(self.arn)


class DbProxy(Resource[ProxySpec, ProxyFound]):
    kind, service, plural = "rds:db-proxy", "rds", "DB proxies"
    label_id = False
    ops = {"create": "create_db_proxy", "update": "modify_db_proxy",
           "tag": "add_tags_to_resource"}
    replaces = {
        "engine_family": "A proxy's engine family cannot change: delete the proxy (aws rds "
                         "delete-db-proxy) or fix database.cluster_id.",
        "subnet_ids": "A proxy's subnets cannot change: delete the proxy (aws rds "
                      "delete-db-proxy) and run again.",
    }

    # -- read ------------------------------------------------------------------------

    def candidates(self, api: Api, spec: ProxySpec) -> dict:
        """By name only: a proxy's name is unique in the account and region."""
        return {"tagged": [], "named": self.by_name(api, spec)}

    def by_name(self, api: Api, spec: ProxySpec) -> list[ProxyFound]:
        raw = described(api, spec.name)
        return [] if raw is None else [parse_proxy(raw, proxy_tags(api, raw))]

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: ProxySpec) -> dict:
        return {"engine_family": spec.engine_family, "require_tls": spec.require_tls,
                "default_auth_scheme": spec.default_auth_scheme, "secrets": "none",
                "subnets": list(spec.subnet_ids),
                "security_groups": list(spec.security_group_ids), "role": spec.role_arn}

    def check(self, spec: ProxySpec, found: ProxyFound) -> None:
        if found.engine_family != spec.engine_family:
            raise PlanError(spec.step, self.label(spec, found),
                            f"its engine family is {found.engine_family}, runbook's proxy "
                            f"is {spec.engine_family}. {self.replaces['engine_family']}")
        if set(found.subnet_ids) != set(spec.subnet_ids):
            raise PlanError(spec.step, self.label(spec, found),
                            f"its subnets are {', '.join(sorted(found.subnet_ids))}, the "
                            f"network step's are {', '.join(sorted(spec.subnet_ids))}. "
                            f"{self.replaces['subnet_ids']}")

    def diff(self, spec: ProxySpec, found: ProxyFound) -> dict:
        diff: dict = {}
        diff_field(diff, "require_tls", found.require_tls, spec.require_tls)
        diff_field(diff, "default_auth_scheme", found.default_auth_scheme,
                   spec.default_auth_scheme)
        diff_field(diff, "role", found.role_arn, spec.role_arn)
        diff_field(diff, "security_groups", sorted(found.security_group_ids),
                   sorted(spec.security_group_ids))
        diff_field(diff, "idle_client_timeout_s", found.idle_client_timeout_s,
                   spec.idle_client_timeout_s)
        return diff

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: ProxySpec) -> ProxyFound:
        rds = api.client("rds")
        try:
            created = retry.retry(lambda: rds.create_db_proxy(
                DBProxyName=spec.name, EngineFamily=spec.engine_family,
                DefaultAuthScheme=spec.default_auth_scheme, RoleArn=spec.role_arn,
                VpcSubnetIds=list(spec.subnet_ids),
                VpcSecurityGroupIds=list(spec.security_group_ids),
                RequireTLS=spec.require_tls, IdleClientTimeout=spec.idle_client_timeout_s,
                Tags=naming.as_aws(spec.tags)), when=is_role_not_ready,
                policy=ROLE_PROPAGATION, sleep=api.sleep)["DBProxy"]
        except rds.exceptions.DBProxyAlreadyExistsFault:
            # An earlier attempt's answer was lost, or a concurrent run made it: adopt it
            # as a plan would (claimed, checked), and change what differs.
            found = self.find(api, spec)
            if found is None:
                raise StepFailed(spec.step, self.label(spec), "AWS said it exists, and "
                                 "then that it does not: run again") from None
            self.check(spec, found)
            diff = self.diff(spec, found)
            found = self.update(api, spec, found, diff, {}) if diff else found
            add = naming.missing_tags(spec.tags, found.tags)
            return self.tag(api, found, add) if add else found
        return parse_proxy(created, dict(spec.tags))

    def update(self, api: Api, spec: ProxySpec, found: ProxyFound, diff: dict,
               tags: dict) -> ProxyFound:
        """ModifyDBProxy with the settings that differ (moto 5.2.5 does not implement it)."""
        params: dict = {}
        if "require_tls" in diff:
            params["RequireTLS"] = spec.require_tls
        if "default_auth_scheme" in diff:
            params["DefaultAuthScheme"] = spec.default_auth_scheme
        if "role" in diff:
            params["RoleArn"] = spec.role_arn
        if "security_groups" in diff:
            params["SecurityGroups"] = list(spec.security_group_ids)
        if "idle_client_timeout_s" in diff:
            params["IdleClientTimeout"] = spec.idle_client_timeout_s
        rds = api.client("rds")
        proxy = rds.modify_db_proxy(DBProxyName=found.id, **params)["DBProxy"]
        return parse_proxy(proxy, found.tags)

    def tag_target(self, found: ProxyFound) -> str:
        return found.arn

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[ProxyFound]:
        """DescribeDBProxies carries no tags: each proxy's are read by its ARN."""
        proxies = (parse_proxy(raw, proxy_tags(api, raw)) for raw in pages(
            api.client("rds"), "describe_db_proxies", "DBProxies"))
        return [p for p in proxies if p.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: ProxyFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteDBProxy, which takes the proxy's target groups and registrations with
        it. One gone or `deleting` is done."""
        raw = described(api, found.id)
        if raw is None or raw.get("Status") == DELETING:
            return
        or_none(lambda: api.client("rds").delete_db_proxy(DBProxyName=found.id))

    def gone(self, api: Api, found: ProxyFound) -> bool:
        return described(api, found.id) is None


def described(api: Api, name: str) -> dict | None:
    """DescribeDBProxies' item for the proxy `name`, or None when there is none."""
    proxies = or_none(lambda: api.client("rds").describe_db_proxies(
        DBProxyName=name)["DBProxies"])
    return proxies[0] if proxies else None


def proxy_tags(api: Api, raw: dict) -> dict:
    return naming.from_aws(api.client("rds").list_tags_for_resource(
        ResourceName=raw["DBProxyArn"])["TagList"])


def parse_proxy(raw: dict, tags: dict) -> ProxyFound:
    return ProxyFound(
        raw["DBProxyName"], tags, arn=raw.get("DBProxyArn", ""),
        endpoint=raw.get("Endpoint", ""), status=raw.get("Status", ""),
        vpc_id=raw.get("VpcId", ""), engine_family=raw.get("EngineFamily", ""),
        role_arn=raw.get("RoleArn", ""), subnet_ids=tuple(sorted(raw.get("VpcSubnetIds") or ())),
        security_group_ids=tuple(sorted(raw.get("VpcSecurityGroupIds") or ())),
        require_tls=bool(raw.get("RequireTLS")),
        default_auth_scheme=raw.get("DefaultAuthScheme"),
        secrets=tuple(a.get("SecretArn") or a.get("UserName") or "(secret)"
                      for a in raw.get("Auth") or () if a.get("SecretArn") or a.get("AuthScheme")),
        idle_client_timeout_s=int(raw.get("IdleClientTimeout") or 1800))


# -- the default target group's registration ---------------------------------------------

@dataclass(frozen=True)
class TargetSpec(Spec):
    """`name` is the cluster's identifier; `proxy` the proxy's name."""

    proxy: str = ""
    cluster_id: str = ""
    target_group: str = DEFAULT_TARGET_GROUP


@dataclass
class TargetFound(Found):
    """What DescribeDBProxyTargets says of the proxy's default target group: `id` is the
    cluster's identifier; `targets` every row (the cluster's, and one per instance);
    `proxy` the proxy's name."""

    targets: list = field(default_factory=list)
    proxy: str = ""

    @property
    def health(self) -> dict:
        """{target: "STATE" or "STATE (Reason: Description)"} of the rows with a health."""
        return {target_name(t): health_text(t) for t in self.targets
                if t.get("TargetHealth")}


def target_name(target: dict) -> str:
    return f"{target.get('Type', '?').lower()} {target.get('RdsResourceId', '?')}"


def health_text(target: dict) -> str:
    health = target.get("TargetHealth") or {}
    state = health.get("State", "?")
    why = ": ".join(part for part in (health.get("Reason"), health.get("Description")) if part)
    return f"{state} ({why})" if why else state


class ProxyTarget(Resource[TargetSpec, TargetFound]):
    kind, service, plural = "rds:db-proxy-target", "rds", "proxy targets"
    label_id = False

    @staticmethod
    def read(api: Api, proxy: str) -> list[dict]:
        """The default target group's targets ([] when the proxy does not exist yet)."""
        answer = or_none(lambda: api.client("rds").describe_db_proxy_targets(
            DBProxyName=proxy, TargetGroupName=DEFAULT_TARGET_GROUP))
        return [] if answer is None else list(answer.get("Targets") or ())

    def label(self, spec: TargetSpec, found: TargetFound | None = None) -> str:
        return f"{self.kind} {spec.proxy}/{spec.target_group} -> {spec.cluster_id}"

    def select(self, spec: TargetSpec, targets: list[dict]) -> TargetFound | None:
        """The registration of the cluster among the proxy's `targets`, pure. Refused: a
        cluster registered twice (moto's duplicate; AWS would have refused it), and a
        proxy whose default group serves another cluster (a group has one)."""
        clusters = [t for t in targets if t.get("Type") == CLUSTER_TARGET]
        ours = [t for t in clusters if t.get("RdsResourceId") == spec.cluster_id]
        if len(ours) > 1:
            raise PlanError(spec.step, self.label(spec),
                            f"the cluster is registered {len(ours)} times with the proxy's "
                            f"{spec.target_group} target group; AWS allows it once. "
                            f"Deregister it (aws rds deregister-db-proxy-targets "
                            f"--db-proxy-name {spec.proxy} --db-cluster-identifiers "
                            f"{spec.cluster_id}), then run again.")
        others = sorted(t.get("RdsResourceId", "?") for t in clusters if t not in ours)
        if others:
            raise PlanError(spec.step, self.label(spec),
                            f"the proxy's {spec.target_group} target group serves cluster "
                            f"{', '.join(others)}, not {spec.cluster_id}. Fix "
                            "database.cluster_id, or deregister that cluster.")
        if not ours:
            return None
        return TargetFound(spec.cluster_id, {}, list(targets), spec.proxy)

    def summary(self, spec: TargetSpec) -> dict:
        return {"proxy": spec.proxy, "target_group": spec.target_group,
                "cluster": spec.cluster_id}

    def plan(self, spec: TargetSpec, found: TargetFound | None, key: str) -> list[Change]:
        """Register when the cluster is not registered; nothing else (a registration has
        no settings, and carries no tags: the proxy is claimed)."""
        if found is not None:
            return []
        return [Change("create", self.label(spec), "register_db_proxy_targets",
                       {"spec": spec}, self.summary(spec), run=Apply(self, key, "create"))]

    def create(self, api: Api, spec: TargetSpec) -> TargetFound:
        rds = api.client("rds")
        # Read again right before: a concurrent run may have registered it since the plan.
        found = self.select(spec, self.read(api, spec.proxy))
        if found is not None:
            return found
        try:
            rds.register_db_proxy_targets(DBProxyName=spec.proxy,
                                          TargetGroupName=spec.target_group,
                                          DBClusterIdentifiers=[spec.cluster_id])
        except rds.exceptions.DBProxyTargetAlreadyRegisteredFault:
            pass  # registered between the read and the request: done
        found = self.select(spec, self.read(api, spec.proxy))
        if found is None:
            raise StepFailed(spec.step, self.label(spec), "AWS accepted the registration, "
                             "and the proxy's targets do not list the cluster: run again")
        return found

    def delete(self, api: Api, found: TargetFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Deregister the cluster from the proxy's default target group. `owned` is []:
        DeleteDBProxy takes the registration with the proxy, so teardown finds none of
        its own. Done when the proxy or the registration is gone."""
        if described(api, found.proxy) is None:
            return
        if not any(t.get("Type") == CLUSTER_TARGET and t.get("RdsResourceId") == found.id
                   for t in self.read(api, found.proxy)):
            return
        or_none(lambda: api.client("rds").deregister_db_proxy_targets(
            DBProxyName=found.proxy, TargetGroupName=DEFAULT_TARGET_GROUP,
            DBClusterIdentifiers=[found.id]))
