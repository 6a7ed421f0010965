"""The Lambda functions runbook deploys: one entry each, and everything else reads it.

An entry says where the handler is (lambdas/<key>/handler.py), which section of the
environment file sizes it (lambdas.<key>), which step deploys it and when, who calls it
(a Cognito trigger, an event source mapping, or runbook itself) and how it logs in to the database. The
environment file's `lambdas` section, `runbook invoke` and its help, the steps' function
specs (runbook.functions.deploy.function_spec) and the packager all come from here, so
that adding a function is one entry here plus its handler folder.

Plain data: importing it loads neither boto3 nor pydantic, so `runbook --help` stays
instant and the config can derive its fields from it.
"""

from __future__ import annotations

from dataclasses import dataclass

# How a function logs in to the database.
NO_DATABASE = "none"
# By IAM as the database role declared for it (database.roles, `trigger: <slug>`), with
# only that role's column grants; without such a role, with the DB secret.
TRIGGER_ROLE = "trigger role"
# As the master user: by IAM with `database.auth: iam`, else with the DB secret.
MASTER_USER = "master user"

COGNITO = "cognito-idp.amazonaws.com"
# An event source mapping that polls an SQS queue and invokes the function with batches.
SQS = "sqs"
# An event source mapping that polls an Amazon MSK topic in a consumer group and invokes
# the function with batches of records (AWS-FACTS C).
MSK = "msk"
# The tag that names the registry entry (lambdas/<key>) a deployed function is built from.
FUNCTION_TAG = "runbook:function"


@dataclass(frozen=True)
class Function:
    key: str                        # lambdas/<key>/handler.py; lambdas.<key> in the file
    step: str                       # the step that deploys it
    trigger: str | None = None      # the Cognito trigger it is (LambdaConfig key), or None:
                                    # only runbook invokes it, and it has no resource policy
    # The event source mapping that invokes it (SQS, MSK), or None. Lambda's poller calls it
    # with its execution role: it has no resource policy either.
    event_source: str | None = None
    login: str = NO_DATABASE
    in_vpc: bool = False            # in vpc-integrate's subnets, with its Lambda group
    layer: bool = False             # uses the dependency layer (psycopg, the RDS CA bundle)
    # (memory_mb, timeout_s) when the environment file leaves lambdas.<key> out; None: the
    # file must give them.
    defaults: tuple[int, int] | None = None
    # Deployed only when the environment file has this setting: (field, value).
    only_with: tuple[str, str] | None = None

    @property
    def folder(self) -> str:
        return f"lambdas/{self.key}"

    @property
    def section(self) -> str:
        """Its sizes in the environment file: lambdas.<key>."""
        return f"lambdas.{self.key}"

    @property
    def slug(self) -> str:
        """The key as AWS names and `trigger:` values spell it: post-confirmation."""
        return self.key.replace("_", "-")

    @property
    def statement_id(self) -> str | None:
        """The Sid of the permission that lets Cognito invoke a trigger."""
        return f"runbook-cognito-{self.slug}" if self.trigger else None

    @property
    def caller(self) -> str:
        """Who invokes it, in a few words."""
        if self.trigger:
            return f"Cognito {self.trigger} trigger (step {self.step})"
        if self.event_source == SQS:
            return f"SQS event source mapping (step {self.step})"
        if self.event_source == MSK:
            return f"MSK event source mapping (step {self.step})"
        when = f" with {self.only_with[0]}: {self.only_with[1]}" if self.only_with else ""
        return f"run by step {self.step}{when}"

    def deployed(self, config) -> bool:
        """Whether its step deploys it under this environment file."""
        if self.only_with is None:
            return True
        field, value = self.only_with
        return setting(config, field) == value

    def iam_user(self, config, master_username: str) -> str | None:
        """The database user it logs in as by IAM, or None: it reads the DB secret (or,
        with login NO_DATABASE, uses no database)."""
        if self.login == TRIGGER_ROLE:
            return next((name for name, role in config.database.roles.items()
                         if role.trigger == self.slug), None)
        if self.login == MASTER_USER and config.database.auth == "iam":
            return master_username
        return None


FUNCTIONS: dict[str, Function] = {
    entry.key: entry
    for entry in (
        Function("pre_signup", "cognito", trigger="PreSignUp"),
        Function("post_confirmation", "deploy-post-confirmation", trigger="PostConfirmation",
                 login=TRIGGER_ROLE, in_vpc=True, layer=True),
        Function("db_migrate", "fix-tables", login=MASTER_USER, in_vpc=True, layer=True,
                 defaults=(256, 300), only_with=("database.connect", "lambda")),
        # The queue's visibility timeout is 6x its timeout (AWS-FACTS A): 30 s -> 180 s.
        Function("process_user_signup", "deploy-process-user-signup", event_source=SQS,
                 login=TRIGGER_ROLE, in_vpc=True, layer=True, defaults=(256, 30)),
        # Not in the VPC: it only writes DynamoDB. Its mapping's pollers reach the cluster
        # in the cluster's subnets with the cluster's security group, not the function.
        Function("legacy_loader", "deploy-legacy-loader", event_source=MSK,
                 defaults=(256, 60)),
        # Not in the VPC: it only reads the hash table. The layer brings passlib (libpass),
        # bcrypt and argon2. Cognito waits 5 s for a trigger, so a longer timeout buys
        # nothing; 1024 MB is about 0.6 of a vCPU, on which a cost-10 bcrypt check takes
        # about a tenth of a second (bench/user_migration.py).
        Function("user_migration", "deploy-user-migration", trigger="UserMigration",
                 layer=True, defaults=(1024, 5)),
    )
}

PRE_SIGNUP = FUNCTIONS["pre_signup"]
POST_CONFIRMATION = FUNCTIONS["post_confirmation"]
DB_MIGRATE = FUNCTIONS["db_migrate"]
PROCESS_USER_SIGNUP = FUNCTIONS["process_user_signup"]
LEGACY_LOADER = FUNCTIONS["legacy_loader"]
USER_MIGRATION = FUNCTIONS["user_migration"]


def through_proxy(config) -> bool:
    """Whether the functions with a role of their own log in through the RDS Proxy: the
    environment file has step db-proxy. They then sign their token for the proxy's
    endpoint and may connect as their user through the proxy's prx- id only."""
    return "db-proxy" in config.all_steps()


def find(name: str) -> Function | None:
    """The entry `name` means: its key, or the key with dashes (post-confirmation)."""
    return FUNCTIONS.get(name.replace("-", "_"))


def trigger_roles() -> tuple[str, ...]:
    """The values `database.roles.<name>.trigger` may take: the functions that log in as
    a role of their own (Cognito triggers, and the SQS consumer)."""
    return tuple(f.slug for f in FUNCTIONS.values() if f.login == TRIGGER_ROLE)


def setting(config, field: str):
    """The value of a dotted environment-file field: setting(config, "database.connect")."""
    value = config
    for part in field.split("."):
        value = getattr(value, part)
    return value


def invoke_help() -> str:
    """`runbook invoke`'s help, with the functions and who invokes each."""
    width = max(len(key) for key in FUNCTIONS)
    listed = "\n".join(f"  {f.key:<{width}}  {f.caller}" for f in FUNCTIONS.values())
    return (f"Invoke FUNCTION ({', '.join(FUNCTIONS)}) with an event.\n\n"
            "With --dry-run the handler runs locally, as Lambda would run it, against a "
            "sandbox where the steps up to its deployment have run; its log lines are "
            "printed.\n\n\b\nFUNCTION is one of\n" + listed)
