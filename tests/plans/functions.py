"""What the plan cases of the steps that deploy functions say was read of them.

A function's entry (under its registry key: "pre_signup", "post_confirmation",
"db_migrate") is what AWS describes, each part absent or null when there is none:
  "artifact_sha256"  the CodeSha256 of the local build
  "role"             {"arn", "trust", "policy" (runbook's inline policy), "tags",
                      "others" (the other inline policies, by name),
                      "attached" (managed policies by ARN: their document)}
  "log_group"        {"arn", "retention", "tags"}
  "function"         GetFunction's "Configuration", with its "Tags"
  "statement"        runbook's statement in the function's resource policy
The layer is {"content_hash", "ca_bundle": {"sha256", "source"}, "found": null or
{"id": the latest version's ARN, "content_hash"}}.
"""

from __future__ import annotations

from pathlib import Path

from runbook.database.rds_ca import CaBundle
from runbook.functions.deploy import (FUNCTION_KEY, LAYER_KEY, LOG_GROUP_KEY, PERMISSION_KEY,
                                      ROLE_KEY, FunctionSpec, FunctionState, LayerState)
from runbook.functions.package import Artifact
from runbook.resources.iam_role import RoleFound
from runbook.resources.lambda_function import LambdaFound, PermissionFound
from runbook.resources.lambda_layer import LayerFound
from runbook.resources.log_group import LogGroupFound


def found(spec: FunctionSpec, data: dict) -> dict:
    """{FunctionState key: what was found, or None}. Documents and configurations are
    kept as the JSON has them: they compare with what the step builds."""
    role, group, function, statement = (data.get(part) for part in
                                        ("role", "log_group", "function", "statement"))
    return {
        ROLE_KEY: RoleFound(spec.role_name, **role) if role else None,
        LOG_GROUP_KEY: LogGroupFound(group["arn"], group["tags"], group["retention"])
        if group else None,
        FUNCTION_KEY: LambdaFound(function["FunctionArn"], function.get("Tags") or {},
                                  {k: v for k, v in function.items() if k != "Tags"})
        if function else None,
        PERMISSION_KEY: PermissionFound(statement["Sid"], {}, statement) if statement else None,
    }


def artifact(data: dict) -> Artifact:
    return Artifact(b"", data["artifact_sha256"], ())


def function_state(spec: FunctionSpec, account: str, region: str, data: dict) -> FunctionState:
    """The FunctionState read_function would assemble (claims included)."""
    return FunctionState.of(spec, account, region, artifact(data), found(spec, data))


def layer(step, data: dict) -> LayerState:
    bundle = data["ca_bundle"]
    spec = step.layer_spec(step.config.lambdas.runtime, data["content_hash"],
                           CaBundle(Path("ca.pem"), bundle["sha256"], bundle["source"], b""))
    current = data.get("found")
    return LayerState(spec=spec, found={LAYER_KEY: LayerFound(**{"tags": {}, **current})
                                        if current else None})
