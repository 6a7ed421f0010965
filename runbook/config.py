"""The environment file, loaded once into typed, validated, frozen objects.

Steps read these objects and never raw dicts. Every problem found is reported with the
field path (`network.subnets[1].cidr`) and the line in the file, all at once, so one
edit-and-retry fixes them all.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, create_model,
                      field_validator, model_validator)

from runbook import yamlfile
from runbook.errors import ConfigError
from runbook.functions import registry
from runbook.steps import CATALOGUE

NAME = r"^[a-z0-9][a-z0-9-]{0,40}$"


class _Model(BaseModel):
    # strict: a quoted "256" is not a number and an unquoted 123456789012 is not an
    # account id string. YAML already gives every value its natural type.
    # Patterns write digits as [0-9]: pydantic's \d and \w match any script's digits
    # and letters, so "١٢٣٤٥٦٧٨٩٠١٢" would pass as an account id.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Subnet(_Model):
    cidr: str
    az: str
    id: str | None = Field(default=None, pattern=r"^subnet-[0-9a-f]{8,17}$")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return _parse_cidr(value)


class PublicSubnet(_Model):
    """A subnet routed to the internet gateway, for MSK's public access (phase a5)."""

    cidr: str
    az: str

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return _parse_cidr(value)


class Network(_Model):
    name: str = Field(pattern=NAME, description="prefix of every Name tag")
    cidr: str
    vpc_id: str | None = Field(default=None, pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnets: list[Subnet] = Field(min_length=2, max_length=6)
    # Optional: none (the default, or []) means no internet gateway and no public table.
    public_subnets: list[PublicSubnet] = Field(default_factory=list, max_length=6)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        cidr = _parse_cidr(value)
        prefix = ipaddress.ip_network(cidr).prefixlen
        if not 16 <= prefix <= 28:
            raise ValueError(f"a VPC block must be between /16 and /28, not /{prefix}")
        return cidr

    @model_validator(mode="after")
    def _subnets_fit(self) -> "Network":
        vpc = ipaddress.ip_network(self.cidr)
        nets = [ipaddress.ip_network(s.cidr) for s in self.subnets]
        for index, net in enumerate(nets):
            if not net.subnet_of(vpc):
                raise _AtPath(("subnets", index, "cidr"),
                              f"{net} is not inside the VPC block {vpc}")
            for other in range(index):
                if net.overlaps(nets[other]):
                    raise _AtPath(("subnets", index, "cidr"),
                                  f"{net} overlaps subnets[{other}] ({nets[other]})")
        azs = [s.az for s in self.subnets]
        if len(set(azs)) < 2:
            raise _AtPath(("subnets",), "Aurora needs subnets in at least two availability zones")
        return self

    @model_validator(mode="after")
    def _public_subnets_fit(self) -> "Network":
        """Public subnets: inside the block, apart from the private ones and from each
        other, one per zone (MSK puts one broker subnet in each zone), at least two."""
        if not self.public_subnets:
            return self
        if len(self.public_subnets) < 2:
            raise _AtPath(("public_subnets",), "MSK needs public subnets in at least two "
                          "availability zones: list two or more, or none")
        vpc = ipaddress.ip_network(self.cidr)
        private = [ipaddress.ip_network(s.cidr) for s in self.subnets]
        nets = [ipaddress.ip_network(s.cidr) for s in self.public_subnets]
        for index, net in enumerate(nets):
            where = ("public_subnets", index, "cidr")
            if not net.subnet_of(vpc):
                raise _AtPath(where, f"{net} is not inside the VPC block {vpc}")
            for other, taken in enumerate(private):
                if net.overlaps(taken):
                    raise _AtPath(where, f"{net} overlaps subnets[{other}] ({taken})")
            for other in range(index):
                if net.overlaps(nets[other]):
                    raise _AtPath(where, f"{net} overlaps public_subnets[{other}] ({nets[other]})")
        seen: dict[str, int] = {}
        for index, subnet in enumerate(self.public_subnets):
            if subnet.az in seen:
                raise _AtPath(("public_subnets", index, "az"),
                              f"{subnet.az} is already public_subnets[{seen[subnet.az]}]'s "
                              "zone: one public subnet per availability zone")
            seen[subnet.az] = index
        return self


IDENT = r"^[a-z_][a-z0-9_]{0,62}$"
RESERVED_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "runbook")
RESERVED_ROLES = ("rds_iam", "rds_superuser", "public")


