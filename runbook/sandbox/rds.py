"""The sandbox's answer to DescribeDBEngineVersions, which moto 5.2.5 does not implement.

moto answers the call with HTTP 500 ("The describe_db_engine_versions action has not been
implemented"), so without this the preflight could not check database.engine_version in
a dry run. `install` teaches the moto running in this process (the sandbox's server, or
a test's) to answer it from ENGINE_VERSIONS, in the shape AWS answers. A moto that
implements the call itself is left alone, and its answer is used instead.

ENGINE_VERSIONS is not AWS's list: it is the aurora-postgresql versions that AWS's
release calendar shows offered for new clusters on 2026-12-01 and that runbook's
environment files may name: the long-term-support minor of each major version still in
standard support. A live run always asks AWS.
"""

from __future__ import annotations

from runbook.steps.database import ENGINE

# Aurora PostgreSQL LTS minors (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraPostgreSQL.Updates.LTS.html),
# each offered for at least three years from its release. Serverless v2 range of each:
# 0-256 ACU (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-serverless-v2.setting-capacity.html).
ENGINE_VERSIONS = ("15.10", "16.8", "17.7")
SERVERLESS_V2 = {"MinCapacity": 0.0, "MaxCapacity": 256.0}

SIMULATED = (f"DescribeDBEngineVersions: moto does not implement it; the sandbox answers "
             f"{ENGINE} {', '.join(ENGINE_VERSIONS)} (runbook.sandbox.rds), and a live run "
             "asks AWS")


def engine_versions(engine: str | None = None, version: str | None = None) -> list[dict]:
    """DBEngineVersions items as AWS returns them, filtered as the API filters."""
    if engine not in (None, ENGINE):
        return []
    return [{"Engine": ENGINE, "EngineVersion": v,
             "DBParameterGroupFamily": f"{ENGINE}{v.split('.')[0]}",
             "DBEngineDescription": "Aurora (PostgreSQL)",
             "DBEngineVersionDescription": f"Aurora PostgreSQL (Compatible with PostgreSQL {v})",
             "ServerlessV2FeaturesSupport": dict(SERVERLESS_V2),
             "Status": "available"}
            for v in ENGINE_VERSIONS if version in (None, v)]


SIMULATED_BACKUPS = ("DeleteDBCluster: moto keeps the cluster's automated snapshots, named to "
                     "the minute, so a cluster made again under the same name within that "
                     "minute is refused; the sandbox deletes them with the cluster, as AWS "
                     "deletes a cluster's automated backups (manual and final snapshots "
                     "stay) (runbook.sandbox.rds)")


def install() -> bool:
    """Make the in-process moto answer DescribeDBEngineVersions, and delete a cluster's
    automated snapshots with it; False if it already does both."""
    from moto.core.responses import ActionResult
    from moto.rds.responses import RDSResponse

    backups = _delete_automated_backups()
    if hasattr(RDSResponse, "describe_db_engine_versions"):
        return backups

    def describe_db_engine_versions(self) -> ActionResult:
        return ActionResult({"DBEngineVersions": engine_versions(
            self.params.get("Engine"), self.params.get("EngineVersion"))})

    RDSResponse.describe_db_engine_versions = describe_db_engine_versions
    return True


def _delete_automated_backups() -> bool:
    """DeleteDBCluster deletes the cluster's automated snapshots, as on AWS."""
    from moto.rds.models import RDSBackend

    if getattr(RDSBackend.delete_db_cluster, "deletes_automated_backups", False):
        return False
    delete = RDSBackend.delete_db_cluster

    def delete_db_cluster(self, cluster_identifier, snapshot_name=None):
        cluster = delete(self, cluster_identifier, snapshot_name)
        for snapshot_id, snapshot in list(self.cluster_snapshots.items()):
            if snapshot.snapshot_type == "automated" and \
                    snapshot.cluster.db_cluster_identifier == cluster_identifier:
                del self.cluster_snapshots[snapshot_id]
        return cluster

    delete_db_cluster.deletes_automated_backups = True
    RDSBackend.delete_db_cluster = delete_db_cluster
    return True
