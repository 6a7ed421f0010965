"""What the plan cases of steps that deploy functions say was read of them.

A case's "function" is {"role", "log_group", "function", "permission"}, each null (none
exists) or the fields of what was found, as runbook.resources reads them; "layer" is
{"content_hash", "ca_bundle": {"sha256", "source"}, "found": null or {"id"}}; "code_sha256"
is the local build's CodeSha256.
"""

from __future__ import annotations

from pathlib import Path

from runbook.database.rds_ca import CaBundle
from runbook.functions.deploy import (FUNCTION_KEY, LAYER_KEY, LOG_GROUP_KEY, PERMISSION_KEY,
                                      ROLE_KEY, LayerState)
from runbook.functions.package import Artifact
from runbook.resources.iam_role import RoleFound
from runbook.resources.lambda_function import LambdaFound, PermissionFound
from runbook.resources.lambda_layer import LayerFound
from runbook.resources.log_group import LogGroupFound

FOUND = {"role": (ROLE_KEY, RoleFound), "log_group": (LOG_GROUP_KEY, LogGroupFound),
         "function": (FUNCTION_KEY, LambdaFound), "permission": (PERMISSION_KEY, PermissionFound)}


def found(data: dict) -> dict:
    """{FunctionState key: what was found, or None}. The JSON is kept as it is: policy
    documents and configurations compare with what the step builds."""
    return {key: cls(**data[name]) if data.get(name) is not None else None
            for name, (key, cls) in FOUND.items()}


def artifact(data: dict) -> Artifact:
    return Artifact(b"", data["code_sha256"], ())


def layer(step, data: dict) -> LayerState:
    bundle = data["ca_bundle"]
    spec = step.layer_spec(step.config.lambdas.runtime, data["content_hash"],
                           CaBundle(Path("ca.pem"), bundle["sha256"], bundle["source"], b""))
    current = data.get("found")
    return LayerState(spec=spec, found={LAYER_KEY: LayerFound(**{"tags": {}, **current})
                                        if current else None})
