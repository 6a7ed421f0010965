"""Deploying a Lambda function, the same way from every step that ships one.

A function is up to five resources, converged in this order:

    iam:role          the execution role: a Lambda trust policy and one inline policy
                      with only what the function needs (its log group, the ENI actions
                      of a VPC function, the statements the step adds); any other inline
                      policy and any attached managed policy that allows something is
                      removed, whoever put it there, since it grants the function more
                      than it needs; one that only denies (a guardrail) stays
    logs:log-group    /aws/lambda/<name>, with the configured retention
    lambda:layer      the third-party dependencies and the RDS CA bundle, published only
                      when their content hash differs from the latest version's
    lambda:function   code (compared by CodeSha256 with a deterministic local build, so
                      unchanged code is never uploaded) and configuration
    lambda:permission the resource policy statement that lets its caller (Cognito)
                      invoke it, bound to the caller's ARN and account

A step mixes `FunctionsMixin` in, reads each `FunctionSpec` with `read_function`, adds
`plan_function`'s changes to its plan and calls `settle_functions` from `settle`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.functions import package
from runbook.aws import policies
from runbook.database import rds_ca
from runbook.aws import retry
from runbook.engine import UNKNOWN, Change, diff_field, is_known
from runbook.engine.plan import unknown_fields
from runbook.resources.base import tag_change
from runbook.errors import StepFailed

HANDLER = "handler.handler"
FUNCTION_TAG = "runbook:function"   # the lambdas/<key> folder a function is built from
POLICY_NAME = "runbook"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
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


@dataclass
class FunctionState:
    spec: FunctionSpec
    account: str
    region: str
    artifact: package.Artifact
    # {"arn", "trust", "policy", "tags", "others": {name: document},
    #  "attached": {arn: its default version's document}}
    role: dict | None = None
    log_group: dict | None = None     # {"retention", "arn", "tags"}
    function: dict | None = None      # GetFunction's Configuration, plus "Tags"
    statement: dict | None = None     # our statement in the function's resource policy
    layer_arn: str | None = None
    changed: bool = False             # created or updated, not yet waited for

    @property
    def role_arn(self) -> str:
        return self.role["arn"] if self.role else UNKNOWN

    @property
    def arn(self) -> str:
        if self.function:
            return self.function["FunctionArn"]
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.spec.name}"

    def policy(self) -> dict:
        spec = self.spec
        log_group = f"arn:aws:logs:{self.region}:{self.account}:log-group:{spec.log_group}"
        statements = [{"Sid": "Logs", "Effect": "Allow",
                       "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                       "Resource": f"{log_group}:*"}]
        if spec.subnet_ids is not None:
            statements.append({"Sid": "VpcNetworkInterfaces", "Effect": "Allow",
                               "Action": ENI_ACTIONS, "Resource": "*"})
        statements += list(spec.statements)
        return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class LayerState:
    name: str
    runtime: str
    content_hash: str
    arn: str | None = None            # the latest version, when its content matches
    ca_bundle: rds_ca.CaBundle | None = None


class FunctionsMixin:
    """Read, plan and apply Lambda functions (see the module docstring)."""

    # -- read ------------------------------------------------------------------------

    def read_layer(self, runtime: str) -> LayerState:
        name = self.config.function_name("deps")
        bundle = self.layer_ca_bundle()
        state = LayerState(name, runtime, package.layer_content_hash(
            runtime, ca_bundle_sha256=bundle.sha256), ca_bundle=bundle)
        pages = self.client("lambda").get_paginator("list_layer_versions").paginate(
            LayerName=name, CompatibleRuntime=runtime)
        versions = [v for page in pages for v in page["LayerVersions"]]
        if versions:
            latest = max(versions, key=lambda v: v["Version"])
            if package.content_hash_of(latest.get("Description", "")) == state.content_hash:
                state.arn = latest["LayerVersionArn"]
        return state

    def layer_ca_bundle(self) -> rds_ca.CaBundle:
        """The CA bundle the layer carries: in a dry run the sandbox's CA, which its
        database endpoint's certificate is issued by; live, the RDS bundle (rds_ca)."""
        tls = getattr(self.ctx, "database_tls", None)
        if self.ctx.dry_run and tls is not None:
            return rds_ca.from_file(tls.ca_file, "the sandbox CA")
        return rds_ca.for_config(self.config, fetch=not self.ctx.dry_run)

    def read_function(self, spec: FunctionSpec) -> FunctionState:
        state = FunctionState(spec, self.account(), self.ctx.aws.region,
                              package.build_function(spec.key))
        iam, lam, logs = self.client("iam"), self.client("lambda"), self.client("logs")
        try:
            role = iam.get_role(RoleName=spec.role_name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            role = None
        if role is not None:
            inline = {name: policies.document(iam.get_role_policy(
                          RoleName=spec.role_name, PolicyName=name)["PolicyDocument"])
                      for name in self._pages(iam, "list_role_policies", "PolicyNames",
                                              RoleName=spec.role_name)}
            attached = {p["PolicyArn"]: self._managed_document(iam, p["PolicyArn"])
                        for p in self._pages(iam, "list_attached_role_policies",
                                             "AttachedPolicies", RoleName=spec.role_name)}
            state.role = {"arn": role["Arn"],
                          "trust": policies.document(role["AssumeRolePolicyDocument"]),
                          "policy": inline.pop(POLICY_NAME, None),
                          "tags": naming.from_aws(role.get("Tags")),
                          # Inline policies beside runbook's, {name: document}.
                          "others": inline,
                          # Managed policies attached to it, {arn: document}.
                          "attached": dict(sorted(attached.items()))}
        groups = logs.describe_log_groups(logGroupNamePrefix=spec.log_group)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == spec.log_group), None)
        if group is not None:
            # Lambda makes the group itself, untagged, on a first invocation without one.
            arn = group.get("logGroupArn") or group["arn"].removesuffix(":*")
            state.log_group = {"retention": group.get("retentionInDays"), "arn": arn,
                               "tags": logs.list_tags_for_resource(resourceArn=arn)["tags"]}
        try:
            found = lam.get_function(FunctionName=spec.name)
        except lam.exceptions.ResourceNotFoundException:
            found = None
        if found is not None:
            state.function = {**found["Configuration"], "Tags": found.get("Tags") or {}}
            state.statement = self._read_statement(spec)
        self._claim_function(state)
        return state

    def _claim_function(self, fn: FunctionState) -> None:
        """Refuse a role, log group or function of the same name that another environment
        owns: the names derive from lambdas.prefix (or network.name)."""
        spec = fn.spec
        for resource, found in ((f"iam:role {spec.role_name}", fn.role),
                                (f"logs:log-group {spec.log_group}", fn.log_group)):
            if found is not None:
                self.claim(resource, found["tags"], "lambdas.prefix")
        if fn.function is not None:
            self.claim(f"lambda:function {spec.name}", fn.function["Tags"], "lambdas.prefix")

    @staticmethod
    def _pages(client, operation: str, key: str, **kwargs) -> list:
        return [item for page in client.get_paginator(operation).paginate(**kwargs)
                for item in page[key]]

    @staticmethod
    def _managed_document(iam, arn: str) -> dict | None:
        """The document of a managed policy's default version (what it grants now; read
        calls only), so that a policy that only denies is told apart. None when the policy
        is gone (deleted since the listing)."""
        try:
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            return policies.document(iam.get_policy_version(
                PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
        except iam.exceptions.NoSuchEntityException:
            return None

    def _read_statement(self, spec: FunctionSpec) -> dict | None:
        if spec.invoker is None:
            return None
        lam = self.client("lambda")
        try:
            policy = json.loads(lam.get_policy(FunctionName=spec.name)["Policy"])
        except lam.exceptions.ResourceNotFoundException:
            return None
        return next((s for s in policy.get("Statement", ())
                     if s.get("Sid") == spec.invoker.statement_id), None)

    def account(self) -> str:
        return self.api.account()

    # -- plan ------------------------------------------------------------------------

    def plan_layer(self, layer: LayerState) -> list[Change]:
        if layer.arn:
            return []
        return [Change("create", f"lambda:layer-version {layer.name}", "publish_layer", {},
                       {"runtime": layer.runtime, "content": f"sha256:{layer.content_hash[:12]}",
                        "built_with": f"pip --platform {package.PLATFORM}",
                        "ca_bundle": f"sha256:{layer.ca_bundle.sha256[:12]} "
                                     f"({layer.ca_bundle.source})"})]

    def plan_function(self, fn: FunctionState, layer: LayerState | None = None) -> list[Change]:
        spec = fn.spec
        key = {"key": spec.key}
        changes = self._plan_role(fn)
        if fn.log_group is None:
            changes.append(Change("create", f"logs:log-group {spec.log_group}", "create_log_group",
                                  key, {"retention_days": spec.log_retention_days}))
        else:
            if fn.log_group["retention"] != spec.log_retention_days:
                changes.append(Change("update", f"logs:log-group {spec.log_group}", "set_retention",
                                      key, {"retention_days": {"from": fn.log_group["retention"],
                                                               "to": spec.log_retention_days}}))
            changes += tag_change(f"logs:log-group {spec.log_group}", fn.log_group["arn"],
                                  spec.tags, fn.log_group["tags"], "tag_log_group")
        label = f"lambda:function {spec.name}"
        desired = self.desired_configuration(fn, layer)
        if fn.function is None:
            changes.append(Change("create", label, "create_function", key, {
                "runtime": spec.runtime, "memory_mb": spec.memory_mb,
                "timeout_s": spec.timeout_s, "code_sha256": fn.artifact.sha256,
                "vpc": "private subnets" if spec.subnet_ids is not None else "none",
                "environment": sorted(spec.environment)}))
        else:
            if fn.function.get("CodeSha256") != fn.artifact.sha256:
                changes.append(Change("update", label, "update_code", key, {
                    "code_sha256": {"from": fn.function.get("CodeSha256"),
                                    "to": fn.artifact.sha256}}))
            diff = _configuration_diff(_current_configuration(fn.function), desired)
            if diff:
                changes.append(Change("update", label, "update_configuration", key, diff))
            tags = {**spec.tags, FUNCTION_TAG: spec.key}
            add = naming.missing_tags(tags, fn.function["Tags"])
            if add:
                changes.append(Change("update", label, "tag_function", {**key, "tags": add},
                                      {"tags": naming.tag_diff(fn.function["Tags"], add)}))
        if spec.invoker is not None:
            wanted = _statement(spec, fn.arn)
            if fn.statement is None or not _same_statement(fn.statement, wanted):
                changes.append(Change(
                    "update" if fn.statement else "create",
                    f"lambda:permission {spec.name}/{spec.invoker.statement_id}",
                    "set_permission", key,
                    {"principal": spec.invoker.principal, "source_arn": spec.invoker.source_arn,
                     "source_account": spec.invoker.source_account}))
        return changes

    def _plan_role(self, fn: FunctionState) -> list[Change]:
        spec = fn.spec
        label = f"iam:role {spec.role_name}"
        key = {"key": spec.key}
        policy = fn.policy()
        if fn.role is None:
            return [Change("create", label, "create_role", key,
                           {"trust": "lambda.amazonaws.com",
                            "policy": policies.summary(policy)})]
        changes = []
        if fn.role["trust"] != LAMBDA_TRUST:
            changes.append(Change("update", label, "set_trust", key,
                                  {"trust": {"from": fn.role["trust"], "to": LAMBDA_TRUST}}))
        if fn.role["policy"] != policy:
            changes.append(Change("update", label, "put_role_policy", key, {
                "policy": {"from": policies.summary(fn.role["policy"]),
                           "to": policies.summary(policy)}}))
        add = naming.missing_tags(spec.tags, fn.role["tags"])
        if add:
            changes.append(Change("update", label, "tag_role", {**key, "tags": add},
                                  {"tags": naming.tag_diff(fn.role["tags"], add)}))
        return changes + plan_role_extras(spec.role_name, fn.role, key)

    def desired_configuration(self, fn: FunctionState, layer: LayerState | None) -> dict:
        spec = fn.spec
        vpc = None
        if spec.subnet_ids is not None:
            vpc = {"SubnetIds": sorted(spec.subnet_ids),
                   "SecurityGroupIds": sorted(spec.security_group_ids)}
        layers = []
        if spec.layer:
            layers = [layer.arn if layer is not None and layer.arn else UNKNOWN]
        return {"Runtime": spec.runtime, "Handler": HANDLER, "Role": fn.role_arn,
                "MemorySize": spec.memory_mb, "Timeout": spec.timeout_s,
                "Environment": dict(sorted(spec.environment.items())), "VpcConfig": vpc,
                "Layers": layers}

    # -- apply -----------------------------------------------------------------------

    def function_state(self, key: str) -> FunctionState:
        return self.functions[key]  # the step keeps {key: FunctionState}

    def apply_publish_layer(self, state) -> None:
        layer: LayerState = state.layer
        built = package.build_layer(layer.runtime, ca_bundle=layer.ca_bundle)
        self.ctx.progress.line(f"  layer {'from cache' if built.cached else 'built'}: "
                               f"{built.size / 1e6:.1f} MB", dim=True)
        published = self.client("lambda").publish_layer_version(
            LayerName=layer.name, Description=package.layer_description(layer.content_hash),
            Content={"ZipFile": built.data}, CompatibleRuntimes=[layer.runtime],
            CompatibleArchitectures=["x86_64"])
        layer.arn = published["LayerVersionArn"]

    def apply_create_role(self, state, key: str) -> None:
        fn = self.function_state(key)
        spec = fn.spec
        iam = self.client("iam")
        role = iam.create_role(RoleName=spec.role_name,
                               AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
                               Description=f"Execution role of {spec.name} (managed by runbook)",
                               Tags=naming.as_aws(spec.tags))["Role"]
        fn.role = {"arn": role["Arn"], "trust": LAMBDA_TRUST, "policy": None,
                   "tags": dict(spec.tags), "others": {}, "attached": {}}
        self.apply_put_role_policy(state, key)

    def apply_set_trust(self, state, key: str) -> None:
        fn = self.function_state(key)
        self.client("iam").update_assume_role_policy(RoleName=fn.spec.role_name,
                                                     PolicyDocument=json.dumps(LAMBDA_TRUST))
        fn.role["trust"] = LAMBDA_TRUST

    def apply_put_role_policy(self, state, key: str) -> None:
        fn = self.function_state(key)
        policy = fn.policy()
        _require_known(fn.spec, "role policy", policy)
        self.client("iam").put_role_policy(RoleName=fn.spec.role_name, PolicyName=POLICY_NAME,
                                           PolicyDocument=json.dumps(policy))
        fn.role["policy"] = policy

    def apply_delete_role_policy(self, state, key: str, policy_name: str) -> bool:
        fn = self.function_state(key)
        iam = self.client("iam")
        try:
            iam.delete_role_policy(RoleName=fn.spec.role_name, PolicyName=policy_name)
        except iam.exceptions.NoSuchEntityException:
            return False  # gone already: removed by someone else, or a retried request
        finally:
            fn.role["others"].pop(policy_name, None)
        return True

    def apply_detach_role_policy(self, state, key: str, policy_arn: str) -> bool:
        fn = self.function_state(key)
        iam = self.client("iam")
        try:
            iam.detach_role_policy(RoleName=fn.spec.role_name, PolicyArn=policy_arn)
        except iam.exceptions.NoSuchEntityException:
            return False  # detached already
        finally:
            fn.role["attached"].pop(policy_arn, None)
        return True

    def apply_tag_role(self, state, key: str, tags: dict) -> None:
        self.client("iam").tag_role(RoleName=self.function_state(key).spec.role_name,
                                    Tags=naming.as_aws(tags))

    def apply_create_log_group(self, state, key: str) -> None:
        spec = self.function_state(key).spec
        logs = self.client("logs")
        try:
            logs.create_log_group(logGroupName=spec.log_group, tags=spec.tags)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass  # made by a concurrent run, or by Lambda on a first invocation
        self.apply_set_retention(state, key)

    def apply_tag_log_group(self, state, resource_id: str, tags: dict) -> None:
        self.client("logs").tag_resource(resourceArn=resource_id, tags=tags)

    def apply_set_retention(self, state, key: str) -> None:
        spec = self.function_state(key).spec
        self.client("logs").put_retention_policy(logGroupName=spec.log_group,
                                                 retentionInDays=spec.log_retention_days)

    def apply_create_function(self, state, key: str) -> None:
        fn = self.function_state(key)
        spec = fn.spec
        config = self.desired_configuration(fn, getattr(state, "layer", None))
        _require_known(spec, "configuration", config)
        params = {**_configuration_params(config), "FunctionName": spec.name,
                  "Code": {"ZipFile": fn.artifact.data}, "PackageType": "Zip",
                  "Architectures": ["x86_64"], "Publish": False,
                  "Description": f"lambdas/{spec.key} (managed by runbook)",
                  "Tags": {**spec.tags, FUNCTION_TAG: spec.key}}
        lam = self.client("lambda")
        created = retry.retry(lambda: lam.create_function(**params),
                              when=retry.is_role_not_assumable, policy=retry.IAM_PROPAGATION,
                              sleep=self.ctx.sleep)
        fn.function = {**created, "Tags": params["Tags"]}
        fn.changed = True

    def apply_update_code(self, state, key: str) -> None:
        fn = self.function_state(key)
        lam = self.client("lambda")
        self.wait_active(fn)
        updated = retry.retry(lambda: lam.update_function_code(
            FunctionName=fn.spec.name, ZipFile=fn.artifact.data),
            when=retry.is_lambda_update_in_progress, policy=retry.LAMBDA_UPDATE,
            sleep=self.ctx.sleep)
        fn.function.update(updated)
        fn.changed = True

    def apply_update_configuration(self, state, key: str) -> None:
        fn = self.function_state(key)
        config = self.desired_configuration(fn, getattr(state, "layer", None))
        _require_known(fn.spec, "configuration", config)
        params = {**_configuration_params(config), "FunctionName": fn.spec.name}
        if config["VpcConfig"] is None:
            params["VpcConfig"] = {"SubnetIds": [], "SecurityGroupIds": []}
        lam = self.client("lambda")
        self.wait_active(fn)

        def update():
            return lam.update_function_configuration(**params)

        updated = retry.retry(
            update, when=lambda exc: (retry.is_role_not_assumable(exc)
                                      or retry.is_lambda_update_in_progress(exc)),
            policy=retry.IAM_PROPAGATION, sleep=self.ctx.sleep)
        fn.function.update(updated)
        fn.changed = True

    def apply_tag_function(self, state, key: str, tags: dict) -> None:
        fn = self.function_state(key)
        self.client("lambda").tag_resource(Resource=fn.function["FunctionArn"], Tags=tags)

    def apply_set_permission(self, state, key: str) -> None:
        fn = self.function_state(key)
        spec = fn.spec
        lam = self.client("lambda")
        if fn.statement is not None:
            lam.remove_permission(FunctionName=spec.name, StatementId=spec.invoker.statement_id)
        lam.add_permission(FunctionName=spec.name, StatementId=spec.invoker.statement_id,
                           Action="lambda:InvokeFunction", Principal=spec.invoker.principal,
                           SourceArn=spec.invoker.source_arn,
                           SourceAccount=spec.invoker.source_account)
        fn.statement = _statement(spec, fn.arn)

    # -- the Cognito trigger -----------------------------------------------------------

    def read_pool(self, pool_id: str) -> dict | None:
        if not is_known(pool_id):
            return None
        return self.client("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]

    def plan_trigger(self, pool: dict | None, pool_name: str, trigger: str,
                     fn: FunctionState) -> list[Change]:
        current = ((pool or {}).get("LambdaConfig") or {}).get(trigger)
        if pool is not None and current == fn.arn:
            return []
        return [Change("update", f"cognito-idp:user-pool {pool_name}", "attach_trigger",
                       {"key": fn.spec.key, "trigger": trigger},
                       {f"trigger {trigger}": {"from": current, "to": fn.arn},
                        "other settings": "kept (the whole configuration is sent)"})]

    def apply_attach_trigger(self, state, key: str, trigger: str) -> None:
        """Set one trigger, sending the pool's whole current configuration: UpdateUserPool
        resets every setting the call omits. The pool is read again right before the
        update, so that nothing changed since the plan is lost."""
        from runbook.aws import userpool

        fn = self.function_state(key)
        if fn.changed:  # Cognito is about to call it: let it become active first
            self.wait_active(fn)
        pool_id = state.pool_id
        cognito = self.client("cognito-idp")
        described = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
        triggers = userpool.merge_triggers(described.get("LambdaConfig") or {}, {trigger: fn.arn})
        cognito.update_user_pool(**userpool.update_request(described, LambdaConfig=triggers))

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


# -- database access -------------------------------------------------------------------

def database_login(database, secrets, *, iam_user: str | None, account: str,
             region: str) -> tuple[dict, dict]:
    """A function's database environment (runbook.lambda_runtime.db.from_environment) and the one
    policy statement it needs for it: rds-db:connect as `iam_user` only, or else
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


# -- comparing ---------------------------------------------------------------------------

def plan_role_extras(role_name: str, role: dict, key: dict) -> list[Change]:
    """A `-` for each inline policy beside runbook's and each attached managed policy
    that allows something.

    Pure. runbook's own inline policy is compared whole by `_plan_role`, so a statement
    added to it is an update; these are the grants added next to it. A policy whose
    statements all deny is left alone, inline or managed: it grants nothing, and it is
    typically a security team's guardrail on every role; removing it would widen what
    the function may do.
    """
    changes = [Change("delete", f"iam:role-policy {role_name}/{name}", "delete_role_policy",
                      {**key, "policy_name": name},
                      {"role": role_name, "grants": policies.summary(document)})
               for name, document in sorted(role.get("others", {}).items())
               if policies.allows(document)]
    changes += [Change("delete", f"iam:attached-policy {role_name} {arn}", "detach_role_policy",
                       {**key, "policy_arn": arn},
                       {"role": role_name, "policy_arn": arn,
                        "grants": policies.summary(document)})
                for arn, document in sorted(role.get("attached", {}).items())
                if policies.allows(document)]
    return changes


def _current_configuration(function: dict) -> dict:
    vpc = function.get("VpcConfig") or {}
    subnets, groups = vpc.get("SubnetIds") or [], vpc.get("SecurityGroupIds") or []
    return {"Runtime": function.get("Runtime"), "Handler": function.get("Handler"),
            "Role": function.get("Role"), "MemorySize": function.get("MemorySize"),
            "Timeout": function.get("Timeout"),
            "Environment": dict(sorted(((function.get("Environment") or {})
                                        .get("Variables") or {}).items())),
            "VpcConfig": ({"SubnetIds": sorted(subnets), "SecurityGroupIds": sorted(groups)}
                          if subnets or groups else None),
            "Layers": [layer["Arn"] for layer in function.get("Layers") or ()]}


WITHHELD = "(set outside runbook; value withheld)"
REMOVED = "(removed)"

_FIELD_NAMES = {"Runtime": "runtime", "Handler": "handler", "Role": "role",
                "MemorySize": "memory_mb", "Timeout": "timeout_s", "Environment": "environment",
                "VpcConfig": "vpc", "Layers": "layers"}


def _configuration_diff(current: dict, desired: dict) -> dict:
    diff: dict = {}
    for name, label in _FIELD_NAMES.items():
        if name == "Environment":
            changed = sorted(k for k in set(current[name]) | set(desired[name])
                             if current[name].get(k) != desired[name].get(k))
            if changed:
                # A variable runbook does not set was added by someone else, and may hold
                # a secret: the plan names it and withholds its value.
                diff[label] = {"from": {k: current[name].get(k) if k in desired[name]
                                        else WITHHELD for k in changed},
                               "to": {k: desired[name].get(k, REMOVED) for k in changed}}
            continue
        diff_field(diff, label, current[name], desired[name])
    return diff


def _configuration_params(config: dict) -> dict:
    params = {"Runtime": config["Runtime"], "Handler": config["Handler"], "Role": config["Role"],
              "MemorySize": config["MemorySize"], "Timeout": config["Timeout"],
              "Environment": {"Variables": config["Environment"]}, "Layers": config["Layers"]}
    if config["VpcConfig"] is not None:
        params["VpcConfig"] = config["VpcConfig"]
    return params


def _statement(spec: FunctionSpec, function_arn: str) -> dict:
    invoker = spec.invoker
    return {"Sid": invoker.statement_id, "Effect": "Allow",
            "Principal": {"Service": invoker.principal}, "Action": "lambda:InvokeFunction",
            "Resource": function_arn,
            "Condition": {"StringEquals": {"AWS:SourceAccount": invoker.source_account},
                          "ArnLike": {"AWS:SourceArn": invoker.source_arn}}}


def _same_statement(current: dict, wanted: dict) -> bool:
    def principal(statement):
        value = statement.get("Principal")
        return value.get("Service") if isinstance(value, dict) else value

    return (current.get("Effect") == wanted["Effect"]
            and principal(current) == principal(wanted)
            and current.get("Action") == wanted["Action"]
            and current.get("Condition") == wanted["Condition"])


def _require_known(spec: FunctionSpec, what: str, value) -> None:
    if unknown_fields(value):
        raise StepFailed("lambda", f"lambda:function {spec.name}",
                         f"its {what} still has values unknown after the steps before it")

