"""How a step logs in to the cluster from where runbook runs, with the DB secret or an RDS
IAM token (`database.auth`), TLS per `database.sslmode`, verify-* against the RDS CA
bundle (runbook.database.rds_ca). In a dry run the sandbox's PostgreSQL stands in for the cluster:
an IAM login goes through its TLS front-end with a token, as live; a password login goes
to it directly. A step mixes `DatabaseAccess` in; errors name the cause and the fix
(the cluster is private: run from inside the VPC, or use `database.connect: lambda`).
"""

from __future__ import annotations

from runbook.engine import is_known
from runbook.errors import BadInput, StepFailed
from runbook.lambda_runtime import db as dbconnect

NOT_IN_VPC = ("The cluster is in private subnets, reachable only from inside the VPC: run "
              "runbook from a host in the VPC (database.connect: direct), or set "
              "database.connect: lambda to run the migrations through a function in the VPC.")


class DatabaseAccess:
    """For a Step: `database_target(database, secrets)` from the upstream outputs, then
    `connect_database(target)`."""

    def database_target(self, database: dict, secrets: dict) -> dbconnect.Target | None:
        secret_arn = secrets.db_secret_arn
        if self.ctx.dry_run and self.ctx.database_dsn:
            if is_known(secret_arn):
                self._secret_target(secret_arn)  # the same checks as a live run
            tls = getattr(self.ctx, "database_tls", None)
            if (self.config.database.auth == "iam" and tls is not None
                    and is_known(database.endpoint)):
                return self._through_front_end(database, tls)
            return dbconnect.from_dsn(self.ctx.database_dsn, "the sandbox's PostgreSQL")
        if not is_known(database.endpoint) or not is_known(secret_arn):
            return None
        if self.config.database.auth == "iam":
            try:
                return dbconnect.from_iam(database.endpoint, int(database.port),
                                          database.database, database.master_username,
                                          region=self.config.region, rds_client=self.client("rds"),
                                          sslmode=self.config.database.sslmode,
                                          sslrootcert=self._ca_bundle())
            except dbconnect.ConnectError as exc:
                raise BadInput(f"{exc}. Check database.sslmode and database.ca_bundle.") from None
        return self._secret_target(secret_arn, sslrootcert=self._ca_bundle())

    def _through_front_end(self, database: dict, tls) -> dbconnect.Target:
        """A dry run's IAM login, as a live one makes it: a token signed for the cluster's
        endpoint, sent over TLS that verifies the sandbox's front-end (runbook.sandbox.tls)
        against the sandbox CA, which stands in for the RDS bundle. The endpoint does not
        resolve here, so libpq's hostaddr reaches the front-end."""
        port = int(database.port)
        tls.serve([database.endpoint, database.reader_endpoint], port=port,
                  database=database.database, region=self.ctx.aws.region)
        sslmode = self.config.database.sslmode
        return dbconnect.from_iam(database.endpoint, port, database.database,
                                  database.master_username, region=self.ctx.aws.region,
                                  rds_client=self.client("rds"), sslmode=sslmode,
                                  sslrootcert=str(tls.ca_file) if sslmode.startswith("verify")
                                  else None, hostaddr=tls.host, hostaddr_port=tls.port)

    def _ca_bundle(self) -> str | None:
        """The RDS CA bundle's path when database.sslmode verifies the server."""
        if not self.config.database.sslmode.startswith("verify"):
            return None
        from runbook.database import rds_ca

        return str(rds_ca.for_config(self.config).path)

    def _secret_target(self, secret_arn: str, sslrootcert: str | None = None) -> dbconnect.Target:
        value = self.client("secretsmanager").get_secret_value(SecretId=secret_arn)
        try:
            return dbconnect.from_secret(value["SecretString"], f"secret {self.config.secrets.db}",
                                         sslmode=self.config.database.sslmode,
                                         sslrootcert=sslrootcert)
        except dbconnect.ConnectError as exc:
            raise BadInput(f"{exc}. Run `runbook run --step store-secrets` to rewrite it.") from None

    def connect_database(self, target: dbconnect.Target):
        try:
            return dbconnect.connect(target, timeout_s=self.config.database.connect_timeout_s,
                                     application_name=f"runbook {self.name}")
        except dbconnect.ConnectError as exc:
            if exc.kind == "unreachable":
                raise BadInput(f"{exc}. {NOT_IN_VPC}") from None
            if exc.kind == "config":
                raise BadInput(f"{exc}. Check database.name and the DB secret's dbname and "
                               "username.") from None
            hint = ""
            if exc.kind == "auth" and self.config.database.auth == "iam":
                hint = (f" With database.auth: iam, {target.user} must be granted rds_iam and "
                        "your credentials need rds-db:connect on it.")
            elif exc.kind == "auth":
                hint = (" The cluster may still be applying the master password that "
                        "store-secrets set; wait a minute and re-run. If it persists, run "
                        "`runbook run --step store-secrets`.")
            raise StepFailed(self.name, f"database {target.dbname}", f"{exc}.{hint}") from None
