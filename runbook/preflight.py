"""Checks of what AWS would refuse later, made read-only before the first step.

A run creates the VPC and subnets first and the cluster ten minutes later; a Lambda
function comes after that. If AWS is going to refuse the cluster's engine version or
the functions' runtime, the operator should hear it at minute zero, from `plan` and from
the first read of `run`, not from a half-built environment. Each problem names the field
of the environment file to change and what to change it to; all of them are reported at
once, with exit code 2.

The checks are pure functions of plain data (`problems`); `check` reads that data with
read-only calls, and only for the steps about to run:

  database.engine_version   offered for new clusters in the region (DescribeDBEngineVersions);
                            an existing cluster is not refused for running an older one
  database.min/max_capacity within the engine version's Serverless v2 range; not read
                            for a cluster that runs them already (AWS took them)
  network.subnets[].az      an availability zone of the region (DescribeAvailabilityZones),
                            read while a subnet is still to be made: one that exists
                            shows its zone was the account's
  lambdas.runtime           one Lambda still accepts for new functions: named in
                            botocore's model of Lambda, and before its block-create
                            date (a dated table: no API lists deprecations)

`ownership` then plans the steps read-only, so that a resource of another environment
stops the run before its first write rather than at the step that finds it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from runbook.aws.api import Api, pages
from runbook.aws.retry import error_code
from runbook.errors import BadInput
from runbook.resources.rds import Cluster
from runbook.resources.vpc import zones
from runbook.steps.database import ENGINE
from runbook.steps.network import zones_needed

# Serverless v2 capacity AWS documents where DescribeDBEngineVersions does not say.
# botocore 1.44.8 models ServerlessV2FeaturesSupport {MinCapacity, MaxCapacity} per
# version (and no SupportsServerlessV2 flag); older botocore drops it, and moto 5.2.5 has
# no DescribeDBEngineVersions at all (runbook.sandbox.rds answers it). 0 ACU (auto-pause) on Aurora PostgreSQL 13.15,
# 14.12, 15.7, 16.3 and later, 0.5 before; at most 256 ACU (128 on older versions, which
# then report their own limit). https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-serverless-v2.setting-capacity.html
DOCUMENTED_CAPACITY = (0.0, 256.0)

# Python runtimes Lambda deprecates, with the day it stops accepting them for new
# functions ("Block function create"), from https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
# as checked on 2026-12-01 (cfn-lint 1.58's LmbdRuntimeLifecycle.json carries the same
# dates). AWS has moved these dates before: recheck them when a date comes near.
RUNTIME_BLOCK_CREATE = {
    "python2.7": dt.date(2021, 7, 15),
    "python3.6": dt.date(2022, 7, 18),
    "python3.7": dt.date(2024, 1, 9),
    "python3.8": dt.date(2027, 2, 1),
    "python3.9": dt.date(2027, 2, 1),
    "python3.10": dt.date(2027, 2, 1),
    "python3.11": dt.date(2027, 7, 31),
    "python3.12": dt.date(2028, 11, 30),
    "python3.13": dt.date(2029, 7, 31),
    "python3.14": dt.date(2029, 7, 31),
}

# The steps that create Lambda functions with lambdas.runtime.
FUNCTION_STEPS = ("cognito", "deploy-post-confirmation")


class PreflightFailed(BadInput):
    """What AWS would refuse later; nothing was changed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"preflight: AWS would refuse this environment file; nothing was "
                         f"changed. Fix:\n{lines}")


@dataclass(frozen=True)
class EngineVersion:
    """One aurora-postgresql version as DescribeDBEngineVersions lists it."""

    version: str
    # (min, max) ACU, or None when the API does not say.
    serverless_v2: tuple[float, float] | None = None


@dataclass
class Facts:
    """What the checks judge: plain data, read from AWS or written by a test."""

    region: str
    today: dt.date
    cluster_exists: bool = False
    cluster_version: str | None = None              # of the existing cluster
    offered: list[EngineVersion] | None = None       # None: not read (step not run)
    zones: set[str] | None = None                    # None: not read
    runtimes: list[str] | None = None                # None: not checked


# -- the checks (pure) ----------------------------------------------------------------

