"""A Lambda function (code and configuration) and the permission that lets a service
invoke it.

Code is compared by CodeSha256 with a deterministic local build
(runbook.functions.package), so unchanged code is never uploaded. The configuration is
compared field by field; an environment variable runbook does not set was added by
someone else and may hold a secret, so the plan names it and withholds its value.

Lambda refuses an update while the function is still being created or updated: the
caller waits until it is Active and idle first (runbook.functions.deploy.wait_active).

Teardown deletes a function with its resource policy (the invoke permissions go with
it); its event source mappings are deleted before it (EventSourceMapping.of_function),
and its execution role after Lambda has released its VPC network interfaces, which it
does with that role (runbook.teardown orders them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runbook.aws import naming, retry
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import Change, diff_field, unknown_fields
from runbook.errors import StepFailed
from runbook.functions.package import Artifact
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec

HANDLER = "handler.handler"
WITHHELD = "(set outside runbook; value withheld)"
REMOVED = "(removed)"


# -- the function ----------------------------------------------------------------------

@dataclass(frozen=True)
class LambdaSpec(Spec):
    """The function `name`, built from lambdas/<folder>. `tags` include runbook:function."""

    folder: str = ""
    code: Artifact | None = None
    runtime: str = ""
    role_arn: str = ""
    memory_mb: int = 128
    timeout_s: int = 3
    environment: dict = field(default_factory=dict)
    subnet_ids: tuple | None = None       # None: not in a VPC
    security_group_ids: tuple = ()
    layers: tuple = ()

    def configuration(self) -> dict:
        """What `current` reads back, as it should be."""
        vpc = None
        if self.subnet_ids is not None:
            vpc = {"SubnetIds": sorted(self.subnet_ids),
                   "SecurityGroupIds": sorted(self.security_group_ids)}
        return {"Runtime": self.runtime, "Handler": HANDLER, "Role": self.role_arn,
                "MemorySize": self.memory_mb, "Timeout": self.timeout_s,
                "Environment": dict(sorted(self.environment.items())), "VpcConfig": vpc,
                "Layers": list(self.layers)}


@dataclass
class LambdaFound(Found):
    """`id` is the function's ARN; `configuration` GetFunction's Configuration."""

    configuration: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The function's name, as teardown's lines show it."""
        return self.configuration.get("FunctionName", "")

    def current(self) -> dict:
        """The configuration in LambdaSpec.configuration's form."""
        function = self.configuration
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


_FIELD_NAMES = {"Runtime": "runtime", "Handler": "handler", "Role": "role",
                "MemorySize": "memory_mb", "Timeout": "timeout_s", "Environment": "environment",
                "VpcConfig": "vpc", "Layers": "layers"}


