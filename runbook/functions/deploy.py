"""Deploying a Lambda function, the same way from every step that ships one.

A function is up to five resources (runbook.resources), converged in this order:

    iam:role          the execution role: a Lambda trust policy and one inline policy
                      with only what the function needs (its log group, the ENI actions
                      of a VPC function, the statements the step adds); any other policy
                      that allows something is removed (resources.iam_role)
    logs:log-group    /aws/lambda/<name>, with the configured retention
    lambda:layer      the third-party dependencies and the RDS CA bundle, published only
                      when their content hash differs from the latest version's
    lambda:function   code (compared by CodeSha256 with a deterministic local build, so
                      unchanged code is never uploaded) and configuration
    lambda:permission the resource policy statement that lets its caller (Cognito)
                      invoke it, bound to the caller's ARN and account

A step builds each function's `FunctionSpec` from its registry entry (`function_spec`,
runbook.functions.registry), mixes `FunctionsMixin` in, reads with `read_layer` and
`read_function` (I/O, then a pure assembly: `FunctionState.of`), adds `plan_layer`'s and
`plan_function`'s changes to its plan and calls `settle_functions` from `settle`. A step
whose functions are Cognito triggers adds `plan_triggers`' change too: every trigger that
differs, set in one UpdateUserPool (`AttachTrigger`) once the functions are active.

A `FunctionState` is the inventory of one function (runbook.resources.base.Inventory),
a `LayerState` that of the layer: their changes run against them, whatever the step's
own state is, and derive the resource's spec again when they run, so that what earlier
changes made (the role's ARN, the layer's) and an invoker a step bound since the plan
(the pool a step created) are used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from runbook.aws import naming
from runbook.database import rds_ca
from runbook.engine import UNKNOWN, Change, is_known
from runbook.functions import package
from runbook.errors import PlanError
from runbook.functions.registry import COGNITO, FUNCTION_TAG, NO_DATABASE, TRIGGER_ROLE
from runbook.resources import iam_role, rds_proxy
from runbook.resources.base import Apply, Inventory, resolve
from runbook.resources.iam_role import Role, RoleSpec
from runbook.resources.lambda_function import (HANDLER, REMOVED, WITHHELD, InvokePermission,
                                               LambdaFunction, LambdaSpec, PermissionSpec)
from runbook.resources.lambda_layer import LayerSpec, LayerVersion
from runbook.resources.log_group import LogGroup, LogGroupSpec

__all__ = ["ENI_ACTIONS", "FUNCTION_TAG", "HANDLER", "LAMBDA_TRUST", "REMOVED", "WITHHELD",
           "FunctionSpec", "FunctionState", "FunctionsMixin", "Invoker", "LayerState",
           "database_login", "function_spec"]

POLICY_NAME = iam_role.POLICY_NAME
LAMBDA_TRUST = iam_role.trust("lambda.amazonaws.com")
FIELD = "lambdas.prefix"      # what names a function, its role and its log group
# What a function in a VPC needs to attach its network interfaces (the EC2 actions of the
# AWSLambdaVPCAccessExecutionRole managed policy). AWS requires "Resource": "*" for them:
# DescribeNetworkInterfaces works only on "*", and Lambda makes the interfaces, so their
# ids are not known beforehand. This is the one statement runbook grants on "*"
# (tests/functional/test_least_privilege.py checks that).
ENI_ACTIONS = ["ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface",
               "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
               "ec2:DescribeSubnets", "ec2:UnassignPrivateIpAddresses"]

# AWS: a VPC function can take minutes to become Active while its ENIs are made.
ACTIVE_TIMEOUT_S = 15 * 60

# The resources of a function, and their keys in its FunctionState.
ROLE, LOG_GROUP, FUNCTION, PERMISSION = Role(), LogGroup(), LambdaFunction(), InvokePermission()
ROLE_KEY, LOG_GROUP_KEY, FUNCTION_KEY, PERMISSION_KEY = "role", "log-group", "function", "permission"
LAYER_KEY = "layer"


@dataclass(frozen=True)
class Invoker:
    """Who may invoke the function: a service principal, bound to one source."""

    principal: str          # e.g. cognito-idp.amazonaws.com
    source_arn: str
    source_account: str
    statement_id: str


@dataclass(frozen=True)
class FunctionSpec:
    key: str                              # lambdas/<key>/handler.py
    name: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict
    statements: tuple = ()                # extra inline-policy statements
    subnet_ids: tuple | None = None       # None: not in a VPC
    security_group_ids: tuple = ()
    layer: bool = False                   # uses the dependency layer
    invoker: Invoker | None = None
    log_retention_days: int = 30
    tags: dict = field(default_factory=dict)

    @property
    def role_name(self) -> str:
        return f"{self.name}-role"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


def function_spec(entry, config, *, account: str, region: str, network=None, database=None,
                  secrets=None, pool_arn: str | None = None, proxy=None,
                  environment: dict | None = None) -> FunctionSpec:
    """The spec of registry entry `entry` (runbook.functions.registry) in this
    environment: sized by lambdas.<key>, in vpc-integrate's subnets (`network`) when
    in_vpc, logged in to the database as the entry says (`database`, `secrets`; a
    function with a role of its own through the RDS Proxy, `proxy`, db-proxy's outputs,
    when given), invocable from `pool_arn` when it is a Cognito trigger. `environment`
    adds the step's own variables."""
    settings = config.lambdas.settings(entry.key)
    variables, statements = {}, ()
    if entry.login != NO_DATABASE:
        iam_user = entry.iam_user(config, database.master_username)
        if proxy is not None and entry.login == TRIGGER_ROLE:
            if not iam_user:
                raise PlanError(entry.step, "database.roles",
                                f"{entry.key} logs in through the RDS Proxy (step db-proxy "
                                "is in the file) as a role of its own, and database.roles "
                                f"declares none: add one with `trigger: {entry.slug}`")
            variables, statement = proxy_login(proxy, database, iam_user=iam_user,
                                               account=account, region=region)
        else:
            variables, statement = database_login(database, secrets, iam_user=iam_user,
                                                  account=account, region=region)
        statements = (statement,)
    variables.update(environment or {})
    name = config.function_name(entry.key)
    return FunctionSpec(
        key=entry.key, name=name, runtime=config.lambdas.runtime,
        memory_mb=settings.memory_mb, timeout_s=settings.timeout_s, environment=variables,
        statements=statements,
        subnet_ids=tuple(network.subnet_ids) if entry.in_vpc else None,
        security_group_ids=(network.lambda_security_group_id,) if entry.in_vpc else (),
        layer=entry.layer,
        invoker=(Invoker(COGNITO, pool_arn, account, entry.statement_id)
                 if entry.trigger else None),
        log_retention_days=config.lambdas.log_retention_days,
        tags=naming.tags(config, entry.step, name))


