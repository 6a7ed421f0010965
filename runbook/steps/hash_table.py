"""Step `hash-table` (phase a5, built but in no phase of the shipped files yet): the
DynamoDB table the legacy users' password hashes are staged in, for Cognito's
UserMigration trigger to log them in without a password reset.

The step converges, in order:
- a customer-managed symmetric KMS key, alias/<legacy.hash_table>, rotation on, with
  runbook's key policy (`key_policy`, read back on every run; runbook.resources.kms_key);
- the table (legacy.hash_table): partition key `email`, a string (the loader stores it
  lower-case), on-demand, encrypted with that key and no other, point-in-time recovery
  on, deletion protection as legacy.deletion_protection says
  (runbook.resources.dynamodb_table).

Why a key of its own, not DynamoDB's default AWS owned key: point-in-time recovery
keeps every hash for 35 days, and a deleted table's backups outlive it. Scheduling this
key's deletion once the migration is over makes every copy unreadable at once (crypto-
shredding), which deleting the table cannot. And every decrypt is a KMS call that
CloudTrail logs and that the key policy and IAM must allow: a second, auditable gate
on who can read the hashes, beyond dynamodb:GetItem.

The key policy makes that gate real. KMS's default policy lets any principal of the
account whose IAM policy allows kms:Decrypt decrypt with the key directly. runbook's
lets the account's principals use the key only through DynamoDB in this region
(kms:ViaService) and administer it, never encrypt or decrypt with it themselves: a hash
leaves the table only through a DynamoDB read that IAM allowed on this table.

Both carry runbook's tags; one tagged for another environment is refused, untagged ones
(made by hand) are adopted and tagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step
from runbook.resources.base import Inventory
from runbook.resources.dynamodb_table import DynamoTable, TableFound, TableSpec, table_arn
from runbook.resources.kms_key import KeyFound, KeySpec, KmsKey

STEP_NAME = "hash-table"
FIELD = "legacy.hash_table"            # every name derives from it
PARTITION_KEY = "email"
KEY, TABLE = KmsKey(), DynamoTable()
# The Sid of the statement a function's role needs to use the table (decrypt_statement).
DECRYPT_SID = "DecryptTableKey"

# What the account may do to the key itself: everything runbook's key needs over its
# life (alias, rotation, tags, policy, describe) and an operator's safe way out (disable,
# schedule or cancel deletion, revoke a grant). No kms:Encrypt, Decrypt, ReEncrypt,
# GenerateDataKey or CreateGrant outside DynamoDB; no DisableKeyRotation.
KEY_ADMINISTRATION = (
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey",
    "kms:DisableKey", "kms:EnableKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus", "kms:ListGrants", "kms:ListResourceTags", "kms:PutKeyPolicy",
    "kms:RevokeGrant", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource",
    "kms:UpdateKeyDescription",
)
# What DynamoDB does with the key for a caller (AWS's own aws/dynamodb key policy, its
# GenerateDataKey* and ReEncrypt* spelled out): the table's data keys, and the grant
# DynamoDB makes for the table when it is created.
USE_THROUGH_DYNAMODB = (
    "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
)


def key_policy(account: str, region: str) -> dict:
    """The hash table key's policy. Its principal is the account (arn:...:root): who in
    the account may do each thing is still up to their IAM policies; the key policy is
    the ceiling. Keeping the account as key administrator is what KMS requires to keep
    a key manageable (PutKeyPolicy's lockout check). In a key policy the resource "*" is
    the key itself: AWS requires that spelling, a key policy names no other resource."""
    root = {"AWS": f"arn:aws:iam::{account}:root"}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": root,
             "Action": list(KEY_ADMINISTRATION), "Resource": "*"},
            {"Sid": "UseThroughDynamoDB", "Effect": "Allow", "Principal": root,
             "Action": list(USE_THROUGH_DYNAMODB), "Resource": "*",
             "Condition": {"StringEquals": {
                 "kms:ViaService": f"dynamodb.{region}.amazonaws.com",
                 "kms:CallerAccount": account}}},
        ],
    }


def decrypt_statement(key_arn, region: str) -> dict:
    """The statement a function that reads or writes the table's items needs for its key:
    kms:Decrypt on that key, only through DynamoDB (kms:ViaService). DynamoDB decrypts the
    table key with KMS on behalf of the principal accessing the table (AWS KMS developer
    guide, "How Amazon DynamoDB uses AWS KMS"). No GenerateDataKey, Encrypt or
    CreateGrant: DynamoDB made the table key and its grant when the table was created."""
    return {"Sid": DECRYPT_SID, "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}}}


@dataclass
class HashTableState(Inventory):
    """found: "key", "table". `account` names the table's ARN before it exists (None
    when read only for outputs)."""

    account: str | None = None


@dataclass(frozen=True)
class HashTableOutputs(Outputs):
    table_name: str
    table_arn: Any
    partition_key: str
    key_arn: Any
    key_alias: str


class HashTableStep(Step):
    name = STEP_NAME

    # -- what the step wants -------------------------------------------------------------

    @property
    def table_name(self) -> str:
        return self.config.legacy.hash_table

    @property
    def alias(self) -> str:
        return f"alias/{self.table_name}"

    def tags(self) -> dict:
        return naming.tags(self.config, STEP_NAME, self.table_name)

    def key_spec(self, account: str | None = None) -> KeySpec:
        """The key; its policy once the account is known (a find needs none)."""
        return KeySpec(self.alias, self.tags(), FIELD,
                       description=f"Encrypts DynamoDB table {self.table_name}, the legacy "
                                   "users' password hashes, and its backups (managed by "
                                   "runbook)",
                       policy=key_policy(account, self.ctx.aws.region) if account else None)

    def table_spec(self, state: HashTableState) -> TableSpec:
        return TableSpec(self.table_name, self.tags(), FIELD, partition_key=PARTITION_KEY,
                         kms_key_arn=state.ref("key", "id"),
                         deletion_protection=self.config.legacy.deletion_protection)

    # -- read ----------------------------------------------------------------------------

    def read(self) -> HashTableState:
        key = KEY.find(self.api, self.key_spec())
        table = TABLE.find(self.api, self.table_spec(HashTableState()))
        account = None if self.ctx.outputs_only else self.api.account()
        return self.state(account, key=key, table=table)

    def state(self, account: str | None, *, key: KeyFound | None = None,
              table: TableFound | None = None) -> HashTableState:
        """What was read, keyed for the plan: pure, so that plans are tested from data.
        What another environment owns is refused here."""
        state = HashTableState(account=account)
        if key is not None:
            KEY.claim(self.key_spec(), key)
            state.found["key"] = key
        if table is not None:
            TABLE.claim(self.table_spec(state), table)
            state.found["table"] = table
        return state

    # -- plan ----------------------------------------------------------------------------

    def plan(self, state: HashTableState) -> list[Change]:
        return (KEY.plan(self.key_spec(state.account), state.found.get("key"), "key")
                + TABLE.plan(self.table_spec(state), state.found.get("table"), "table"))

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, state: HashTableState) -> HashTableOutputs:
        table = state.found.get("table")
        if table is not None:
            arn = table.id
        elif state.account is not None:
            arn = table_arn(self.ctx.aws.region, state.account, self.table_name)
        else:
            arn = UNKNOWN
        return HashTableOutputs(table_name=self.table_name, table_arn=arn,
                                partition_key=PARTITION_KEY,
                                key_arn=state.ref("key", "id"), key_alias=self.alias)


STEP = HashTableStep
