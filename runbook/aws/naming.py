"""Names and tags runbook gives what it creates, so that it can find them again.

Every taggable resource carries `runbook:env` and `runbook:step`; adoption and
teardown search by them. What runbook creates also carries `runbook:created`, set in
the create call only: teardown deletes that, and keeps what runbook adopted. The config's extra `tags` are added to every resource.
"""

from __future__ import annotations

ENV_TAG = "runbook:env"
STEP_TAG = "runbook:step"
# Set only in the call that creates a resource, never added later: what carries it,
# runbook made, and `runbook destroy` may delete; what runbook adopted (made by the old
# shell scripts, or by hand) has runbook:env and runbook:step but not this, and is kept.
# A tag, so that the distinction lives with the resource and survives a lost report.
CREATED_TAG = "runbook:created"
CREATED = "true"

# Keys of the app-config secret that runbook generates once and never changes.
GENERATED_APP_KEYS = ("jwt_secret",)


def tags(config, step: str, name: str | None = None) -> dict[str, str]:
    out = dict(config.tags)
    if name:
        out["Name"] = name
    out[ENV_TAG] = config.env
    out[STEP_TAG] = step
    out[CREATED_TAG] = CREATED
    return out


def created(tag_map: dict[str, str] | None) -> bool:
    """Whether runbook made the resource these tags are on (CREATED_TAG)."""
    return (tag_map or {}).get(CREATED_TAG) == CREATED


def env_filter(env: str) -> list[dict]:
    """Describe* filters for everything environment `env` holds, whichever step."""
    return [{"Name": f"tag:{ENV_TAG}", "Values": [env]}]


def owner_filters(env: str, step: str) -> list[dict]:
    """Describe* filters for what `step` of environment `env` made."""
    return [{"Name": f"tag:{ENV_TAG}", "Values": [env]},
            {"Name": f"tag:{STEP_TAG}", "Values": [step]}]


def as_aws(tag_map: dict[str, str]) -> list[dict[str, str]]:
    """{'k': 'v'} -> [{'Key': 'k', 'Value': 'v'}], sorted for stable requests."""
    return [{"Key": k, "Value": v} for k, v in sorted(tag_map.items())]


def tag_specifications(resource_type: str, tag_map: dict[str, str]) -> list[dict]:
    """An EC2 create's TagSpecifications: the tags set in the same call, so that nothing
    is ever made untagged by runbook (a crash between a create and its tags would be)."""
    return [{"ResourceType": resource_type, "Tags": as_aws(tag_map)}]


def from_aws(tag_list: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tag_list or ()}


def missing_tags(desired: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """Tags to add so that `current` carries all of `desired` (others are left alone).

    An adopted resource keeps the Name it has: renaming what the old scripts (or another
    team) named would surprise its owners, and two desired names for one shared resource
    would otherwise rename it on every run. CREATED_TAG is never added: an adopted
    resource stays one that teardown keeps.
    """
    return {k: v for k, v in desired.items()
            if current.get(k) != v and k != CREATED_TAG
            and not (k == "Name" and current.get("Name"))}


def tag_diff(current: dict[str, str], adding: dict[str, str]) -> dict:
    """{"from": current values of the changing tags (None if absent), "to": new values}."""
    return {"from": {key: current.get(key) for key in adding}, "to": adding}


def vpc_name(config) -> str:
    return f"{config.network.name}-vpc"


def subnet_name(config, az: str) -> str:
    return f"{config.network.name}-private-{az}"


def route_table_name(config, az: str) -> str:
    return f"{config.network.name}-private-rt-{az}"


def public_subnet_name(config, az: str) -> str:
    return f"{config.network.name}-public-{az}"


def public_route_table_name(config) -> str:
    """The one route table of the public subnets: 0.0.0.0/0 to the internet gateway."""
    return f"{config.network.name}-public"


def internet_gateway_name(config) -> str:
    return f"{config.network.name}-igw"


def lambda_security_group_name(config) -> str:
    return f"{config.network.name}-lambda"


def endpoint_security_group_name(config) -> str:
    return f"{config.network.name}-endpoints"


def event_bus_name(config) -> str:
    """The custom EventBridge bus of phase a4 (step event-bus)."""
    return f"{config.network.name}-events"


def registration_rule_name(config) -> str:
    """The rule on that bus that routes user.registered to the signup queue (event-bus)."""
    return f"{config.network.name}-user-registered"


def relay_rule_name(config) -> str:
    """The schedule, on the default bus, that invokes the registration relay
    (deploy-process-user-signup)."""
    return f"{config.network.name}-registration-relay"


def vpc_endpoint_name(config, service: str) -> str:
    """Name tag of the interface endpoint for `service` ("secretsmanager", "rds-data")."""
    return f"{config.network.name}-{service}"


def db_proxy_name(config) -> str:
    """The cluster's RDS Proxy (step db-proxy)."""
    return f"{config.database.cluster_id}-proxy"


def proxy_security_group_name(config) -> str:
    """The proxy's own security group: 5432 from the Lambda group, to the cluster's."""
    return f"{config.network.name}-proxy"


def proxy_role_name(config) -> str:
    """The role the proxy assumes to log in to the cluster by IAM (rds-db:connect)."""
    return f"{db_proxy_name(config)}-role"