@dataclass(kw_only=True)
class LayerState(Inventory):
    """The dependency layer: found "layer", the latest version when its content matches."""

    spec: LayerSpec

    @property
    def arn(self) -> str | None:
        found = self.found.get(LAYER_KEY)
        return found.id if found is not None else None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runtime(self) -> str:
        return self.spec.runtime

    @property
    def content_hash(self) -> str:
        return self.spec.content_hash

    @property
    def ca_bundle(self) -> rds_ca.CaBundle | None:
        return self.spec.ca_bundle

    def spec_for(self, key: str, layer: LayerState | None = None) -> LayerSpec:
        return self.spec


@dataclass(kw_only=True)
class FunctionState(Inventory):
    """One function: its spec, the local build, and what exists (found, by ROLE_KEY,
    LOG_GROUP_KEY, FUNCTION_KEY and PERMISSION_KEY)."""

    spec: FunctionSpec
    account: str
    region: str
    artifact: package.Artifact
    changed: bool = False             # created or updated, not yet waited for

    @classmethod
    def of(cls, spec: FunctionSpec, account: str, region: str, artifact: package.Artifact,
           found: dict) -> FunctionState:
        """What was read of a function, claimed: pure, so that plans are tested from data.
        A role, log group or function of the same name that another environment owns is
        refused: the names derive from lambdas.prefix (or network.name)."""
        fn = cls(spec=spec, account=account, region=region, artifact=artifact)
        for key, resource in ((ROLE_KEY, ROLE), (LOG_GROUP_KEY, LOG_GROUP),
                              (FUNCTION_KEY, FUNCTION)):
            if found.get(key) is not None:
                resource.claim(fn.spec_for(key), found[key])
        fn.found.update(found)
        return fn

    @property
    def role_arn(self) -> str:
        return self.ref(ROLE_KEY, "arn")

    @property
    def arn(self) -> str:
        found = self.found.get(FUNCTION_KEY)
        if found is not None:
            return found.id
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.spec.name}"

    @property
    def function(self) -> dict | None:
        """GetFunction's Configuration, plus "Tags"; None while there is no function."""
        found = self.found.get(FUNCTION_KEY)
        return None if found is None else {**found.configuration, "Tags": found.tags}

    @property
    def log_group_arn(self) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{self.spec.log_group}"

    def policy(self) -> dict:
        spec = self.spec
        statements = [{"Sid": "Logs", "Effect": "Allow",
                       "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                       "Resource": f"{self.log_group_arn}:*"}]
        if spec.subnet_ids is not None:
            statements.append({"Sid": "VpcNetworkInterfaces", "Effect": "Allow",
                               "Action": ENI_ACTIONS, "Resource": "*"})
        statements += list(spec.statements)
        return {"Version": "2012-10-17", "Statement": statements}

    # -- the specs of its resources (pure) ---------------------------------------------

    def spec_for(self, key: str, layer: LayerState | None = None):
        spec = self.spec
        if key == ROLE_KEY:
            return RoleSpec(spec.role_name, spec.tags, FIELD, service="lambda.amazonaws.com",
                            policy=self.policy(),
                            description=f"Execution role of {spec.name} (managed by runbook)",
                            holder=f"lambda:function {spec.name}")
        if key == LOG_GROUP_KEY:
            return LogGroupSpec(spec.log_group, spec.tags, FIELD, arn=self.log_group_arn,
                                retention_days=spec.log_retention_days)
        if key == FUNCTION_KEY:
            layers = ()
            if spec.layer:
                layers = (layer.arn if layer is not None and layer.arn else UNKNOWN,)
            return LambdaSpec(
                spec.name, {**spec.tags, FUNCTION_TAG: spec.key}, FIELD,
                folder=f"lambdas/{spec.key}", code=self.artifact, runtime=spec.runtime,
                role_arn=self.role_arn, memory_mb=spec.memory_mb, timeout_s=spec.timeout_s,
                environment=spec.environment, subnet_ids=spec.subnet_ids,
                security_group_ids=spec.security_group_ids, layers=layers)
        if key == PERMISSION_KEY:
            invoker = spec.invoker
            return PermissionSpec(
                f"{spec.name}/{invoker.statement_id}", spec.tags, FIELD, function=spec.name,
                function_arn=self.arn, statement_id=invoker.statement_id,
                principal=invoker.principal, source_arn=invoker.source_arn,
                source_account=invoker.source_account)
        raise KeyError(key)


@dataclass
class Run:
    """How a change to a function or the layer runs: `apply` against the FunctionState
    or LayerState it was planned from, not the step's state, with the resource's spec
    derived again from it (see the module docstring) and references to the step's state
    resolved when that state is an Inventory. A function is waited for before an
    update, and marked changed after one, so that a trigger is attached, and the step
    settles, only once it is active."""

    apply: Apply
    owner: FunctionState | LayerState
    layer: LayerState | None = None
    wait: Callable[[FunctionState], None] | None = None

    def __call__(self, api, state, spec=None, **args) -> Any:
        key, action = self.apply.key, self.apply.action
        if spec is not None:
            known = {**(state.found if isinstance(state, Inventory) else {}), **self.owner.found}
            args["spec"] = resolve(self.owner.spec_for(key, self.layer), Inventory(known))
        function = key == FUNCTION_KEY and isinstance(self.owner, FunctionState)
        if function and action == "update":
            self.wait(self.owner)
        result = self.apply(api, self.owner, **args)
        if function and action in ("create", "update"):
            self.owner.changed = True
        return result


@dataclass
class AttachTrigger:
    """Set triggers ({trigger: its function's FunctionState, or an ARN}) in one
    UpdateUserPool that sends the pool's whole current configuration: UpdateUserPool
    resets every setting the call omits, the other triggers included. The pool is read
    again right before the update, so that nothing changed since the plan is lost."""

    triggers: dict[str, FunctionState | str]
    pool_id: str
    wait: Callable[[FunctionState], None]

    def __call__(self, api, state) -> None:
        from runbook.aws import userpool

        for target in self.triggers.values():
            # Cognito is about to call it: let it become active first.
            if isinstance(target, FunctionState) and target.changed:
                self.wait(target)
        cognito = api.client("cognito-idp")
        described = cognito.describe_user_pool(UserPoolId=self.pool_id)["UserPool"]
        triggers = userpool.merge_triggers(
            described.get("LambdaConfig") or {},
            {name: trigger_arn(target) for name, target in self.triggers.items()})
        cognito.update_user_pool(**userpool.update_request(described, LambdaConfig=triggers))


def trigger_arn(target: FunctionState | str) -> str:
    """The ARN a trigger names: a function runbook deploys in this step, or one an
    earlier step deployed (its outputs' ARN)."""
    return target.arn if isinstance(target, FunctionState) else target


class FunctionsMixin:
    """Read, plan and settle Lambda functions (see the module docstring)."""

    # -- read ------------------------------------------------------------------------

    def read_layer(self, runtime: str) -> LayerState:
        bundle = self.layer_ca_bundle()
        spec = self.layer_spec(runtime, package.layer_content_hash(
            runtime, ca_bundle_sha256=bundle.sha256), bundle)
        return LayerState(spec=spec, found={LAYER_KEY: self._layer().find(self.api, spec)})

    def layer_spec(self, runtime: str, content_hash: str, bundle: rds_ca.CaBundle) -> LayerSpec:
        """The dependency layer built from `content_hash` (package.layer_content_hash)."""
        name = self.config.function_name("deps")
        return LayerSpec(name, naming.tags(self.config, self.name, name), "lambdas.runtime",
                         runtime=runtime, content_hash=content_hash, ca_bundle=bundle)

    def layer_ca_bundle(self) -> rds_ca.CaBundle:
        """The CA bundle the layer carries: in a dry run the sandbox's CA, which its
        database and proxy endpoints' certificates are issued by; live, the RDS bundle
        (rds_ca) and the Amazon roots an RDS Proxy's ACM certificate chains to."""
        tls = getattr(self.ctx, "database_tls", None)
        if self.ctx.dry_run and tls is not None:
            return rds_ca.from_file(tls.ca_file, "the sandbox CA")
        return rds_ca.with_amazon_roots(rds_ca.for_config(self.config,
                                                          fetch=not self.ctx.dry_run))

    def read_function(self, spec: FunctionSpec) -> FunctionState:
        """What exists of the function `spec` describes, claimed (FunctionState.of)."""
        return FunctionState.of(spec, self.account(), self.ctx.aws.region,
                                package.build_function(spec.key), self.find_function(spec))

    def find_function(self, spec: FunctionSpec) -> dict:
        """Read only: the function's role, log group, function and, for a function with
        an invoker, its statement, by FunctionState key (None: there is none)."""
        named = FunctionState(spec=spec, account=self.account(), region=self.ctx.aws.region,
                              artifact=None)
        found = {key: resource.find(self.api, named.spec_for(key))
                 for key, resource in ((ROLE_KEY, ROLE), (LOG_GROUP_KEY, LOG_GROUP),
                                       (FUNCTION_KEY, FUNCTION))}
        if found[FUNCTION_KEY] is not None and spec.invoker is not None:
            found[PERMISSION_KEY] = PERMISSION.find(self.api, named.spec_for(PERMISSION_KEY))
        return found

    def read_pool(self, pool_id: str) -> dict | None:
        if not is_known(pool_id):
            return None
        return self.api.client("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]

    def account(self) -> str:
        return self.api.account()

    def _layer(self) -> LayerVersion:
        return LayerVersion(say=lambda text: self.ctx.progress.line(text, dim=True))

    # -- plan (pure) -------------------------------------------------------------------

    def plan_layer(self, layer: LayerState) -> list[Change]:
        return [_bound(change, layer) for change in
                self._layer().plan(layer.spec, layer.found.get(LAYER_KEY), LAYER_KEY)]

    def plan_function(self, fn: FunctionState, layer: LayerState | None = None) -> list[Change]:
        changes = ROLE.plan(fn.spec_for(ROLE_KEY), fn.found.get(ROLE_KEY), ROLE_KEY)
        changes += LOG_GROUP.plan(fn.spec_for(LOG_GROUP_KEY), fn.found.get(LOG_GROUP_KEY),
                                  LOG_GROUP_KEY)
        changes += FUNCTION.plan(fn.spec_for(FUNCTION_KEY, layer), fn.found.get(FUNCTION_KEY),
                                 FUNCTION_KEY)
        if fn.spec.invoker is not None:
            changes += PERMISSION.plan(fn.spec_for(PERMISSION_KEY),
                                       fn.found.get(PERMISSION_KEY), PERMISSION_KEY)
        return [_bound(change, fn, layer, self.wait_active) for change in changes]

    def plan_trigger(self, pool: dict | None, pool_name: str, trigger: str,
                     fn: FunctionState) -> list[Change]:
        return self.plan_triggers(pool, pool_name, {trigger: fn})

    def plan_triggers(self, pool: dict | None, pool_name: str,
                      triggers: dict[str, FunctionState | str]) -> list[Change]:
        """The triggers ({trigger: FunctionState or ARN}) that differ from the pool's, set
        in one change (one UpdateUserPool); none when all are right."""
        current = (pool or {}).get("LambdaConfig") or {}
        diff, wrong = {}, {}
        for name, target in triggers.items():
            arn = trigger_arn(target)
            if pool is None or current.get(name) != arn:
                diff[f"trigger {name}"] = {"from": current.get(name), "to": arn}
                wrong[name] = target
        if not wrong:
            return []
        diff["other settings"] = "kept (the whole configuration is sent)"
        return [Change("update", f"cognito-idp:user-pool {pool_name}", "attach_trigger",
                       {}, diff, run=AttachTrigger(wrong, (pool or {}).get("Id", UNKNOWN),
                                                   self.wait_active))]

    # -- settle ----------------------------------------------------------------------

    def settle_functions(self, functions: dict[str, FunctionState]) -> None:
        for fn in functions.values():
            if fn.changed:
                self.wait_active(fn)

    def wait_active(self, fn: FunctionState) -> None:
        """Wait until the function is Active and no update is in progress (read calls
        only), e.g. before a trigger makes Cognito call it."""
        name = fn.spec.name
        self.ctx.wait_for("lambda", "function_active_v2", FunctionName=name,
                          what=f"lambda function {name} to be active",
                          timeout_s=ACTIVE_TIMEOUT_S, interval_s=5)
        self.ctx.wait_for("lambda", "function_updated_v2", FunctionName=name,
                          what=f"lambda function {name} to finish updating",
                          timeout_s=ACTIVE_TIMEOUT_S, interval_s=5)
        fn.changed = False


def _bound(change: Change, owner, layer: LayerState | None = None, wait=None) -> Change:
    return dataclasses.replace(change, run=Run(change.run, owner, layer, wait))


# -- database access -------------------------------------------------------------------

def database_login(database, secrets, *, iam_user: str | None, account: str,
                   region: str) -> tuple[dict, dict]:
    """A function's database environment (runbook.lambda_runtime.db.from_environment) and
    the one policy statement it needs for it: rds-db:connect as `iam_user` only, or else
    GetSecretValue on the DB secret only. An IAM login verifies the cluster's certificate
    (verify-full) against the RDS CA bundle in the layer, DB_SSLROOTCERT."""
    if iam_user:
        return ({"DB_AUTH": "iam", "DB_HOST": database.endpoint,
                 "DB_PORT": str(database.port), "DB_NAME": database.database,
                 "DB_USER": iam_user, "DB_SSLROOTCERT": rds_ca.LAYER_PATH},
                {"Sid": "ConnectAsDbUser", "Effect": "Allow", "Action": "rds-db:connect",
                 "Resource": (f"arn:aws:rds-db:{region}:{account}:dbuser:"
                              f"{database.cluster_resource_id}/{iam_user}"
                              if is_known(database.cluster_resource_id) else UNKNOWN)})
    return ({"DB_SECRET_ARN": secrets.db_secret_arn},
            {"Sid": "ReadDbSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": secrets.db_secret_arn})


def proxy_login(proxy, database, *, iam_user: str, account: str,
                region: str) -> tuple[dict, dict]:
    """A function's database environment through the RDS Proxy (`proxy`, db-proxy's
    outputs) and its one statement: rds-db:connect as `iam_user` through the proxy's
    prx- id only. No secret: the token is signed for the proxy's endpoint, and the proxy
    logs in to the cluster by IAM itself. The proxy's certificate is verified
    (verify-full) against the layer's bundle, which carries the Amazon roots that its
    ACM certificate chains to (rds_ca.with_amazon_roots)."""
    resource = (f"arn:aws:rds-db:{region}:{account}:dbuser:{proxy.proxy_resource_id}/{iam_user}"
                if is_known(proxy.proxy_resource_id) else UNKNOWN)
    return ({"DB_AUTH": "iam", "DB_HOST": proxy.endpoint, "DB_PORT": str(PROXY_PORT),
             "DB_NAME": database.database, "DB_USER": iam_user,
             "DB_SSLROOTCERT": rds_ca.LAYER_PATH},
            {"Sid": PROXY_SID, "Effect": "Allow", "Action": "rds-db:connect",
             "Resource": resource})


# The statement that lets a function connect as its database user through the proxy.
PROXY_SID = "ConnectThroughProxy"
PROXY_PORT = rds_proxy.PORT
