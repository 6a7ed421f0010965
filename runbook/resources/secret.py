"""A Secrets Manager secret whose value is a JSON object (step `store-secrets`).

runbook owns some fields of the value and leaves the others alone: the fields it derives
(`fields`, rewritten when they differ) and the fields it generates (`generated`, made
once, when missing, and never changed by a re-run). A secret made before runbook is
adopted with whatever else it holds.

A secret scheduled for deletion is restored, never re-created (AWS refuses a new secret
with the name of one pending deletion anyway); its value can be read only once it is
restored, so its fields are compared then. Teardown's delete therefore keeps a recovery
window by default: a run after a destroy restores the secret, with its value.

No secret value leaves this module: diffs show the non-secret fields runbook derives and
"(generated)" for the rest, errors never quote a value, and `SecretFound.value` stays out
of its repr.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import string
from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.aws.retry import error_code
from runbook.engine.plan import Change
from runbook.errors import PlanError
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec

GENERATED = "(generated)"
# A master password RDS accepts, and the random, non-secret id made together with it
# (the cluster is tagged with the id of the password it has: PASSWORD_ID_TAG).
PASSWORD, PASSWORD_ID = "password", "password_id"
PASSWORD_ID_TAG = "runbook:password-id"
# RDS refuses '/', '@', '"' and spaces in a master password.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!#$%^&*()-_=+[]{}:,.?~"


@dataclass(frozen=True)
class MasterPassword:
    """A master password and its id, made together. The value stays out of repr."""

    id: str
    value: str = field(repr=False)

    @classmethod
    def new(cls) -> "MasterPassword":
        return cls("pw-" + pysecrets.token_hex(8),
                   "".join(pysecrets.choice(_PASSWORD_ALPHABET) for _ in range(40)))


@dataclass(frozen=True)
class SecretSpec(Spec):
    fields: dict = field(default_factory=dict)   # runbook's derived, non-secret fields
    generated: tuple = ()                        # made once: PASSWORD (with PASSWORD_ID), tokens
    description: str = ""
    # The password to keep when PASSWORD is to be made: the one a new cluster was just
    # created with (step database). None: a new one.
    password: MasterPassword | None = field(default=None, repr=False, compare=False)


@dataclass
class SecretFound(Found):
    """`id` is the ARN."""

    name: str = ""
    deleted_on: str | None = None                # scheduled for deletion: the date
    value: dict | None = field(default=None, repr=False)   # None while deleted


class Secret(Resource[SecretSpec, SecretFound]):
    kind, service, plural = "secretsmanager:secret", "secretsmanager", "secrets"
    label_id = False

    # -- read --------------------------------------------------------------------------

    def find(self, api: Api, spec: SecretSpec) -> SecretFound | None:
        """By name (a secret's name is unique in the account). The owner is checked
        before the value is read: runbook never reads the value of a secret another
        environment owns."""
        return self.find_all(api, [spec])[0]

    def find_all(self, api: Api, specs: list[SecretSpec]) -> list[SecretFound | None]:
        """`find` for each spec, the values of all of them read in one call.

        Each secret is described by name (DescribeSecret) and claimed first; then the
        values of those not scheduled for deletion (which have none to read until they
        are restored) come in one BatchGetSecretValue. Not ListSecrets to find them: it
        may miss a change of the last five minutes (AWS's API reference), where
        DescribeSecret sees it, and a run right after a failed one would try to create
        the secret its predecessor made."""
        found = []
        for spec in specs:
            item = self.choose(spec, named=self.by_name(api, spec))
            if item is not None:
                self.claim(spec, item)
            found.append(item)
        live = [(spec, item) for spec, item in zip(specs, found)
                if item is not None and not item.deleted_on]
        for (spec, item), raw in zip(live, self.read_values(api, [i for _, i in live])):
            item.value = parse_value(self, spec, raw)
        return found

    def by_name(self, api: Api, spec: SecretSpec) -> list[SecretFound]:
        described = or_none(lambda: api.client("secretsmanager").describe_secret(
            SecretId=spec.name))
        if described is None:
            return []
        deleted = described.get("DeletedDate")
        return [SecretFound(described["ARN"], naming.from_aws(described.get("Tags")),
                            spec.name, str(deleted)[:10] if deleted else None)]

    @staticmethod
    def read_values(api: Api, found: list[SecretFound]) -> list[str | None]:
        """The SecretString of each of `found` (by ARN): one GetSecretValue for one,
        one BatchGetSecretValue for several. A secret the batch could not read raises the
        error GetSecretValue would have. Credentials or a VPC endpoint policy that do not
        allow the batch action (written before runbook used it) get one GetSecretValue
        per secret instead."""
        client = api.client("secretsmanager")

        def one_by_one() -> list[str | None]:
            return [client.get_secret_value(SecretId=f.id).get("SecretString")
                    for f in found]

        if len(found) < 2:
            return one_by_one()
        try:
            answer = client.batch_get_secret_value(SecretIdList=[f.id for f in found])
        except Exception as exc:  # noqa: BLE001 - only a refusal of the batch falls back
            if error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
                raise
            return one_by_one()
        from botocore.exceptions import ClientError

        values = {v["ARN"]: v.get("SecretString") for v in answer.get("SecretValues", ())}
        errors = {e.get("SecretId"): e for e in answer.get("Errors", ())}
        for item in found:
            error = errors.get(item.id) or errors.get(item.name)
            if error is not None or item.id not in values:
                error = error or {"ErrorCode": "ResourceNotFoundException",
                                  "Message": "not in the answer"}
                raise ClientError({"Error": {"Code": error.get("ErrorCode", ""),
                                             "Message": error.get("Message", "")}},
                                  "BatchGetSecretValue")
        return [values[item.id] for item in found]

    def read_value(self, api: Api, spec: SecretSpec) -> dict:
        raw = api.client("secretsmanager").get_secret_value(SecretId=spec.name).get("SecretString")
        return parse_value(self, spec, raw)

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: SecretSpec) -> dict:
        return {**spec.fields, **{key: GENERATED for key in spec.generated}}

    def diff(self, spec: SecretSpec, found: SecretFound) -> dict:
        """The derived fields that differ, and the generated ones missing (values never
        shown: they are made at apply)."""
        current = found.value or {}
        diff = {key: {"from": current.get(key), "to": value}
                for key, value in spec.fields.items() if current.get(key) != value}
        diff.update({key: GENERATED for key in spec.generated if not current.get(key)})
        return diff

    def plan(self, spec: SecretSpec, found: SecretFound | None, key: str) -> list[Change]:
        if found is None or not found.deleted_on:
            return super().plan(spec, found, key)
        restore = {"deletion": {"from": f"scheduled ({found.deleted_on})", "to": "restored"},
                   "fields": "compared after the restore"}
        changes = [Change("update", self.label(spec, found), "restore", {"spec": spec},
                          restore, run=Apply(self, key, "restore"))]
        add = naming.missing_tags(spec.tags, found.tags)
        return changes + ([self.tag_change(spec, found, add, key)] if add else [])

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: SecretSpec) -> SecretFound:
        value = generate(dict(spec.fields), spec.generated, spec.password)
        created = api.client("secretsmanager").create_secret(
            Name=spec.name, SecretString=json.dumps(value, sort_keys=True),
            Description=spec.description, Tags=naming.as_aws(spec.tags))
        return SecretFound(created["ARN"], dict(spec.tags), spec.name, None, value)

    def update(self, api: Api, spec: SecretSpec, found: SecretFound, diff: dict,
               tags: dict) -> SecretFound:
        """Write runbook's fields into its value (PutSecretValue, the other fields kept)."""
        return self.put_value(api, spec, found)

    def restore(self, api: Api, spec: SecretSpec, found: SecretFound) -> SecretFound:
        api.client("secretsmanager").restore_secret(SecretId=spec.name)
        found.deleted_on = None
        found.value = self.read_value(api, spec)
        if merged(found.value, spec) != found.value:
            self.put_value(api, spec, found)
        return found

    @staticmethod
    def put_value(api: Api, spec: SecretSpec, found: SecretFound) -> SecretFound:
        value = merged(found.value or {}, spec)
        api.client("secretsmanager").put_secret_value(
            SecretId=spec.name, SecretString=json.dumps(value, sort_keys=True))
        found.value = value
        return found

    def tag_target(self, found: SecretFound) -> str:
        return found.name

    # -- teardown ----------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[SecretFound]:
        """ListSecrets filtered by the environment tag, without values, and without the
        secrets already scheduled for deletion. The filters match any tag key and any
        tag value, each by prefix: the pair is checked here."""
        listed = pages(api.client("secretsmanager"), "list_secrets", "SecretList",
                       Filters=[{"Key": "tag-key", "Values": [naming.ENV_TAG]},
                                {"Key": "tag-value", "Values": [env]}])
        secrets = [SecretFound(s["ARN"], naming.from_aws(s.get("Tags")), s["Name"])
                   for s in listed if not s.get("DeletedDate")]
        return [s for s in secrets if s.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: SecretFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteSecret with `options.secret_recovery_days` (its name stays taken until
        then, and RestoreSecret undoes it), or at once when that is None. One gone or
        already scheduled for deletion is done."""
        if not self._live(api, found):
            return
        window = ({"ForceDeleteWithoutRecovery": True} if options.secret_recovery_days is None
                  else {"RecoveryWindowInDays": options.secret_recovery_days})
        or_none(lambda: api.client("secretsmanager").delete_secret(SecretId=found.id,
                                                                    **window))

    def gone(self, api: Api, found: SecretFound) -> bool:
        """Whether the secret is scheduled for deletion, or deleted."""
        return not self._live(api, found)

    @staticmethod
    def _live(api: Api, found: SecretFound) -> bool:
        """Whether the secret exists and is not scheduled for deletion."""
        described = or_none(lambda: api.client("secretsmanager").describe_secret(
            SecretId=found.id))
        return described is not None and not described.get("DeletedDate")


def parse_value(kind: Secret, spec: SecretSpec, raw: str | None) -> dict:
    """A secret's SecretString as the JSON object runbook merges its fields into."""
    try:
        value = json.loads(raw or "")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise PlanError(spec.step, kind.label(spec),
                        "its value is not a JSON object, so runbook cannot merge its "
                        "fields. Fix or delete the secret by hand.")
    return value


def merged(current: dict, spec: SecretSpec) -> dict:
    """The current value with runbook's fields set; generated ones kept or made once."""
    return generate({**current, **spec.fields}, spec.generated, spec.password)


def generate(value: dict, generated: tuple, password: MasterPassword | None = None) -> dict:
    """`value` with each generated field it lacks made: a password together with its id
    (`password`, or a new one), an id alone for a password that has none, a token for
    anything else."""
    if PASSWORD in generated:
        if not value.get(PASSWORD):
            made = password or MasterPassword.new()
            value[PASSWORD], value[PASSWORD_ID] = made.value, made.id
        elif not value.get(PASSWORD_ID):
            value[PASSWORD_ID] = MasterPassword.new().id
    for key in generated:
        if key not in (PASSWORD, PASSWORD_ID) and not value.get(key):
            value[key] = pysecrets.token_urlsafe(48)
    return value
