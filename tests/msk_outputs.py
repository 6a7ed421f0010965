"""msk-cluster's outputs as the shared plan of issue 16 names them, for the tests of the
steps that consume them while step msk-cluster is not built in this version
(runbook.steps.CATALOGUE lists it with no module). Once it is, its own Outputs class
replaces this one: the field names are the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbook.engine import Outputs

# The cluster's data plane in tests: moto's ARN is arn:aws:kafka:<region>:<account>:
# cluster/<uuid> (AWS's has the name before the uuid), so the uuid is read from its end.


@dataclass(frozen=True)
class MskClusterOutputs(Outputs):
    cluster_arn: Any
    cluster_name: str
    cluster_uuid: Any
    security_group_id: Any
    subnet_ids: tuple
    bootstrap_public: Any
    bootstrap_private: Any
    topic: str
    topic_arn: Any
    group_arn_prefix: Any


def for_cluster(cluster_arn: str, cluster_name: str, *, region: str, account: str,
                topic: str = "legacy-users", bootstrap: str = "b-1.example:9198",
                subnet_ids: tuple = ("subnet-pub-a", "subnet-pub-b"),
                security_group_id: str = "sg-msk") -> MskClusterOutputs:
    """The outputs msk-cluster would give for the cluster `cluster_arn`."""
    uuid = cluster_arn.rsplit("/", 1)[-1]
    scope = f"{cluster_name}/{uuid}"
    return MskClusterOutputs(
        cluster_arn=cluster_arn, cluster_name=cluster_name, cluster_uuid=uuid,
        security_group_id=security_group_id, subnet_ids=tuple(subnet_ids),
        bootstrap_public=bootstrap, bootstrap_private=bootstrap.replace(":9198", ":9098"),
        topic=topic, topic_arn=f"arn:aws:kafka:{region}:{account}:topic/{scope}/{topic}",
        group_arn_prefix=f"arn:aws:kafka:{region}:{account}:group/{scope}/")
