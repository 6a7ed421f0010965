"""Changing a Cognito user pool or app client without resetting what the change omits.

`UpdateUserPool` and `UpdateUserPoolClient` are not patches: every setting the request
leaves out goes back to its default (AWS documents this, and moto does the same for
pools). A request that only sets a Lambda trigger therefore also resets the password
policy, the auto-verified attributes, deletion protection, the tags... So every change
runbook makes starts from the resource's `Describe*` output and sends all of it back,
with the change applied on top.

Which members a request may carry is taken from botocore's service model, not from a
hand-kept list: a member AWS adds to the API (and to botocore) is carried without a
code change, and what only `Describe*` returns (Id, Arn, CreationDate, SchemaAttributes,
UsernameAttributes, EstimatedNumberOfUsers...) is left out.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SERVICE = "cognito-idp"

# DescribeUserPool and UpdateUserPool name these two members differently.
_POOL_RENAMES = {"Id": "UserPoolId", "Name": "PoolName"}

# LambdaConfig's string members that are not triggers.
_NOT_TRIGGERS = frozenset({"KMSKeyID"})

_DROP = object()


@lru_cache(maxsize=None)
def _input_shape(operation: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(SERVICE) \
        .operation_model(operation).input_shape


def request_members(operation: str) -> frozenset[str]:
    """The members `operation` (e.g. "UpdateUserPool") accepts, per botocore's model."""
    return frozenset(_input_shape(operation).members)


def update_request(described: dict, **changes: Any) -> dict:
    """The complete UpdateUserPool kwargs that keep every setting of `described` (a
    DescribeUserPool "UserPool"), with `changes` (UpdateUserPool members) on top.

    A change whose value is None is left out of the request, so that AWS resets it.
    """
    current = {_POOL_RENAMES.get(key, key): value for key, value in described.items()}
    return _request("UpdateUserPool", _pool_conflicts, current, changes)


def client_update_request(described_client: dict, **changes: Any) -> dict:
    """The complete UpdateUserPoolClient kwargs that keep every setting of
    `described_client` (a DescribeUserPoolClient "UserPoolClient"), with `changes` on top.
    The client secret is not part of it: it cannot be changed by an update."""
    return _request("UpdateUserPoolClient", lambda request: request, dict(described_client),
                    changes)


def merge_triggers(current_lambda_config: dict | None, desired: dict[str, str]) -> dict:
    """`current_lambda_config` with runbook's triggers ({"PreSignUp": arn, ...}) set,
    and every other trigger (someone else's) kept."""
    lambda_config = _input_shape("UpdateUserPool").members["LambdaConfig"]
    triggers = {name for name, shape in lambda_config.members.items()
                if shape.type_name == "string" and name not in _NOT_TRIGGERS}
    for name, arn in desired.items():
        if name not in triggers:
            raise ValueError(f"{name!r} is not a Cognito trigger (known: "
                             f"{', '.join(sorted(triggers))})")
        if not (isinstance(arn, str) and arn.startswith("arn:")):
            raise ValueError(f"trigger {name}: {arn!r} is not a Lambda function ARN")
    merged = dict(current_lambda_config or {})
    merged.update(desired)
    # PreTokenGenerationConfig names the same function as PreTokenGeneration, and AWS
    # refuses a request where the two differ.
    config = merged.get("PreTokenGenerationConfig")
    if "PreTokenGeneration" in desired and isinstance(config, dict):
        merged["PreTokenGenerationConfig"] = {**config, "LambdaArn": desired["PreTokenGeneration"]}
    return merged


# -- building a request from the model ---------------------------------------------------

def _request(operation: str, fix, current: dict, changes: dict) -> dict:
    shape = _input_shape(operation)
    unknown = sorted(set(changes) - set(shape.members))
    if unknown:
        raise TypeError(f"{operation} has no member {', '.join(unknown)}")
    request = _conform(fix({**current, **changes}), shape)
    if request is _DROP or any(name not in request for name in shape.required_members):
        missing = [name for name in shape.required_members if name not in current]
        raise ValueError(f"{operation}: the description lacks {', '.join(missing)}")
    return request


def _conform(value: Any, shape) -> Any:
    """`value` reduced to what `shape` accepts, or _DROP where botocore would refuse it
    before it is sent: None, a structure without a required member, or a string, list
    or map shorter than the model's minimum (an empty `SmsVerificationMessage`...)."""
    if value is None:
        return _DROP
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return _DROP
        out = {}
        for name, member in shape.members.items():
            if name in value:
                kept = _conform(value[name], member)
                if kept is not _DROP:
                    out[name] = kept
        if any(name not in out for name in shape.required_members):
            return _DROP
        return out
    if kind == "list":
        items = [_conform(item, shape.member) for item in value]
        value = [item for item in items if item is not _DROP]
    elif kind == "map":
        pairs = {key: _conform(item, shape.value) for key, item in value.items()}
        value = {key: item for key, item in pairs.items() if item is not _DROP}
    if kind in ("list", "map", "string") and len(value) < shape.metadata.get("min", 0):
        return _DROP
    return value


def _pool_conflicts(request: dict) -> dict:
    """Settings DescribeUserPool returns that UpdateUserPool refuses to get back."""
    admin = request.get("AdminCreateUserConfig")
    password = (request.get("Policies") or {}).get("PasswordPolicy")
    if isinstance(admin, dict) and "UnusedAccountValidityDays" in admin \
            and isinstance(password, dict):
        # The deprecated UnusedAccountValidityDays is still described, but AWS refuses it
        # next to a password policy: "Please use TemporaryPasswordValidityDays in
        # PasswordPolicy instead of UnusedAccountValidityDays". It is the same setting.
        admin = dict(admin)
        days = admin.pop("UnusedAccountValidityDays")
        policies = dict(request["Policies"])
        policies["PasswordPolicy"] = {"TemporaryPasswordValidityDays": days, **password}
        request = {**request, "AdminCreateUserConfig": admin, "Policies": policies}
    return request
