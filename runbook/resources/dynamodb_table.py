"""A DynamoDB table with one string partition key, on-demand billing, point-in-time
recovery, deletion protection as the environment file says, and encryption at rest
with one customer-managed KMS key (phase a5: the legacy users' hash table).

Found by name (DescribeTable), with its point-in-time recovery (DescribeContinuousBackups)
and tags (ListTagsOfResource). What can change in place is an update, each setting its
own call, in this order: deletion protection, billing mode, the KMS key (UpdateTable
SSESpecification), point-in-time recovery (UpdateContinuousBackups, which CreateTable
does not take). A billing or key change puts the table in UPDATING, and UpdateTable on
a table not ACTIVE fails with ResourceInUseException, so each waits for ACTIVE first.
The key schema cannot change: a table keyed otherwise is a PlanError.

PITR is read back after it is turned on: AWS answers ContinuousBackupsUnavailable for a
short while after CreateTable (retried), and an answer that says ENABLED is what the
plan promised.

moto 5.2.5: accepts CreateTable with a KMSMasterKeyId no key has (AWS: ValidationException),
stores an alias given as KMSMasterKeyId as it was sent (AWS resolves it to the key's
ARN), and ignores UpdateTable's SSESpecification (the table keeps its first key). runbook
therefore always sends the key's ARN, and compares what DescribeTable says with it.

Teardown turns deletion protection off (UpdateTable) before DeleteTable, which AWS
refuses on a protected table. What AWS keeps of a deleted table (its backups) stays
encrypted with the table's key, whose scheduled deletion makes it unreadable
(runbook.resources.kms_key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, retry
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import diff_field
from runbook.errors import PlanError, StepFailed
from runbook.resources.base import DeleteOptions, Found, Resource, Spec

ON_DEMAND = "PAY_PER_REQUEST"
ACTIVE, DELETING = "ACTIVE", "DELETING"
AWS_OWNED = "AWS owned key"          # no SSEDescription: DynamoDB's default encryption

# 1 + 2 + 4 + 8 + 15 * 40 = about 10 minutes: a billing-mode or key change on a large
# table takes minutes; a new on-demand table is ACTIVE within seconds.
ACTIVE_WAIT = retry.Policy("dynamodb table active", attempts=45, first_delay_s=1,
                           max_delay_s=15)
# 1 + 2 + 4 + 8 + 10 = 25 s: PITR cannot be turned on in the first seconds of a table.
PITR_UNAVAILABLE = retry.Policy("dynamodb continuous backups unavailable", attempts=6,
                                first_delay_s=1, max_delay_s=10)


def table_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:dynamodb:{region}:{account}:table/{name}"


def table_name(arn: str) -> str:
    """The name in a table's ARN (arn:aws:dynamodb:<region>:<account>:table/<name>)."""
    return arn.split(":table/", 1)[-1]


def is_backups_unavailable(exc: BaseException) -> bool:
    return retry.error_code(exc) == "ContinuousBackupsUnavailableException"


@dataclass(frozen=True)
class TableSpec(Spec):
    partition_key: str = "email"          # a string (S), the only key
    kms_key_arn: Any = ""                 # the key's ARN, or an Unknown until it exists
    deletion_protection: bool = True
    point_in_time_recovery: bool = True
    billing_mode: str = ON_DEMAND


@dataclass
class TableFound(Found):
    """`id` is the table's ARN. `key_schema`: [[attribute, KeyType, attribute type]]."""

    status: str = ACTIVE
    key_schema: list = field(default_factory=list)
    billing_mode: str = ON_DEMAND
    deletion_protection: bool = False
    kms_key_arn: str | None = None        # None: an AWS owned key (no SSEDescription)
    sse_type: str | None = None           # KMS, or None for the AWS owned key
    point_in_time_recovery: bool = False