def problems(config, facts: Facts) -> list[str]:
    found: list[str] = []
    if facts.offered is not None:
        found += _engine_problems(config.database, facts)
    if facts.zones is not None:
        found += az_problems(config, facts.zones, facts.region)
    if facts.runtimes is not None:
        found += runtime_problems(config.lambdas.runtime, facts.today, facts.runtimes)
    return found


def _engine_problems(db, facts: Facts) -> list[str]:
    by_version = {v.version: v for v in facts.offered or []}
    if facts.cluster_exists:
        # An adopted cluster keeps running its version; only its capacity is checked,
        # against that version's limits where AWS still lists it.
        version = by_version.get(str(facts.cluster_version))
        return capacity_problems(db.min_capacity, db.max_capacity, version)
    version = by_version.get(db.engine_version)
    if version is None:
        return [engine_version_problem(db.engine_version, list(by_version), facts.region)]
    return capacity_problems(db.min_capacity, db.max_capacity, version)


def engine_version_problem(wanted: str, offered: list[str], region: str) -> str:
    listed = ", ".join(sort_versions(offered)) or "none"
    return (f"database.engine_version: {ENGINE} {wanted} is not offered for new clusters "
            f"in {region}. Offered there: {listed}. Set database.engine_version to one of "
            "them (a long-term-support minor stays offered longest).")


def capacity_problems(low: float, high: float, version: EngineVersion | None) -> list[str]:
    limits = version.serverless_v2 if version and version.serverless_v2 else DOCUMENTED_CAPACITY
    where = f"{ENGINE} {version.version}" if version else "Aurora Serverless v2"
    found = []
    if low < limits[0]:
        found.append(f"database.min_capacity: {low} ACU is below the {limits[0]} ACU "
                     f"{where} allows; set it to {limits[0]} or more")
    if high > limits[1]:
        found.append(f"database.max_capacity: {high} ACU is above the {limits[1]} ACU "
                     f"{where} allows; set it to {limits[1]} or less")
    return found


def az_problems(config, zones: set[str], region: str) -> list[str]:
    return [f"network.subnets[{index}].az: {subnet.az} is not an availability zone of "
            f"{region} for this account (it has {', '.join(sorted(zones)) or 'none'}); "
            "use one of those"
            for index, subnet in enumerate(config.network.subnets) if subnet.az not in zones]


def runtime_problems(runtime: str, today: dt.date, known: list[str]) -> list[str]:
    """`known`: the runtime names Lambda's API model lists (botocore's Runtime enum)."""
    usable = [r for r in known if r.startswith("python3.")
              and (r not in RUNTIME_BLOCK_CREATE or today < RUNTIME_BLOCK_CREATE[r])]
    newest = sort_versions(r.removeprefix("python") for r in usable)
    advice = f"set lambdas.runtime to python{newest[-1]}" if newest else \
        "no Python runtime is left to use"
    if runtime not in known:
        return [f"lambdas.runtime: {runtime} is not a runtime Lambda offers; {advice}"]
    blocked = RUNTIME_BLOCK_CREATE.get(runtime)
    if blocked is not None and today >= blocked:
        return [f"lambdas.runtime: Lambda stopped accepting {runtime} for new functions on "
                f"{blocked.isoformat()}; {advice}"]
    return []


