"""The sandbox's fix for moto 5.2.5's CreateDBProxy in end-to-end IAM mode.

runbook creates its proxy as AWS documents end-to-end IAM: `DefaultAuthScheme=IAM_AUTH`
and no `Auth` (no per-user secret; botocore's model: "If you don't specify
DefaultAuthScheme or specify this parameter as NONE, you must specify the Auth option").
moto 5.2.5 answers that request with HTTP 500 (KeyError 'auth'), and it neither keeps nor
returns DefaultAuthScheme, so every later plan would see a proxy to move to IAM_AUTH, and
ModifyDBProxy is not implemented there.

`install` teaches the moto running in this process (the sandbox's server, or a test's) to
take a CreateDBProxy without Auth (as an empty list) and to keep DefaultAuthScheme, which
DescribeDBProxies then returns as AWS does. Nothing else of moto's proxy changes: it is
`available` at once, and a second RegisterDBProxyTargets still duplicates the target.
A live run sends the same request to AWS.

moto runs nothing behind a proxy's endpoint, so `serve_proxies` has the sandbox's TLS
front-end (runbook.sandbox.tls) answer for it, as it does for the cluster's endpoints:
a function that logs in through the proxy verifies the proxy's certificate and sends a
token signed for the proxy's endpoint, as on AWS.
"""

from __future__ import annotations

SIMULATED = ("RDS Proxy: moto keeps the proxy's record, available at once, and its "
             "targets AVAILABLE at once; no proxy runs behind its endpoint. moto 5.2.5 "
             "fails a CreateDBProxy without Auth and drops DefaultAuthScheme, so the "
             "sandbox takes end-to-end IAM's request (DefaultAuthScheme=IAM_AUTH, no Auth) "
             "and keeps the scheme (runbook.sandbox.rds_proxy)")
SIMULATED_ENDPOINT = (
    "RDS Proxy endpoint: the TLS front-end answers for each proxy's endpoint as "
    "DescribeDBProxies gives it (moto's form <name>.db-proxy-<id>..., not AWS's "
    "<name>.proxy-<id>...), on the engine's default port, with a certificate from the "
    "sandbox CA; it requires TLS and a token signed for that endpoint, and logs in to the "
    "database of the proxy's registered cluster (none registered: every login refused). "
    "Not emulated: connection pooling and pinning, the proxy's own IAM login to the "
    "cluster (the front-end logs in to PostgreSQL as the user directly), and the proxy "
    "role's and the function roles' IAM policies (moto evaluates no IAM; runbook's "
    "read-back checks them)")

# DescribeDBProxies gives no port: a proxy listens on its engine family's default port.
ENGINE_PORTS = {"POSTGRESQL": 5432, "MYSQL": 3306, "SQLSERVER": 1433}


def install() -> bool:
    """Patch the in-process moto's CreateDBProxy; False if it was patched already."""
    from moto.rds.responses import RDSResponse

    original = RDSResponse.create_db_proxy
    if getattr(original, "runbook_sandbox", False):
        return False

    def create_db_proxy(self):
        self.params.setdefault("Auth", [])
        result = original(self)
        scheme = self.params.get("DefaultAuthScheme")
        if scheme:
            proxy = self.backend.db_proxies[self.params["DBProxyName"]]
            proxy.default_auth_scheme = scheme
        return result

    create_db_proxy.runbook_sandbox = True
    RDSResponse.create_db_proxy = create_db_proxy
    return True


def serve_proxies(tls, rds, region: str, clusters: list[dict]) -> None:
    """Have the TLS front-end `tls` answer for every RDS Proxy of the account `rds` (a
    client) reads, as the proxy would: its endpoint name, and tokens signed for it; the
    database of the cluster registered with its default target group (among `clusters`,
    DescribeDBClusters' records). A proxy with no usable target is served too, so that
    its certificate still verifies, but every login there is refused with the reason.

    The endpoint is the one DescribeDBProxies returns, never one runbook derives: on
    AWS it is <name>.proxy-<id>.<region>.rds.amazonaws.com, and moto 5.2.5 returns
    <name>.db-proxy-<id>...; what a function is configured with comes from the same
    record, so it reaches the front-end either way.
    """
    by_id = {c["DBClusterIdentifier"]: c for c in clusters}
    pages = rds.get_paginator("describe_db_proxies").paginate()
    for proxy in (p for page in pages for p in page["DBProxies"]):
        if not proxy.get("Endpoint"):
            continue
        port = ENGINE_PORTS.get(proxy.get("EngineFamily"), 5432)
        cluster, unavailable = _target(rds, proxy, by_id)
        tls.serve([proxy["Endpoint"]], port=port, region=region,
                  database=(cluster or {}).get("DatabaseName") or "postgres",
                  unavailable=unavailable)


def _target(rds, proxy: dict, by_id: dict) -> tuple[dict | None, str | None]:
    """The cluster behind `proxy`'s default target group, or why there is none."""
    from runbook.resources.rds_proxy import (AVAILABLE, CLUSTER_TARGET, DEFAULT_TARGET_GROUP,
                                             health_text, target_name)

    name = proxy["DBProxyName"]
    if proxy.get("Status") != "available":
        return None, f"RDS Proxy {name} is {proxy.get('Status')}, not available"
    try:
        targets = rds.describe_db_proxy_targets(
            DBProxyName=name, TargetGroupName=DEFAULT_TARGET_GROUP).get("Targets") or []
    except rds.exceptions.DBProxyNotFoundFault:
        return None, f"RDS Proxy {name} was deleted"
    ids = sorted({t.get("RdsResourceId") for t in targets if t.get("Type") == CLUSTER_TARGET})
    if not ids:
        return None, (f"RDS Proxy {name} has no cluster registered with its "
                      f"{DEFAULT_TARGET_GROUP} target group, so it has no database to "
                      "connect to (run step db-proxy)")
    if len(ids) > 1:
        return None, f"RDS Proxy {name}'s target group lists clusters {', '.join(ids)}"
    cluster = by_id.get(ids[0])
    if cluster is None:
        return None, f"RDS Proxy {name}'s target cluster {ids[0]} does not exist"
    down = [f"{target_name(t)} is {health_text(t)}" for t in targets
            if t.get("TargetHealth") and t["TargetHealth"].get("State") != AVAILABLE]
    if down:
        return None, f"RDS Proxy {name}'s target {'; '.join(down)}"
    return cluster, None
