"""Step `store-secrets`: the DB credentials secret and the app-config secret.

Generated values (the DB password, the JWT signing secret) are made once, when the
secret is first written, and never changed by a re-run. The other fields are derived
from the config and the database step; the secret is rewritten only when one of those
differs. A secret scheduled for deletion is restored, never re-created (AWS refuses a
new secret with the name of one pending deletion anyway).

The cluster's master password is the DB secret's, so the secret is the one place it
lives. The secret carries a random, non-secret `password_id` made together with the
password, and the cluster is tagged with the id of the password it has. A cluster the
database step creates in the same run gets its final password and tag in
CreateDBCluster, and hands the password over (its outputs, in memory): a new secret
keeps that one. A differing tag (an adopted pair, a secret that already had a
password, a run that stopped between the cluster and the secret) means the password is
set again from the secret.

Both secrets are `runbook.resources.secret.Secret`s: found by name, refused when another
environment owns them, and written there, so that no secret value leaves that module and
this one: plans and reports name the fields that change and show only the non-secret
ones. Setting the cluster's password is this step's own change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.errors import PlanError
from runbook.resources.base import Inventory
from runbook.resources.rds import Cluster
from runbook.resources.secret import (PASSWORD, PASSWORD_ID, PASSWORD_ID_TAG, Secret,
                                      SecretFound, SecretSpec)
from runbook.steps.database import wait_available

STEP_NAME = "store-secrets"
SECRET = Secret()


@dataclass
class SecretsState(Inventory):
    """found: "db" and "app" (SecretFound, or None)."""

    database: object = None             # outputs of the database step
    cluster_password_id: str | None = None
    password_set: bool = False


@dataclass(frozen=True)
class SecretsOutputs(Outputs):
    db_secret_arn: str
    app_config_secret_arn: str


class StoreSecretsStep(Step):
    name = STEP_NAME

    # -- what the step wants ---------------------------------------------------------

    def db_spec(self, database) -> SecretSpec:
        return self._spec(self.config.secrets.db, "secrets.db", {
            "engine": "postgres",
            "host": database.endpoint,
            "port": database.port,
            "dbname": database.database,
            "username": database.master_username,
            "dbClusterIdentifier": database.cluster_id,
        }, (PASSWORD, PASSWORD_ID), password=database.master_password)

    def app_spec(self) -> SecretSpec:
        config = self.config
        return self._spec(config.secrets.app_config, "secrets.app_config", {
            "env": config.env,
            "region": self.ctx.aws.region,
            "db_secret_name": config.secrets.db,
            "db_cluster_id": config.database.cluster_id,
            "db_name": config.database.name,
            **config.secrets.app_settings,
        }, naming.GENERATED_APP_KEYS)

    def _spec(self, name: str, field: str, fields: dict, generated: tuple,
              password=None) -> SecretSpec:
        return SecretSpec(name, naming.tags(self.config, STEP_NAME, name), field,
                          fields=fields, generated=tuple(generated),
                          description=f"{self.config.env}: managed by runbook ({STEP_NAME})",
                          password=password)

    # -- read ----------------------------------------------------------------------

    def read(self) -> SecretsState:
        database = self.inputs.database
        with self.api.reading():
            db, app = SECRET.find_all(self.api, [self.db_spec(database), self.app_spec()])
            password_id = None
            if is_known(database.cluster_arn):
                cluster = Cluster.named(self.api, database.cluster_id)
                password_id = cluster.tags.get(PASSWORD_ID_TAG) if cluster else None
        return self.state(database, db, app, password_id)

    def state(self, database, db: SecretFound | None, app: SecretFound | None,
              cluster_password_id: str | None) -> SecretsState:
        """What was read, keyed for the plan: pure, so that plans are tested from data."""
        for spec, found in ((self.db_spec(database), db), (self.app_spec(), app)):
            if found is not None:
                SECRET.claim(spec, found)
        return SecretsState(found={"db": db, "app": app}, database=database,
                            cluster_password_id=cluster_password_id)

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: SecretsState) -> list[Change]:
        db = state.found.get("db")
        changes = [self._with_password(c) if c.op == "restore" else c
                   for c in SECRET.plan(self.db_spec(state.database), db, "db")]
        changes += SECRET.plan(self.app_spec(), state.found.get("app"), "app")
        return changes + self._plan_password(state)

    def _with_password(self, restore: Change) -> Change:
        """The DB secret's restore decides the cluster password too: its value, and so its
        password id, can be read only once it is restored."""
        diff = {**restore.diff, "fields": restore.diff["fields"]
                + ", and the cluster password with them"}

        def run(api, state: SecretsState, **args) -> None:
            restore.run(api, state, **args)
            if state.found["db"].value[PASSWORD_ID] != state.cluster_password_id:
                self._set_master_password(api, state)

        return replace(restore, diff=diff, run=run)

    def _plan_password(self, state: SecretsState) -> list[Change]:
        db = state.found.get("db")
        if db is not None and db.deleted_on:
            return []  # decided by the restore, once the value can be read
        value = (db.value if db is not None else None) or {}
        password = value.get(PASSWORD)
        if password is not None and not _valid_password(password):
            raise PlanError(STEP_NAME, f"secretsmanager:secret {self.config.secrets.db}",
                            "its password is not one RDS accepts as a master password (a "
                            "string of 8-128 printable characters without / @ \" or space). "
                            "The value is not shown. Fix the secret, or delete its password "
                            "field to have runbook generate one.")
        if password is None and self._keeps_new_cluster_password(state):
            return []
        current_id = value.get(PASSWORD_ID)
        if current_id and current_id == state.cluster_password_id:
            return []
        cluster = self.config.database.cluster_id
        return [Change("update", f"rds:cluster {cluster}", "set_master_password", {},
                       {"master_password": f"set from secret {self.config.secrets.db}"},
                       run=self._set_master_password)]

    @staticmethod
    def _keeps_new_cluster_password(state: SecretsState) -> bool:
        """Whether the DB secret, which has no password yet, gets the one the cluster was
        created with: in this run (the database step's outputs hand it over, and the
        cluster's tag names it), or, in a plan, by the database step that is to create
        the cluster."""
        database = state.database
        made = database.master_password
        if made is not None:
            return made.id == state.cluster_password_id
        return not is_known(database.cluster_arn)

    def _set_master_password(self, api, state: SecretsState) -> None:
        value = state.found["db"].value
        # AWS modifies only an available cluster; step database does not wait for a new one.
        wait_available(self.ctx, state.database, instances=False)
        cluster = api.client("rds").modify_db_cluster(
            DBClusterIdentifier=state.database.cluster_id, ApplyImmediately=True,
            MasterUserPassword=value[PASSWORD])["DBCluster"]
        # Tag after the password is set: a crash in between leaves the tag stale, and
        # the next run sets the password again.
        api.tag("rds", cluster["DBClusterArn"], {PASSWORD_ID_TAG: value[PASSWORD_ID]})
        state.cluster_password_id = value[PASSWORD_ID]
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
        db, app = state.found.get("db"), state.found.get("app")
        return SecretsOutputs(db_secret_arn=db.id if db else UNKNOWN,
                              app_config_secret_arn=app.id if app else UNKNOWN)


def _valid_password(value) -> bool:
    return (isinstance(value, str) and 8 <= len(value) <= 128
            and all(32 < ord(c) < 127 and c not in '/@"' for c in value))


STEP = StoreSecretsStep