class DbRole(_Model):
    """A database role that logs in by IAM only (granted rds_iam; TLS is enforced for
    every login by the cluster's parameter group, rds.force_ssl=1).

    `write`: schemas where it may INSERT, UPDATE and DELETE (and use sequences) but not
    read, including tables created later. `trigger`: the role a Cognito trigger connects
    as; it gets exactly the column privileges that trigger's statements need.
    """

    write: list[str] = Field(default_factory=list)
    # The triggers that log in as a role of their own (runbook.functions.registry).
    trigger: Literal[registry.trigger_roles()] | None = None  # type: ignore[valid-type]

    @field_validator("write")
    @classmethod
    def _schemas(cls, value: list[str]) -> list[str]:
        for index, schema in enumerate(value):
            if not isinstance(schema, str) or not re.fullmatch(IDENT, schema):
                raise _AtPath((index,), f"{_short(schema)} is not a schema name (lower-case "
                                        "letters, digits and _)")
            if schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
                raise _AtPath((index,), f"schema {schema!r} is reserved")
            if schema in value[:index]:
                raise _AtPath((index,), f"schema {schema!r} is listed twice")
        return value


class Database(_Model):
    cluster_id: str = Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", max_length=63)
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
    # A version AWS offers for new clusters (the preflight checks DescribeDBEngineVersions).
    # 16.8 is Aurora PostgreSQL 16's long-term-support minor, offered for at least three
    # years from 2025; 15.4 (2023) no longer is.
    engine_version: str = Field(default="16.8", pattern=r"^[0-9]+(\.[0-9]+)?$")
    master_username: str = Field(default="postgres", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
    port: int = Field(default=5432, ge=1150, le=65535)
    instance_class: str = "db.serverless"
    instances: int = Field(default=1, ge=1, le=15)
    min_capacity: float = Field(default=0.5, ge=0, le=256)
    max_capacity: float = Field(default=4.0, ge=1, le=256)
    deletion_protection: bool = True
    subnet_group: str | None = None
    security_group: str | None = None
    # The custom DB cluster parameter group (rds.force_ssl=1) attached to the cluster.
    parameter_group: str | None = Field(
        default=None, max_length=255, pattern=r"^[a-zA-Z][a-zA-Z0-9]*(-[a-zA-Z0-9]+)*$")
    # Where fix-tables' tables live, how runbook logs in, and from where it connects.
    schema_: str = Field(default="public", alias="schema", pattern=IDENT)
    # The event path's users and registration_outbox, and the audit schema's
    # registrations (runbook.lambda_runtime.schemas): apart from the profiles, so that
    # a role may write them whole.
    users_schema: str = Field(default="app", pattern=IDENT)
    audit_schema: str = Field(default="audit", pattern=IDENT)
    auth: Literal["password", "iam"] = "password"
    connect: Literal["direct", "lambda"] = "direct"
    connect_timeout_s: int = Field(default=10, ge=1, le=120)
    # libpq sslmode for runbook's own connection. verify-full, the default, checks the
    # server's certificate and name against the RDS CA bundle: anything less hands the
    # master password, or a token valid 15 minutes, to whoever answers. With auth: iam,
    # below verify-full only with allow_unverified_tls (printed as a warning).
    sslmode: Literal["prefer", "require", "verify-ca", "verify-full"] = "verify-full"
    allow_unverified_tls: bool = False
    # A local copy of the RDS CA bundle (global-bundle.pem), instead of fetching it.
    ca_bundle: str | None = Field(default=None, min_length=1)
    roles: dict[str, DbRole] = Field(default_factory=dict)

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from runbook.database import rds_ca
        from runbook.errors import BadInput

        try:
            rds_ca.from_file(value, "ca_bundle")
        except BadInput as exc:
            raise ValueError(str(exc).removeprefix("ca_bundle: ")) from None
        return value

    @field_validator("schema_", "users_schema", "audit_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        if value in RESERVED_SCHEMAS or value.startswith("pg_"):
            raise ValueError(f"schema {value!r} is reserved")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: dict[str, DbRole]) -> dict[str, DbRole]:
        triggers: dict[str, str] = {}
        for name, role in value.items():
            if not re.fullmatch(IDENT, name) or name in RESERVED_ROLES or name.startswith("pg_"):
                raise _AtPath((name,), f"{_short(name)} cannot be a role name here (lower-case "
                                       "letters, digits and _; not rds_iam, public or pg_*)")
            if role.trigger and role.trigger in triggers:
                raise _AtPath((name, "trigger"), f"{role.trigger} is already the trigger of "
                                                 f"role {triggers[role.trigger]!r}")
            if role.trigger:
                triggers[role.trigger] = name
        return value

    @field_validator("min_capacity", "max_capacity", mode="before")
    @classmethod
    def _half_steps(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value  # the type check reports it
        # Not int(value * 2): it raises OverflowError for inf and for 1e308 (doubled to
        # inf), which pydantic does not turn into a field error. The range check reports
        # those; it also refuses nan, which compares false with everything.
        if math.isfinite(value) and value % 0.5:
            raise ValueError("capacity is counted in steps of 0.5 ACU")
        return float(value)

    @model_validator(mode="after")
    def _capacity_order(self) -> "Database":
        if self.min_capacity > self.max_capacity:
            raise _AtPath(("min_capacity",), f"{self.min_capacity} is above max_capacity "
                                             f"{self.max_capacity}")
        return self

    @model_validator(mode="after")
    def _iam_needs_tls(self) -> "Database":
        if self.auth == "iam" and self.sslmode == "prefer":
            raise _AtPath(("sslmode",), "IAM authentication requires TLS: use verify-full")
        if self.auth == "iam" and self.sslmode != "verify-full" and not self.allow_unverified_tls:
            weakness = ("accepts any certificate" if self.sslmode == "require"
                        else "does not check the certificate's name")
            raise _AtPath(("sslmode",), (
                f"{self.sslmode} {weakness}, and with auth: iam runbook would send an auth "
                "token, valid 15 minutes, to whoever answers. Use "
                "verify-full (the default with auth: iam), or set "
                "database.allow_unverified_tls: true to accept the risk"))
        return self

    @property
    def unverified_tls_warning(self) -> str | None:
        """What a run prints when IAM logins are allowed without verify-full."""
        if self.auth == "iam" and self.sslmode != "verify-full":
            return (f"database.allow_unverified_tls: runbook's own IAM login uses sslmode "
                    f"{self.sslmode}, which does not verify the cluster; a token it sends is "
                    "valid 15 minutes to whoever answers. The functions still verify "
                    "(verify-full).")
        return None

    @model_validator(mode="after")
    def _schemas_apart(self) -> "Database":
        seen = {self.schema_: "schema"}
        for key in ("users_schema", "audit_schema"):
            value = getattr(self, key)
            if value in seen:
                raise _AtPath((key,), f"{value!r} is database.{seen[value]} too: the profiles, "
                                      "the users and the audit rows each need a schema of "
                                      "their own, so that a role can write one whole without "
                                      "the others")
            seen[value] = key
        return self

    @property
    def schemas(self):
        from runbook.lambda_runtime.schemas import Schemas

        return Schemas(self.schema_, self.users_schema, self.audit_schema)

    @model_validator(mode="after")
    def _roles_are_not_the_master(self) -> "Database":
        if self.master_username in self.roles:
            raise _AtPath(("roles", self.master_username),
                          "the master user cannot be an IAM-only role: runbook logs in as it")
        return self

    @property
    def schema(self) -> str:
        return self.schema_

    @property
    def subnet_group_name(self) -> str:
        return self.subnet_group or f"{self.cluster_id}-subnets"

    @property
    def security_group_name(self) -> str:
        return self.security_group or f"{self.cluster_id}-db"

    @property
    def parameter_group_name(self) -> str:
        return self.parameter_group or f"{self.cluster_id}-params"


SECRET_NAME = r"^[A-Za-z0-9/_+=.@-]{1,512}$"


class Secrets(_Model):
    db: str = Field(pattern=SECRET_NAME)
    app_config: str = Field(pattern=SECRET_NAME)
    # Non-secret values written into the app-config secret next to the generated ones.
    app_settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("app_settings")
    @classmethod
    def _plain_values(cls, value: dict) -> dict:
        from runbook.aws.naming import GENERATED_APP_KEYS

        for key, item in value.items():
            # One check instead of a str|int|bool union, whose errors pydantic reports
            # once per member.
            if item is None or not isinstance(item, (str, int, bool)) or isinstance(item, float):
                raise _AtPath((key,), f"expected a string, number or true/false, got "
                                      f"{type(item).__name__} {_short(item)}")

        clash = sorted(set(value) & set(GENERATED_APP_KEYS))
        if clash:
            raise ValueError(f"{', '.join(clash)} is generated by runbook and cannot be set")
        return value


class LambdaSettings(_Model):
    memory_mb: int = Field(ge=128, le=10240)
    timeout_s: int = Field(ge=1, le=900)


FUNCTION_PREFIX = r"^[A-Za-z0-9_-]{1,40}$"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)


class _LambdasBase(_Model):
    runtime: str = Field(default="python3.11", pattern=r"^python3\.[0-9]+$")
    # Function names are <prefix>-<function>, e.g. matbakh-cognito-post-confirmation;
    # the prefix defaults to network.name.
    prefix: str | None = Field(default=None, pattern=FUNCTION_PREFIX)
    # An int checked against the list, not a Literal: a strict Literal[1, 30] still takes
    # true for 1 and 30.0 for 30, as they compare equal.
    log_retention_days: int = 30

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"{value} is not a retention CloudWatch Logs offers; one of "
                             f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
        return value

    def settings(self, key: str) -> LambdaSettings:
        """The sizes of function `key` (lambdas.<key>)."""
        return getattr(self, key)


# One LambdaSettings field per function of the registry, lambdas.<key>: required, or
# the entry's defaults. A new function's section needs no change here.
Lambdas = create_model(
    "Lambdas", __base__=_LambdasBase,
    **{key: (LambdaSettings, ... if f.defaults is None else
             LambdaSettings(memory_mb=f.defaults[0], timeout_s=f.defaults[1]))
       for key, f in registry.FUNCTIONS.items()})


DOMAIN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"


class PasswordPolicy(_Model):
    min_length: int = Field(default=12, ge=8, le=99)
    require_uppercase: bool = True
    require_lowercase: bool = True
    require_numbers: bool = True
    require_symbols: bool = True
    temporary_password_validity_days: int = Field(default=7, ge=1, le=365)


class CustomAttribute(_Model):
    type: Literal["String", "Number"] = "String"
    mutable: bool = True
    max_length: int = Field(default=256, ge=1, le=2048)


class Cognito(_Model):
    """The user pool (e-mail is the username), its app client and the Pre-SignUp rules."""

    user_pool: str = Field(pattern=r"^[\w\s+=,.@-]{1,128}$")
    client: str = Field(pattern=r"^[\w\s+=,.@-]{1,128}$")
    # Adopt a pool made before runbook by its id (otherwise found by name and tags).
    pool_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+_[0-9a-zA-Z]+$")
    deletion_protection: bool = True
    password_policy: PasswordPolicy = PasswordPolicy()
    # Custom attributes, named without the "custom:" prefix. They can be added to a
    # pool but never changed or removed, so runbook only ever adds.
    custom_attributes: dict[str, CustomAttribute] = Field(
        default_factory=lambda: {"role": CustomAttribute(max_length=32)})
    # Pre-SignUp: accept sign-ups only from these e-mail domains (empty: any domain),
    # and auto-confirm only these (empty: none; every user confirms by e-mail).
    allowed_domains: list[str] = Field(default_factory=list)
    auto_confirm_domains: list[str] = Field(default_factory=list)

    @field_validator("custom_attributes")
    @classmethod
    def _attribute_names(cls, value: dict) -> dict:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_]{1,20}", name):
                raise _AtPath((name,), f"{_short(name)} is not a custom attribute name "
                                       "(1-20 letters, digits and _, without 'custom:')")
        return value

    @field_validator("allowed_domains", "auto_confirm_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for index, domain in enumerate(value):
            if not isinstance(domain, str) or not re.fullmatch(DOMAIN, domain):
                raise _AtPath((index,), f"{_short(domain)} is not a lower-case domain name "
                                        "(example: example.com)")
        return value

    @model_validator(mode="after")
    def _auto_confirm_is_allowed(self) -> "Cognito":
        if self.allowed_domains:
            for index, domain in enumerate(self.auto_confirm_domains):
                if domain not in self.allowed_domains:
                    raise _AtPath(("auto_confirm_domains", index),
                                  f"{_short(domain)} is not in allowed_domains, so its "
                                  "sign-ups are refused before they could be confirmed")
        return self


class IntegrationTest(_Model):
    """The test user of step `integration-test`: runbook-it+<run id>@<email_domain>.

    On AWS, SignUp mails a confirmation code to the address: use a domain whose mail
    you control or discard."""

    email_domain: str = Field(default="example.com", pattern=DOMAIN)
    # How long to wait for the trigger's rows and its log lines to appear.
    row_timeout_s: int = Field(default=15, ge=1, le=300)
    log_timeout_s: int = Field(default=60, ge=1, le=600)


class Events(_Model):
    """How Lambda's poller feeds the SQS consumer (phase a4, step
    deploy-process-user-signup): messages per batch (an SQS mapping takes at most 10)
    and at most how many batches at once (ScalingConfig.MaximumConcurrency, at least 2),
    which bounds the database connections the consumer opens."""

    batch_size: int = Field(default=10, ge=1, le=10)
    max_concurrency: int = Field(default=2, ge=2, le=1000)


# A DynamoDB table's name: 3-255 letters, digits, _, . and -.
TABLE_NAME = r"^[a-zA-Z0-9_.-]{3,255}$"
# Its KMS key's alias is alias/<table name>: KMS aliases take letters, digits, /, _ and -
# (no dot), at most 256 characters with the prefix.
KMS_ALIAS_MAX = 256


class Legacy(_Model):
    """Phase a5: where the legacy users' password hashes are staged (step hash-table,
    built but in no phase of the shipped files yet). The table's KMS key is
    alias/<hash_table>. deletion_protection guards the table against DeleteTable.
    source_dsn_env and stage_timeout_s are step stage-legacy-users'."""

    hash_table: str = Field(pattern=TABLE_NAME)
    deletion_protection: bool = True
    # Step deploy-legacy-loader's MSK event source mapping: records per invocation (an
    # MSK mapping takes 1-10,000; AWS's default is 100), the Kafka consumer group it
    # reads in (default <hash_table>-loader; AWS's pattern, 1-200 characters), and its
    # provisioned pollers (see runbook.steps.deploy_legacy_loader for why provisioned).
    loader_batch_size: int = Field(default=100, ge=1, le=10000)
    loader_consumer_group: str | None = Field(default=None,
                                              pattern=r"^[a-zA-Z0-9\-/*:_+=.@]{1,200}$")
    loader_min_pollers: int = Field(default=1, ge=1, le=200)
    loader_max_pollers: int = Field(default=2, ge=1, le=2000)
    # Step stage-legacy-users: the NAME of the environment variable that holds the legacy
    # PostgreSQL's DSN (it holds a password, so never the DSN itself), and how long it
    # waits for the loader to store what it produced.
    source_dsn_env: str = "LEGACY_DATABASE_URL"
    stage_timeout_s: int = Field(default=300, ge=10, le=3600)

    @field_validator("source_dsn_env")
    @classmethod
    def _a_variable_name(cls, value: str) -> str:
        # Not a pattern: its message quotes the value, and a DSN written here by mistake
        # holds a password.
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
            raise ValueError("the name of an environment variable (capitals, digits and _, "
                             "e.g. LEGACY_DATABASE_URL) that holds the DSN; never the DSN "
                             "itself, which holds a password. The value is not shown")
        return value

    @field_validator("hash_table")
    @classmethod
    def _alias_fits(cls, value: str) -> str:
        if "." in value:
            raise ValueError(f"{_short(value)} has a dot: the table's KMS key is named "
                             f"alias/<hash_table>, and KMS aliases take no dot. Use - or _")
        if len("alias/" + value) > KMS_ALIAS_MAX:
            raise ValueError(f"{len(value)} characters: the table's KMS key is named "
                             f"alias/<hash_table>, at most {KMS_ALIAS_MAX} characters, so "
                             f"at most {KMS_ALIAS_MAX - len('alias/')}")
        return value

    @model_validator(mode="after")
    def _pollers(self) -> "Legacy":
        if self.loader_min_pollers > self.loader_max_pollers:
            raise _AtPath(("loader_min_pollers",),
                          f"{self.loader_min_pollers} is above loader_max_pollers "
                          f"({self.loader_max_pollers}): Lambda refuses MinimumPollers above "
                          "MaximumPollers")
        return self

    @property
    def consumer_group(self) -> str:
        """The loader's Kafka consumer group: loader_consumer_group, or <hash_table>-loader."""
        return self.loader_consumer_group or f"{self.hash_table}-loader"


# An MSK cluster's name: letters, digits and hyphens, at most 64 (CreateClusterV2).
MSK_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$"
# A Kafka topic's name: letters, digits, '.', '_' and '-', at most 249.
TOPIC_NAME = r"^[a-zA-Z0-9._-]{1,249}$"
# The oldest Kafka version that takes public access (MSK's public-access.md).
MSK_PUBLIC_MIN_VERSION = (2, 6, 0)
# ClientSubnets: two or three subnets, in different availability zones.
MSK_SUBNETS = (2, 3)


class Msk(_Model):
    """Phase a5, step msk-cluster: a provisioned MSK cluster in network.public_subnets
    (brokers_per_az in each), IAM client authentication, TLS only, public access on,
    and the topic the legacy users are staged on. operator_cidrs may reach the public
    IAM port 9198; the whole internet only with allow_public_anywhere: true."""

    cluster_name: str = Field(pattern=MSK_NAME)
    kafka_version: str = Field(default="3.6.0", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+(\.[a-z0-9.-]+)?$")
    # m5.large, not t3.small: t3 throttles IAM connections (AWS-FACTS, MSK limits).
    broker_type: str = Field(default="kafka.m5.large", pattern=r"^kafka\.[a-z0-9]+\.[a-z0-9]+$")
    brokers_per_az: int = Field(default=1, ge=1, le=10)
    volume_gb: int = Field(default=100, ge=1, le=16384)
    topic: str = Field(default="legacy-users", pattern=TOPIC_NAME)
    partitions: int = Field(default=3, ge=1, le=1000)
    replication: int = Field(default=2, ge=1, le=10)
    # Short: the topic carries password hashes (7 days by default).
    retention_hours: int = Field(default=168, ge=1, le=24 * 365)
    operator_cidrs: list[str] = []
    allow_public_anywhere: bool = False

    @field_validator("kafka_version")
    @classmethod
    def _public_access_version(cls, value: str) -> str:
        numbers = tuple(int(part) for part in value.split(".")[:3])
        if numbers < MSK_PUBLIC_MIN_VERSION:
            raise ValueError(f"{_short(value)}: public access needs Kafka 2.6.0 or later")
        return value

    @field_validator("operator_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for index, cidr in enumerate(value):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise _AtPath((index,), f"{_short(cidr)} is not a CIDR block with its host "
                                        "bits clear (example: 203.0.113.10/32)") from None
        return value

    @model_validator(mode="after")
    def _anywhere_is_explicit(self) -> "Msk":
        for index, cidr in enumerate(self.operator_cidrs):
            if ipaddress.ip_network(cidr).prefixlen == 0 and not self.allow_public_anywhere:
                raise _AtPath(("operator_cidrs", index),
                              f"{cidr} opens the brokers' public IAM port 9198 to the whole "
                              "internet; list the operators' addresses, or set "
                              "msk.allow_public_anywhere: true")
        return self


class Config(_Model):
    env: str = Field(pattern=NAME)
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
    account_id: str | None = Field(default=None, pattern=r"^[0-9]{12}$")
    tags: dict[str, str] = Field(default_factory=dict)
    network: Network
    database: Database
    secrets: Secrets
    lambdas: Lambdas
    cognito: Cognito | None = None
    integration_test: IntegrationTest = IntegrationTest()
    events: Events = Events()
    legacy: Legacy | None = None
    msk: Msk | None = None
    phases: dict[str, list[str]]

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(("runbook:", "aws:")):
                raise ValueError(f"tag key {_short(key)} is reserved")
        return value

    @model_validator(mode="after")
    def _azs_in_region(self) -> "Config":
        listed = [("subnets", i, s) for i, s in enumerate(self.network.subnets)]
        listed += [("public_subnets", i, s) for i, s in enumerate(self.network.public_subnets)]
        for where, index, subnet in listed:
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", subnet.az):
                raise _AtPath(("network", where, index, "az"),
                              f"{_short(subnet.az)} is not an availability zone of region "
                              f"{self.region} (expected {self.region}a, {self.region}b, …)")
        return self

    @model_validator(mode="after")
    def _phases(self) -> "Config":
        if not self.phases:
            raise _AtPath(("phases",), "at least one phase is required")
        placed: dict[str, str] = {}
        for phase, steps in self.phases.items():
            if not re.fullmatch(NAME, phase):
                raise _AtPath(("phases", phase), "a phase name is lower-case letters, "
                                                 "digits and dashes")
            if not steps:
                raise _AtPath(("phases", phase), "a phase lists at least one step")
            for index, step in enumerate(steps):
                where = ("phases", phase, index)
                if step not in CATALOGUE:
                    hint = difflib.get_close_matches(step, CATALOGUE, n=1)
                    known = f"did you mean {hint[0]!r}?" if hint else \
                        "known steps: " + ", ".join(CATALOGUE)
                    raise _AtPath(where, f"unknown step {_short(step)}; {known}")
                if step in placed:
                    raise _AtPath(where, f"step {step!r} is already in phase {placed[step]!r}")
                for needed in CATALOGUE[step].needs(self):
                    if needed not in placed:
                        raise _AtPath(where, f"step {step!r} needs {needed!r}, which must "
                                             "be listed before it")
                placed[step] = phase
        return self

    @model_validator(mode="after")
    def _cognito_when_used(self) -> "Config":
        if self.cognito is None and "cognito" in self.all_steps():
            raise _AtPath(("cognito",), "required when a phase runs step 'cognito' "
                                        "(user_pool and client names at least)")
        allowed = self.cognito.allowed_domains if self.cognito else []
        domain = self.integration_test.email_domain
        if allowed and "integration-test" in self.all_steps() and domain not in allowed:
            raise _AtPath(("integration_test", "email_domain"),
                          f"{_short(domain)} is not in cognito.allowed_domains, so Pre-SignUp "
                          "would refuse the test user")
        return self

    @model_validator(mode="after")
    def _legacy_when_used(self) -> "Config":
        for step in ("hash-table", "deploy-legacy-loader", "deploy-user-migration"):
            if self.legacy is None and step in self.all_steps():
                raise _AtPath(("legacy",), f"required when a phase runs step '{step}' "
                                           "(hash_table: the table's name, at least)")
        return self

    @model_validator(mode="after")
    def _msk_fits_the_network(self) -> "Config":
        if self.msk is None:
            if "msk-cluster" in self.all_steps():
                raise _AtPath(("msk",), "required when a phase runs step 'msk-cluster' "
                                        "(cluster_name at least)")
            return self
        subnets = self.network.public_subnets
        if not subnets and "msk-cluster" not in self.all_steps():
            return self  # not built yet: nothing to fit
        if "msk-cluster" in self.all_steps() and not self.msk.operator_cidrs:
            # Otherwise a live run builds the cluster and its public access (about an
            # hour) that nobody can reach, and fails only at the topic.
            raise _AtPath(("msk", "operator_cidrs"),
                          "list the addresses that run the producer (your own, as a /32): "
                          "the brokers' public IAM port 9198 is open to these only")
        low, high = MSK_SUBNETS
        if not low <= len(subnets) <= high:
            raise _AtPath(("network", "public_subnets"),
                          f"the MSK brokers need {low} or {high} public subnets in different "
                          f"availability zones; {len(subnets)} listed")
        brokers = self.msk.brokers_per_az * len(subnets)
        if brokers < self.msk.replication:
            raise _AtPath(("msk", "replication"),
                          f"{self.msk.replication} replicas need as many brokers; the "
                          f"cluster has {brokers} (brokers_per_az {self.msk.brokers_per_az} "
                          f"x {len(subnets)} public subnets)")
        return self

    # -- queries -------------------------------------------------------------------

    def function_name(self, function: str) -> str:
        """The Lambda function runbook deploys for `function` (e.g. post_confirmation)."""
        return f"{self.lambdas.prefix or self.network.name}-{function.replace('_', '-')}"

    def phase_of(self, step: str) -> str:
        for phase, steps in self.phases.items():
            if step in steps:
                return phase
        raise KeyError(step)

    def steps_through(self, phase: str) -> list[str]:
        """Every step of every phase up to and including `phase`, in order."""
        out: list[str] = []
        for name, steps in self.phases.items():
            out.extend(steps)
            if name == phase:
                return out
        raise KeyError(phase)

    def all_steps(self) -> list[str]:
        return [step for steps in self.phases.values() for step in steps]

    def publishes_registrations(self) -> bool:
        """Whether Post-Confirmation publishes `user.registered` (phase a4): the file
        has step event-bus. Its bus is named, and its ARN known, without that step's
        outputs, so the earlier steps that wire it (vpc-integrate's endpoint,
        deploy-post-confirmation's variable and statement) need not follow it."""
        return "event-bus" in self.all_steps()


def _parse_cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        reason = "host bits are set" if "host bits" in str(exc) else "not an IPv4 CIDR block"
        raise ValueError(f"{_short(value)} is malformed: {reason} (example: 10.0.11.0/24)") from None
    return str(net)


class _AtPath(ValueError):
    """A model validator's error about a nested field, carrying its relative path."""

    def __init__(self, path: tuple, message: str):
        self.path = path
        super().__init__(message)


def load(path: str | Path, env: str | None = None, region: str | None = None) -> Config:
    """Read and validate an environment file. Raises ConfigError listing every problem.

    `env` defaults to the file name without `.yaml`; `region` overrides the file's.
    """
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(shown, [("", "file not found. Create it (see config/prod.yaml) "
                                       "or pass --env / --config", None)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, [("", f"cannot read the file: {exc}", None)]) from None
    try:
        doc = yamlfile.parse(text)
    except yamlfile.YamlProblem as problem:
        raise ConfigError(shown, [(problem.field, problem.message, problem.line)]) from None
    if not isinstance(doc.data, dict):
        raise ConfigError(shown, [("", "the file must be a mapping of keys to values", 1)])
    data = dict(doc.data)
    problems = []
    if "env" in data:
        problems.append(("env", "unknown key: the environment's name is the file's name "
                                "(or --env)", doc.line_of(("env",))))
    data["env"] = env or path.stem
    if region:
        data["region"] = region
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, doc)
    if problems:
        raise ConfigError(shown, problems)
    return config


def _problems(exc: ValidationError, doc: yamlfile.YamlDocument) -> list[tuple[str, str, int | None]]:
    out = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _AtPath):
            loc = loc + cause.path
            message = str(cause)
        else:
            message = _message(error, loc)
        out.append((yamlfile.dotted(loc), message, doc.line_of(loc)))
    # pydantic reports one error per union member; keep the first per field.
    seen, unique = set(), []
    for item in out:
        if item[0] not in seen:
            seen.add(item[0])
            unique.append(item)
    return unique


def _message(error: dict, loc: tuple) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else \
            (f"; allowed here: {', '.join(known)}" if known else "")
        return f"unknown key{suffix}"
    if kind == "missing":
        return "required field is missing"
    if kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
        expected = {"string_type": "a string", "int_type": "a whole number",
                    "float_type": "a number", "bool_type": "true or false",
                    "dict_type": "a mapping", "model_type": "a mapping",
                    "list_type": "a list"}.get(kind, kind.removesuffix("_type"))
        got = type(value).__name__
        hint = ""
        if kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
            hint = f' (quote it: "{value}")'
        return f"expected {expected}, got {got} {_short(value)}{hint}"
    if kind == "string_pattern_mismatch":
        return f"{_short(value)} is not valid here (must match {error['ctx']['pattern']})"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{error['msg']} (got {_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys(loc: tuple) -> list[str]:
    """Field names of the model found at `loc`, for 'did you mean' hints."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
    return sorted(model.model_fields) if model is not None and hasattr(model, "model_fields") else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