class LambdaFunction(Resource[LambdaSpec, LambdaFound]):
    kind, service, plural = "lambda:function", "lambda", "functions"
    label_id = False
    ops = {"tag": "tag_function"}

    def find(self, api: Api, spec: LambdaSpec) -> LambdaFound | None:
        """By name. Not claimed here: the caller claims, once it has read all it needs."""
        found = or_none(lambda: api.client("lambda").get_function(FunctionName=spec.name))
        if found is None:
            return None
        return LambdaFound(found["Configuration"]["FunctionArn"], found.get("Tags") or {},
                             found["Configuration"])

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: LambdaSpec) -> dict:
        return {"runtime": spec.runtime, "memory_mb": spec.memory_mb,
                "timeout_s": spec.timeout_s, "code_sha256": spec.code.sha256,
                "vpc": "private subnets" if spec.subnet_ids is not None else "none",
                "environment": sorted(spec.environment)}

    def diff(self, spec: LambdaSpec, found: LambdaFound) -> dict:
        """The configuration's differences (the code's are a change of their own)."""
        current, desired = found.current(), spec.configuration()
        diff: dict = {}
        for name, label in _FIELD_NAMES.items():
            if name == "Environment":
                changed = sorted(k for k in set(current[name]) | set(desired[name])
                                 if current[name].get(k) != desired[name].get(k))
                if changed:
                    # A variable runbook does not set was added by someone else, and may
                    # hold a secret: the plan names it and withholds its value.
                    diff[label] = {"from": {k: current[name].get(k) if k in desired[name]
                                            else WITHHELD for k in changed},
                                   "to": {k: desired[name].get(k, REMOVED) for k in changed}}
                continue
            diff_field(diff, label, current[name], desired[name])
        return diff

    def plan(self, spec: LambdaSpec, found: LambdaFound | None, key: str) -> list[Change]:
        label = self.label(spec)
        if found is None:
            return [Change("create", label, "create_function", {"spec": spec},
                           self.summary(spec), run=Apply(self, key, "create"))]
        changes = []
        code = found.configuration.get("CodeSha256")
        if code != spec.code.sha256:
            changes.append(self._update(spec, key, "update_code",
                                        {"code_sha256": {"from": code, "to": spec.code.sha256}}))
        diff = self.diff(spec, found)
        if diff:
            changes.append(self._update(spec, key, "update_configuration", diff))
        add = naming.missing_tags(spec.tags, found.tags)
        if add:
            changes.append(self.tag_change(spec, found, add, key))
        return changes

    def _update(self, spec: LambdaSpec, key: str, op: str, diff: dict) -> Change:
        return Change("update", self.label(spec), op, {"spec": spec, "diff": diff, "tags": {}},
                      diff, run=Apply(self, key, "update"))

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: LambdaSpec) -> LambdaFound:
        config = self._known(spec)
        params = {**_parameters(config), "FunctionName": spec.name,
                  "Code": {"ZipFile": spec.code.data}, "PackageType": "Zip",
                  "Architectures": ["x86_64"], "Publish": False,
                  "Description": f"{spec.folder} (managed by runbook)", "Tags": dict(spec.tags)}
        lam = api.client("lambda")
        created = retry.retry(lambda: lam.create_function(**params),
                              when=retry.is_role_not_assumable, policy=retry.IAM_PROPAGATION,
                              sleep=api.sleep)
        return LambdaFound(created["FunctionArn"], dict(spec.tags), created)

    def update(self, api: Api, spec: LambdaSpec, found: LambdaFound, diff: dict,
               tags: dict) -> LambdaFound:
        """`diff` names what to update: the code (code_sha256), else the configuration."""
        lam = api.client("lambda")
        if "code_sha256" in diff:
            updated = retry.retry(lambda: lam.update_function_code(
                FunctionName=spec.name, ZipFile=spec.code.data),
                when=retry.is_lambda_update_in_progress, policy=retry.LAMBDA_UPDATE,
                sleep=api.sleep)
            found.configuration.update(updated)
        if set(diff) - {"code_sha256"}:
            config = self._known(spec)
            params = {**_parameters(config), "FunctionName": spec.name}
            if config["VpcConfig"] is None:
                params["VpcConfig"] = {"SubnetIds": [], "SecurityGroupIds": []}
            updated = retry.retry(
                lambda: lam.update_function_configuration(**params),
                when=lambda exc: (retry.is_role_not_assumable(exc)
                                  or retry.is_lambda_update_in_progress(exc)),
                policy=retry.IAM_PROPAGATION, sleep=api.sleep)
            found.configuration.update(updated)
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[LambdaFound]:
        """Every function whose tags (ListTags, one call each: ListFunctions shows none)
        name `env`, with ListFunctions' configuration."""
        lam = api.client("lambda")
        owned = []
        for function in pages(lam, "list_functions", "Functions"):
            arn = function["FunctionArn"]
            # Deleted since the listing: none.
            tags = or_none(lambda: lam.list_tags(Resource=arn)["Tags"])
            if tags is not None and tags.get(naming.ENV_TAG) == env:
                owned.append(LambdaFound(arn, tags, function))
        return owned

    def delete(self, api: Api, found: LambdaFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteFunction, with its versions and resource policy. A function already gone
        is done, and costs no write. Lambda refuses it while an update is in progress
        (ResourceConflictException): retried as an update is."""
        lam = api.client("lambda")
        if or_none(lambda: lam.get_function_configuration(FunctionName=found.id)) is None:
            return
        retry.retry(lambda: or_none(lambda: lam.delete_function(FunctionName=found.id)),
                    when=retry.is_lambda_update_in_progress, policy=retry.LAMBDA_UPDATE,
                    sleep=api.sleep)

    def _known(self, spec: LambdaSpec) -> dict:
        config = spec.configuration()
        if unknown_fields(config):
            raise StepFailed(spec.step, self.label(spec),
                             "its configuration still has values unknown after the steps "
                             "before it")
        return config


def _parameters(config: dict) -> dict:
    params = {"Runtime": config["Runtime"], "Handler": config["Handler"], "Role": config["Role"],
              "MemorySize": config["MemorySize"], "Timeout": config["Timeout"],
              "Environment": {"Variables": config["Environment"]}, "Layers": config["Layers"]}
    if config["VpcConfig"] is not None:
        params["VpcConfig"] = config["VpcConfig"]
    return params


# -- the invoke permission ---------------------------------------------------------------

@dataclass(frozen=True)
class PermissionSpec(Spec):
    """A statement of the function's resource policy: `principal` may invoke it, from
    `source_arn` in `source_account` only. `name` is "<function>/<statement id>"."""

    function: str = ""
    function_arn: str = ""
    statement_id: str = ""
    principal: str = ""                 # e.g. cognito-idp.amazonaws.com
    source_arn: str = ""
    source_account: str = ""

    def statement(self) -> dict:
        return {"Sid": self.statement_id, "Effect": "Allow",
                "Principal": {"Service": self.principal}, "Action": "lambda:InvokeFunction",
                "Resource": self.function_arn,
                "Condition": {"StringEquals": {"AWS:SourceAccount": self.source_account},
                              "ArnLike": {"AWS:SourceArn": self.source_arn}}}


@dataclass
class PermissionFound(Found):
    """`id` is the statement id; a statement carries no tags."""

    statement: dict = field(default_factory=dict)


class InvokePermission(Resource[PermissionSpec, PermissionFound]):
    kind, service, plural = "lambda:permission", "lambda", "permissions"
    label_id = False

    def find(self, api: Api, spec: PermissionSpec) -> PermissionFound | None:
        """The statement with the spec's id in the function's resource policy."""
        answer = or_none(lambda: api.client("lambda").get_policy(FunctionName=spec.function))
        if answer is None:
            return None
        statement = next((s for s in json.loads(answer["Policy"]).get("Statement", ())
                          if s.get("Sid") == spec.statement_id), None)
        return PermissionFound(spec.statement_id, {}, statement) if statement else None

    def owned(self, api: Api, env: str) -> list[PermissionFound]:
        """None of its own: a permission is a statement of its function's resource
        policy, which DeleteFunction deletes with the function."""
        return []

    def plan(self, spec: PermissionSpec, found: PermissionFound | None,
             key: str) -> list[Change]:
        if found is not None and _same_statement(found.statement, spec.statement()):
            return []
        return [Change("update" if found else "create", self.label(spec), "set_permission",
                       {"spec": spec, "diff": {}, "tags": {}},
                       {"principal": spec.principal, "source_arn": spec.source_arn,
                        "source_account": spec.source_account},
                       run=Apply(self, key, "update" if found else "create"))]

    def create(self, api: Api, spec: PermissionSpec) -> PermissionFound:
        if unknown_fields(spec):
            raise StepFailed(spec.step, self.label(spec),
                             "its source is still unknown after the steps before it")
        api.client("lambda").add_permission(
            FunctionName=spec.function, StatementId=spec.statement_id,
            Action="lambda:InvokeFunction", Principal=spec.principal,
            SourceArn=spec.source_arn, SourceAccount=spec.source_account)
        return PermissionFound(spec.statement_id, {}, spec.statement())

    def update(self, api: Api, spec: PermissionSpec, found: PermissionFound, diff: dict,
               tags: dict) -> PermissionFound:
        """A statement cannot be changed: it is removed and added again."""
        api.client("lambda").remove_permission(FunctionName=spec.function,
                                               StatementId=spec.statement_id)
        return self.create(api, spec)


def _same_statement(current: dict, wanted: dict) -> bool:
    def principal(statement):
        value = statement.get("Principal")
        return value.get("Service") if isinstance(value, dict) else value

    return (current.get("Effect") == wanted["Effect"]
            and principal(current) == principal(wanted)
            and current.get("Action") == wanted["Action"]
            and current.get("Condition") == wanted["Condition"])