class DynamoTable(Resource[TableSpec, TableFound]):
    kind, service, plural = "dynamodb:table", "dynamodb", "tables"
    label_id = False
    ops = {"create": "create_table", "update": "update_table", "tag": "tag_resource"}

    # -- read ------------------------------------------------------------------------

    def find(self, api: Api, spec: TableSpec) -> TableFound | None:
        found = self.read(api, spec.name)
        if found is not None:
            self.claim(spec, found)
        return found

    @staticmethod
    def read(api: Api, name: str) -> TableFound | None:
        dynamodb = api.client("dynamodb")
        table = or_none(lambda: dynamodb.describe_table(TableName=name))
        if table is None:
            return None
        table = table["Table"]
        backups = dynamodb.describe_continuous_backups(TableName=name)
        tags = naming.from_aws(pages(dynamodb, "list_tags_of_resource", "Tags",
                                     ResourceArn=table["TableArn"]))
        return parse(table, backups["ContinuousBackupsDescription"], tags)

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[TableFound]:
        """ListTables gives names only: each table's tags are read by its ARN, and the
        environment's tables are then read as `find` reads them."""
        dynamodb = api.client("dynamodb")
        out = []
        for name in pages(dynamodb, "list_tables", "TableNames"):
            arn = table_arn(api.region, api.account(), name)
            tags = or_none(lambda: pages(dynamodb, "list_tags_of_resource", "Tags",
                                         ResourceArn=arn))
            if naming.from_aws(tags).get(naming.ENV_TAG) != env:
                continue
            found = self.read(api, name)
            if found is not None:
                out.append(found)
        return out

    def delete(self, api: Api, found: TableFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Deletion protection off first, then DeleteTable. One gone or DELETING is done.
        A table still CREATING or UPDATING refuses both (ResourceInUseException): that
        error stands, and the next destroy finishes the job."""
        dynamodb = api.client("dynamodb")
        name = table_name(found.id)
        table = or_none(lambda: dynamodb.describe_table(TableName=name))
        if table is None or table["Table"].get("TableStatus") == DELETING:
            return
        if table["Table"].get("DeletionProtectionEnabled"):
            dynamodb.update_table(TableName=name, DeletionProtectionEnabled=False)
        or_none(lambda: dynamodb.delete_table(TableName=name))

    def gone(self, api: Api, found: TableFound) -> bool:
        return or_none(lambda: api.client("dynamodb").describe_table(
            TableName=table_name(found.id))) is None

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: TableSpec) -> dict:
        return {"partition_key": f"{spec.partition_key} (S)", "billing_mode": spec.billing_mode,
                "kms_key": spec.kms_key_arn, "point_in_time_recovery":
                spec.point_in_time_recovery, "deletion_protection": spec.deletion_protection}

    def check(self, spec: TableSpec, found: TableFound) -> None:
        wanted = [[spec.partition_key, "HASH", "S"]]
        if [list(k) for k in found.key_schema] != wanted:
            shown = ", ".join(f"{a} ({t}, {k})" for a, k, t in found.key_schema)
            raise PlanError(spec.step, self.label(spec),
                            f"its key is {shown or 'unknown'}; runbook keeps one item per "
                            f"user keyed by {spec.partition_key} alone, a string. A table's "
                            f"key cannot change: set {spec.field} to another name (and move "
                            "or delete this table).")

    def diff(self, spec: TableSpec, found: TableFound) -> dict:
        diff: dict = {}
        diff_field(diff, "deletion_protection", found.deletion_protection,
                   spec.deletion_protection)
        diff_field(diff, "billing_mode", found.billing_mode, spec.billing_mode)
        current = found.kms_key_arn if found.sse_type == "KMS" else AWS_OWNED
        diff_field(diff, "kms_key", current, spec.kms_key_arn)
        diff_field(diff, "point_in_time_recovery", found.point_in_time_recovery,
                   spec.point_in_time_recovery)
        return diff

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: TableSpec) -> TableFound:
        dynamodb = api.client("dynamodb")
        try:
            table = dynamodb.create_table(
                TableName=spec.name,
                AttributeDefinitions=[{"AttributeName": spec.partition_key,
                                       "AttributeType": "S"}],
                KeySchema=[{"AttributeName": spec.partition_key, "KeyType": "HASH"}],
                BillingMode=spec.billing_mode, SSESpecification=sse(spec),
                DeletionProtectionEnabled=spec.deletion_protection,
                Tags=naming.as_aws(spec.tags))["TableDescription"]
        except dynamodb.exceptions.ResourceInUseException:
            # The answer to an earlier attempt was lost, or a concurrent run made it: what
            # exists is converged only if it is this environment's.
            found = self.find(api, spec)
            if found is None:
                raise StepFailed(spec.step, self.label(spec), "AWS said it exists, and "
                                 "then that it does not: run again") from None
            self.check(spec, found)
            return self.update(api, spec, found, self.diff(spec, found),
                               naming.missing_tags(spec.tags, found.tags))
        found = parse(table, {}, dict(spec.tags))
        if spec.point_in_time_recovery:
            self._wait_active(api, spec)
            found.point_in_time_recovery = self._enable_pitr(api, spec)
        return found

    def update(self, api: Api, spec: TableSpec, found: TableFound, diff: dict,
               tags: dict) -> TableFound:
        dynamodb = api.client("dynamodb")
        if tags:
            self.tag(api, found, tags)
        if "deletion_protection" in diff:
            self._wait_active(api, spec)
            dynamodb.update_table(TableName=spec.name,
                                  DeletionProtectionEnabled=spec.deletion_protection)
            found.deletion_protection = spec.deletion_protection
        if "billing_mode" in diff:
            self._wait_active(api, spec)
            dynamodb.update_table(TableName=spec.name, BillingMode=spec.billing_mode)
            found.billing_mode = spec.billing_mode
        if "kms_key" in diff:
            self._wait_active(api, spec)
            dynamodb.update_table(TableName=spec.name, SSESpecification=sse(spec))
            found.kms_key_arn, found.sse_type = spec.kms_key_arn, "KMS"
        if "point_in_time_recovery" in diff:
            self._wait_active(api, spec)
            found.point_in_time_recovery = self._enable_pitr(api, spec)
        return found

    def _enable_pitr(self, api: Api, spec: TableSpec) -> bool:
        """UpdateContinuousBackups, then DescribeContinuousBackups must say ENABLED."""
        dynamodb = api.client("dynamodb")
        retry.retry(lambda: dynamodb.update_continuous_backups(
            TableName=spec.name, PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": spec.point_in_time_recovery}),
            when=is_backups_unavailable, policy=PITR_UNAVAILABLE, sleep=api.sleep)
        status = pitr_status(dynamodb.describe_continuous_backups(TableName=spec.name)
                             ["ContinuousBackupsDescription"])
        if status != spec.point_in_time_recovery:
            raise StepFailed(spec.step, self.label(spec),
                             "AWS accepted UpdateContinuousBackups, and "
                             "DescribeContinuousBackups says point-in-time recovery is "
                             f"{'on' if status else 'off'}: run again")
        return status

    def _wait_active(self, api: Api, spec: TableSpec) -> None:
        """Until DescribeTable says ACTIVE (ACTIVE_WAIT), so that the next write is taken."""
        dynamodb = api.client("dynamodb")
        delays = ACTIVE_WAIT.delays()
        while True:
            status = dynamodb.describe_table(TableName=spec.name)["Table"]["TableStatus"]
            if status == ACTIVE:
                return
            delay = next(delays, None)
            if delay is None:
                raise StepFailed(spec.step, self.label(spec),
                                 f"the table is still {status}; run again once it is ACTIVE")
            api.sleep(delay)


def sse(spec: TableSpec) -> dict:
    """Encryption at rest with the spec's key, named by its ARN (see the module docstring)."""
    return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": spec.kms_key_arn}


def pitr_status(backups: dict) -> bool:
    return ((backups.get("PointInTimeRecoveryDescription") or {})
            .get("PointInTimeRecoveryStatus") == "ENABLED")


def parse(table: dict, backups: dict, tags: dict) -> TableFound:
    """A table from DescribeTable (or CreateTable), DescribeContinuousBackups and its tags."""
    types = {a["AttributeName"]: a["AttributeType"]
             for a in table.get("AttributeDefinitions") or ()}
    schema = [[k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")]
              for k in table.get("KeySchema") or ()]
    sse_description = table.get("SSEDescription") or {}
    # A table made with provisioned capacity that never switched has no summary.
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    return TableFound(table["TableArn"], dict(tags), table.get("TableStatus", ACTIVE), schema,
                      billing, bool(table.get("DeletionProtectionEnabled")),
                      sse_description.get("KMSMasterKeyArn"),
                      sse_description.get("SSEType"), pitr_status(backups))