def lambda_runtimes() -> list[str]:
    """Every runtime name in botocore's model of Lambda (the Runtime enum)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("lambda")
    return list(model.shape_for("Runtime").enum)


def sort_versions(versions) -> list[str]:
    def key(version: str):
        return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
    return sorted(set(versions), key=key)


# -- reading the facts (read-only) ------------------------------------------------------

def capacity_in_force(db, cluster) -> bool:
    """Whether the cluster exists and runs the file's Serverless v2 capacity already:
    then AWS accepted it, its version is not checked (an existing cluster keeps its
    own), and DescribeDBEngineVersions is not read."""
    scaling = (cluster.scaling or {}) if cluster is not None else {}
    return (scaling.get("MinCapacity") is not None
            and float(scaling["MinCapacity"]) == float(db.min_capacity)
            and float(scaling.get("MaxCapacity") or -1) == float(db.max_capacity))


def offered_versions(rds) -> list[EngineVersion]:
    """Every aurora-postgresql version DescribeDBEngineVersions lists in the client's
    region. moto 5.2.5 does not implement the call; the sandbox answers it (runbook.sandbox.rds)."""
    found = []
    for item in pages(rds, "describe_db_engine_versions", "DBEngineVersions", Engine=ENGINE):
        limits = item.get("ServerlessV2FeaturesSupport") or {}
        capacity = None
        if "MinCapacity" in limits and "MaxCapacity" in limits:
            capacity = (float(limits["MinCapacity"]), float(limits["MaxCapacity"]))
        found.append(EngineVersion(item["EngineVersion"], capacity))
    return found


def read_facts(config, aws, steps: list[str], today: dt.date) -> Facts:
    """Read inside the run's read cache: the steps read the same zones and cluster."""
    facts = Facts(region=aws.region, today=today)
    api = Api(aws)
    with api.reading():
        if ("network" in steps or "database" in steps) and zones_needed(api, config):
            facts.zones = zones(api)
        if "database" in steps:
            cluster = Cluster.named(api, config.database.cluster_id)
            facts.cluster_exists = cluster is not None
            facts.cluster_version = cluster.engine_version if cluster else None
            if not capacity_in_force(config.database, cluster):
                facts.offered = offered_versions(aws.client("rds"))
    if any(step in steps for step in FUNCTION_STEPS) or (
            "fix-tables" in steps and config.database.connect == "lambda"):
        facts.runtimes = lambda_runtimes()
    return facts


# Error codes by which AWS refuses the caller rather than the request.
_CREDENTIAL_CODES = frozenset({"AuthFailure", "UnrecognizedClientException",
                               "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
                               "SignatureDoesNotMatch"})


def _refused_credentials(code: str) -> bool:
    return "Denied" in code or "Unauthorized" in code or code in _CREDENTIAL_CODES


def ownership(config, aws, steps: list[str], *, dry_run: bool = False, **context) -> int:
    """Plan `steps` read-only before the run's first write, and raise the first
    errors.OwnedElsewhere a step's read found: a resource that carries another
    environment's tag. Returns the number of steps planned.

    Each step checks what it finds when it reads (Resource.claim), but a run writes step by
    step: a run of a1 for a copy of prod's file made a VPC and a cluster before
    store-secrets found prod's secret. Planning them all first stops it at minute zero.
    Other plan errors do not stop the run here: an earlier step may be about to fix what
    they complain of, and the step reports them itself when it runs. Steps that are not
    idempotent (the integration test) own nothing and act on every run: they are left out.
    `context` is passed to the Runner (a sandbox's database_dsn and database_tls, sleep).
    """
    from runbook.steps import new_runner
    from runbook.errors import OwnedElsewhere
    from runbook.output.progress import Progress
    from runbook.steps import CATALOGUE

    planned = [name for name in steps if CATALOGUE[name].idempotent]
    results = new_runner(config, aws, Progress(quiet=True), plan_only=True, dry_run=dry_run,
                     scope_prefix="preflight:", **context).run(planned)
    refused = next((r.exception for r in results if isinstance(r.exception, OwnedElsewhere)),
                   None)
    if refused is not None:
        raise refused
    return len(planned)


def check(config, aws, steps: list[str], *, today: dt.date | None = None) -> None:
    """Raise PreflightFailed listing every problem of `steps`; read calls only."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    try:
        facts = read_facts(config, aws, steps, today)
    except Exception as exc:  # noqa: BLE001 - an AWS answer is said plainly, others raise
        code = error_code(exc)
        if not code:
            raise
        from runbook.engine import explain
        from runbook.errors import RunbookError

        operation = getattr(exc, "operation_name", "a read")
        if not _refused_credentials(code):
            raise RunbookError(f"preflight: the read-only check {operation} failed "
                               f"({explain(exc)}). Nothing was changed; run again.") from None
        raise BadInput(f"preflight: AWS refused the read-only check {operation} "
                       f"({explain(exc)}). Nothing was changed. The credentials in use need "
                       f"permission for it (a read), or AWS_PROFILE names the wrong "
                       "profile.") from None
    found = problems(config, facts)
    if found:
        raise PreflightFailed(found)
