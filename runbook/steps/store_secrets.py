"""Step `store-secrets`: the DB credentials secret and the app-config secret.

Generated values (the DB password, the JWT signing secret) are made once, when the
secret is first written, and never changed by a re-run. The other fields are derived
from the config and the database step; the secret is rewritten only when one of those
differs. A secret scheduled for deletion is restored, never re-created (AWS refuses a
new secret with the name of one pending deletion anyway).

The cluster's master password is set from the DB secret, so the secret is the one
place it lives. The secret carries a random, non-secret `password_id` made together
with the password, and the cluster is tagged with the id it was last set from; a
differing tag (a new password, an adopted pair, a crash between the two writes) means
the password is set again.

Secret values never leave this module: plans and reports name the fields that change
and show only the non-secret ones.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import string
from dataclasses import dataclass

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import PlanError
from runbook.aws.retry import error_code

STEP_NAME = "store-secrets"
PASSWORD_ID_TAG = "runbook:password-id"
DB_SECRET_FIELDS = ("password",)            # generated, never rewritten
APP_SECRET_FIELDS = naming.GENERATED_APP_KEYS
# RDS refuses '/', '@', '"' and spaces in a master password.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!#$%^&*()-_=+[]{}:,.?~"


@dataclass
class Secret:
    name: str
    arn: str | None = None
    deleted_on: str | None = None
    tags: dict | None = None
    value: dict | None = None          # parsed SecretString; None when absent/unreadable

    @property
    def exists(self) -> bool:
        return self.arn is not None


@dataclass
class SecretsState:
    database: dict                      # outputs of the database step
    db: Secret
    app: Secret
    cluster_password_id: str | None = None
    password_set: bool = False


@dataclass(frozen=True)
class SecretsOutputs(Outputs):
    db_secret_arn: str
    app_config_secret_arn: str


class StoreSecretsStep(Step):
    name = STEP_NAME

    # -- read ----------------------------------------------------------------------

    def read(self) -> SecretsState:
        database = self.inputs.database
        state = SecretsState(database, self._read_secret(self.config.secrets.db),
                             self._read_secret(self.config.secrets.app_config))
        if is_known(database.cluster_arn):
            cluster = self.client("rds").describe_db_clusters(
                DBClusterIdentifier=database.cluster_id)["DBClusters"][0]
            state.cluster_password_id = naming.from_aws(cluster.get("TagList")).get(PASSWORD_ID_TAG)
        return state

    def _read_secret(self, name: str) -> Secret:
        sm = self.client("secretsmanager")
        try:
            described = sm.describe_secret(SecretId=name)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException":
                return Secret(name)
            raise
        secret = Secret(name, described["ARN"], tags=naming.from_aws(described.get("Tags")))
        self.claim(f"secretsmanager:secret {name}", secret.tags,
                   "secrets.db" if name == self.config.secrets.db else "secrets.app_config")
        if described.get("DeletedDate"):
            secret.deleted_on = str(described["DeletedDate"])[:10]
            return secret  # its value cannot be read until it is restored
        secret.value = self._read_value(name)
        return secret

    def _read_value(self, name: str) -> dict:
        raw = self.client("secretsmanager").get_secret_value(SecretId=name).get("SecretString")
        try:
            value = json.loads(raw or "")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise PlanError(STEP_NAME, f"secretsmanager:secret {name}",
                            "its value is not a JSON object, so runbook cannot merge its "
                            "fields. Fix or delete the secret by hand.")
        return value

    # -- desired values ------------------------------------------------------------

    def desired_db_fields(self, database: dict) -> dict:
        return {
            "engine": "postgres",
            "host": database.endpoint,
            "port": database.port,
            "dbname": database.database,
            "username": database.master_username,
            "dbClusterIdentifier": database.cluster_id,
        }

    def desired_app_fields(self) -> dict:
        config = self.config
        return {
            "env": config.env,
            "region": self.ctx.aws.region,
            "db_secret_name": config.secrets.db,
            "db_cluster_id": config.database.cluster_id,
            "db_name": config.database.name,
            **config.secrets.app_settings,
        }

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: SecretsState) -> list[Change]:
        changes = self._plan_secret(state.db, self.desired_db_fields(state.database),
                                    DB_SECRET_FIELDS + ("password_id",), is_db=True)
        changes += self._plan_secret(state.app, self.desired_app_fields(), APP_SECRET_FIELDS,
                                     is_db=False)
        changes += self._plan_password(state)
        return changes

    def _plan_secret(self, secret: Secret, fields: dict, generated: tuple, *,
                     is_db: bool) -> list[Change]:
        label = f"secretsmanager:secret {secret.name}"
        tags = naming.tags(self.config, STEP_NAME, secret.name)
        if not secret.exists:
            return [Change("create", label, "create_secret",
                           {"name": secret.name, "tags": tags},
                           {**fields, **{key: "(generated)" for key in generated}})]
        changes = []
        if secret.deleted_on:
            changes.append(Change("update", label, "restore_secret", {"name": secret.name},
                                  {"deletion": {"from": f"scheduled ({secret.deleted_on})",
                                                "to": "restored"},
                                   "fields": "compared after the restore"
                                             + (", and the cluster password with them"
                                                if is_db else "")}))
        else:
            diff = {key: {"from": secret.value.get(key), "to": value}
                    for key, value in fields.items() if secret.value.get(key) != value}
            diff.update({key: "(generated)" for key in generated if not secret.value.get(key)})
            if diff:
                changes.append(Change("update", label, "put_value", {"name": secret.name}, diff))
        add = naming.missing_tags(tags, secret.tags or {})
        if add:
            changes.append(Change("update", label, "tag_secret", {"name": secret.name, "tags": add},
                                  {"tags": naming.tag_diff(secret.tags or {}, add)}))
        return changes

    def _plan_password(self, state: SecretsState) -> list[Change]:
        if state.db.deleted_on:
            return []  # decided by the restore, once the value can be read
        password = (state.db.value or {}).get("password")
        if password is not None and not _valid_password(password):
            raise PlanError(STEP_NAME, f"secretsmanager:secret {state.db.name}",
                            "its password is not one RDS accepts as a master password (a "
                            "string of 8-128 printable characters without / @ \" or space). "
                            "The value is not shown. Fix the secret, or delete its password "
                            "field to have runbook generate one.")
        current_id = (state.db.value or {}).get("password_id")
        if current_id and current_id == state.cluster_password_id:
            return []
        cluster = self.config.database.cluster_id
        return [Change("update", f"rds:cluster {cluster}", "set_master_password", {},
                       {"master_password": f"set from secret {self.config.secrets.db}"})]

    # -- apply ---------------------------------------------------------------------

    def _secret(self, state: SecretsState, name: str) -> tuple[Secret, dict]:
        if name == state.db.name:
            return state.db, self.desired_db_fields(state.database)
        return state.app, self.desired_app_fields()

    def apply_create_secret(self, state: SecretsState, name: str, tags: dict) -> None:
        secret, fields = self._secret(state, name)
        value = _with_generated(dict(fields), secret is state.db)
        created = self.client("secretsmanager").create_secret(
            Name=name, SecretString=json.dumps(value, sort_keys=True),
            Description=f"{self.config.env}: managed by runbook ({STEP_NAME})",
            Tags=naming.as_aws(tags))
        secret.arn, secret.value, secret.tags = created["ARN"], value, tags

    def apply_restore_secret(self, state: SecretsState, name: str) -> None:
        secret, fields = self._secret(state, name)
        self.client("secretsmanager").restore_secret(SecretId=name)
        secret.deleted_on = None
        secret.value = self._read_value(name)
        if _merged(secret.value, fields, secret is state.db) != secret.value:
            self.apply_put_value(state, name)
        if secret is state.db and secret.value["password_id"] != state.cluster_password_id:
            self.apply_set_master_password(state)

    def apply_put_value(self, state: SecretsState, name: str) -> None:
        secret, fields = self._secret(state, name)
        value = _merged(secret.value or {}, fields, secret is state.db)
        self.client("secretsmanager").put_secret_value(
            SecretId=name, SecretString=json.dumps(value, sort_keys=True))
        secret.value = value

    def apply_tag_secret(self, state: SecretsState, name: str, tags: dict) -> None:
        self.client("secretsmanager").tag_resource(SecretId=name, Tags=naming.as_aws(tags))

    def apply_set_master_password(self, state: SecretsState) -> None:
        rds = self.client("rds")
        value = state.db.value
        cluster = rds.modify_db_cluster(
            DBClusterIdentifier=state.database.cluster_id, ApplyImmediately=True,
            MasterUserPassword=value["password"])["DBCluster"]
        # Tag after the password is set: a crash in between leaves the tag stale, and
        # the next run sets the password again.
        rds.add_tags_to_resource(ResourceName=cluster["DBClusterArn"], Tags=naming.as_aws(
            {PASSWORD_ID_TAG: value["password_id"]}))
        state.cluster_password_id = value["password_id"]
        state.password_set = True

    # -- settle and outputs --------------------------------------------------------

    def settle(self, state: SecretsState) -> None:
        if not state.password_set:
            return
        # AWS briefly shows `resetting-master-credentials` after a password change.
        cluster_id = state.database.cluster_id
        self.ctx.wait_for("rds", "db_cluster_available", DBClusterIdentifier=cluster_id,
                          what=f"rds cluster {cluster_id} to take the new password",
                          timeout_s=15 * 60, interval_s=10)

    def outputs(self, state: SecretsState) -> SecretsOutputs:
        return SecretsOutputs(db_secret_arn=state.db.arn or UNKNOWN,
                              app_config_secret_arn=state.app.arn or UNKNOWN)


def _valid_password(value) -> bool:
    return (isinstance(value, str) and 8 <= len(value) <= 128
            and all(32 < ord(c) < 127 and c not in '/@"' for c in value))


def _with_generated(value: dict, is_db: bool) -> dict:
    if is_db:
        if not value.get("password"):
            value["password"] = "".join(pysecrets.choice(_PASSWORD_ALPHABET) for _ in range(40))
            value["password_id"] = "pw-" + pysecrets.token_hex(8)
        elif not value.get("password_id"):
            value["password_id"] = "pw-" + pysecrets.token_hex(8)
    else:
        for key in APP_SECRET_FIELDS:
            if not value.get(key):
                value[key] = pysecrets.token_urlsafe(48)
    return value


def _merged(current: dict, fields: dict, is_db: bool) -> dict:
    """The current value with runbook's fields set; generated ones kept or made once."""
    return _with_generated({**current, **fields}, is_db)


STEP = StoreSecretsStep
