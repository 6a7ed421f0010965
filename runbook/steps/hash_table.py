"""Step `hash-table` (phase a5, built but in no phase of the shipped files yet): the
DynamoDB table the legacy users' password hashes are staged in, for Cognito's
UserMigration trigger to log them in without a password reset.

The step converges, in order:
- a customer-managed symmetric KMS key, alias/<legacy.hash_table>, rotation on, KMS's
  default key policy (runbook.resources.kms_key);
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

    def key_spec(self) -> KeySpec:
        return KeySpec(self.alias, self.tags(), FIELD,
                       description=f"Encrypts DynamoDB table {self.table_name}, the legacy "
                                   "users' password hashes, and its backups (managed by "
                                   "runbook)")

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
        return (KEY.plan(self.key_spec(), state.found.get("key"), "key")
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
