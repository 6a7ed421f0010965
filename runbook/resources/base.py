"""The resource layer: one class per AWS resource kind, each with the same contract.

    find(api, spec)          read only: the resource the spec names, found by id, then
                             by runbook's tags, then by name; several candidates are
                             refused, and so is one another environment owns
    diff(spec, found)        pure: {field: {"from": current, "to": desired}}
    plan(spec, found)        pure: the Changes that make `found` what `spec` says; a
                             difference in a field that cannot change in place
                             (`replaces`) is a PlanError that names the fix
    create / update          apply one change, return what now exists

and, for teardown (`runbook destroy`, which orders the kinds: runbook.teardown):

    owned(api, env)          read only: every resource of the kind that environment
                             `env` holds, whichever step made it
    delete(api, found, opts) start deleting one, protection off first; idempotent
    gone(api, found)         read only: whether that deletion has finished

A step lists the specs it wants, reads what exists with `find`, and orders the changes
`plan` returns. It never calls AWS itself to adopt, tag or compare: tags, "not found",
pages, the account and the named retries live once, in runbook.aws.api.

A plan is data: each Change carries an `Apply` (the resource, the spec, the key under
which the step's state, an `Inventory`, keeps what was found) that the engine runs
without knowing the kind. Values a plan cannot know, the id of a VPC it creates, say, are `Unknown` with a
reference, (key, attribute), which `Apply` resolves from the state when it runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from runbook.aws import naming
from runbook.aws.api import Api
from runbook.engine.plan import Change, Unknown
from runbook.errors import OwnedElsewhere, PlanError, StepFailed


@dataclass(frozen=True)
class Spec:
    """What a step wants of one resource. Subclasses add the kind's settings."""

    name: str                          # its name, or its Name tag
    tags: dict                         # what it should carry (naming.tags)
    field: str                         # the environment-file field that names it
    id: str | None = None              # the id the environment file gives, if any

    @property
    def env(self) -> str:
        return self.tags[naming.ENV_TAG]

    @property
    def step(self) -> str:
        return self.tags[naming.STEP_TAG]


@dataclass
class Found:
    """What exists of one resource. Subclasses add what `diff` compares."""

    id: str
    tags: dict


@dataclass(frozen=True)
class DeleteOptions:
    """What `runbook destroy`'s options say of the deletes that can keep something."""

    # An Aurora cluster's final snapshot is <cluster id>-final-<stamp>; None: none
    # (--skip-final-snapshot). The stamp (the destroy's start, UTC) keeps a second
    # destroy of a re-made environment from meeting the first one's snapshot.
    final_snapshot_stamp: str | None = None
    # A secret's recovery window (7-30 days), or None: deleted at once
    # (--force-delete-secrets). Its name stays taken while the deletion is pending.
    secret_recovery_days: int | None = 30
    # A KMS key is never deleted at once: it is scheduled, 7-30 days ahead.
    key_pending_days: int = 30


S = TypeVar("S", bound=Spec)
F = TypeVar("F", bound=Found)


@dataclass
class Inventory:
    """What a step found and made, by key. Apply keeps it current, so that outputs and
    the values later changes need come from it without reading again."""

    found: dict[str, Any] = field(default_factory=dict)

    def ref(self, key: str, attribute: str = "id") -> Any:
        """found[key].attribute, or an Unknown that Apply resolves once it exists."""
        item = self.found.get(key)
        return getattr(item, attribute) if item is not None else Unknown((key, attribute))


class Resource(Generic[S, F]):
    kind: ClassVar[str]                 # "<service>:<type>", as plans show it
    service: ClassVar[str]              # the boto3 client
    plural: ClassVar[str]               # in messages: "VPCs"
    # Fields that cannot change in place: {field: how to fix a difference}.
    replaces: ClassVar[dict[str, str]] = {}
    # Whether an update's label names the found id: "ec2:vpc main-vpc (vpc-1234)".
    label_id: ClassVar[bool] = True
    # Whether missing tags go into the update's diff (one change), or a change of their own.
    tags_in_update: ClassVar[bool] = False
    # Names for plan's operations (create, update, tag) as this kind's changes are known in
    # tests and logs: {"create": "create_cluster"}.
    ops: ClassVar[dict[str, str]] = {}

    # -- read ------------------------------------------------------------------------

    def find(self, api: Api, spec: S) -> F | None:
        """The candidates (read), then the adoption rule (`choose`, pure)."""
        found = self.choose(spec, **self.candidates(api, spec))
        if found is not None:
            self.claim(spec, found)
        return found

    def candidates(self, api: Api, spec: S) -> dict:
        """What `choose` picks from, read in the rule's order and no further than it
        needs: {"by_id": the resource spec.id names} when the file gives an id (a kind
        whose by_id finds none raises the PlanError naming the field), else {"tagged":
        [...]} and, when nothing carries this environment's tags, {"named": [...]}."""
        if spec.id:
            return {"by_id": self.by_id(api, spec)}
        tagged = self.by_tags(api, spec)
        return {"tagged": tagged} if tagged else {"tagged": [], "named": self.by_name(api, spec)}

    def by_id(self, api: Api, spec: S) -> F:
        raise NotImplementedError(f"{self.kind} is not found by id")

    def by_tags(self, api: Api, spec: S) -> list[F]:
        return []

    def by_name(self, api: Api, spec: S) -> list[F]:
        return []

    def choose(self, spec: S, *, by_id: F | None = None, tagged: list[F] = (),
               named: list[F] = ()) -> F | None:
        """The adoption rule, pure: what the file's id names, else the one resource that
        carries this environment's tags, else the one with the spec's name; several at a
        stage are refused (`several`), and so is a candidate `accept` refuses. The
        caller claims the one chosen (`claim`) once it has read what it needs of it."""
        if spec.id:
            found, how = by_id, "id"
        elif tagged:
            found, how = self._one(spec, list(tagged), "tags"), "tags"
        else:
            found, how = self._one(spec, list(named), "name"), "name"
        if found is not None:
            self.accept(spec, found, how)
        return found

    def _one(self, spec: S, candidates: list[F], how: str) -> F | None:
        if len(candidates) > 1:
            raise self.several(spec, candidates, how)
        return candidates[0] if candidates else None

    def several(self, spec: S, candidates: list[F], how: str) -> PlanError:
        """The refusal of several candidates found by `how` ("tags" or "name")."""
        which = "carry this environment's tags" if how == "tags" else "have this name"
        return PlanError(spec.step, self.label(spec), f"several {self.plural} {which} "
                         f"({', '.join(c.id for c in candidates)}). Set {spec.field} to "
                         "the one to use.")

    def accept(self, spec: S, found: F, how: str) -> None:
        """Refuse a candidate found by `how` that cannot be the spec's (a VPC with
        another block). Nothing by default."""

    def claim(self, spec: S, found: F, label: str | None = None) -> None:
        """Refuse a resource another environment's tag is on: staging and prod often
        share an account, and a copied environment file with one name left unchanged
        must not take over prod's resource. An untagged one (made by the old shell
        scripts) may be adopted. `label` names it in the error (default: `label()`)."""
        owner = (found.tags or {}).get(naming.ENV_TAG)
        if owner is not None and owner != spec.env:
            raise OwnedElsewhere(spec.step, label or self.label(spec, found), owner,
                                 spec.env, spec.field)

    # -- plan (pure) -------------------------------------------------------------------

    def label(self, spec: S, found: F | None = None) -> str:
        base = f"{self.kind} {spec.name}"
        return f"{base} ({found.id})" if found is not None and self.label_id else base

    def summary(self, spec: S) -> dict:
        """What a create shows: the main settings."""
        return {}

    def diff(self, spec: S, found: F) -> dict:
        """{field: {"from", "to"}} for the settings that differ, tags aside."""
        return {}

    def check(self, spec: S, found: F) -> None:
        """Refuse a difference that cannot be made in place (`replaces`)."""
        for name, fix in self.replaces.items():
            current, wanted = getattr(found, name), getattr(spec, name)
            if current != wanted:
                raise PlanError(spec.step, self.label(spec, found),
                                f"its {name} is {current}, the file says {wanted}. {fix}")

    def plan(self, spec: S, found: F | None, key: str) -> list[Change]:
        if found is None:
            return [Change("create", self.label(spec), self.ops.get("create", "create"),
                           {"spec": spec}, self.summary(spec), run=Apply(self, key, "create"))]
        self.check(spec, found)
        diff = self.diff(spec, found)
        add = naming.missing_tags(spec.tags, found.tags)
        changes = []
        if self.tags_in_update and add:
            diff = {"tags": naming.tag_diff(found.tags, add), **diff}
        if diff:
            changes.append(Change("update", self.label(spec, found), "update",
                                  {"spec": spec, "diff": diff, "tags": add if
                                   self.tags_in_update else {}},
                                  diff, run=Apply(self, key, "update")))
        if add and not self.tags_in_update:
            changes.append(self.tag_change(spec, found, add, key))
        return [dataclasses.replace(c, op=self.ops.get(c.op, c.op)) for c in changes]

    def tag_change(self, spec: S, found: F, add: dict, key: str) -> Change:
        """The change that adds the tags `found` lacks. Tags are only added: tags someone
        else put on a resource are left alone."""
        return Change("update", self.label(spec, found), self.ops.get("tag", "tag"),
                      {"tags": add}, {"tags": naming.tag_diff(found.tags, add)},
                      run=Apply(self, key, "tag"))

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: S) -> F:
        raise NotImplementedError

    def update(self, api: Api, spec: S, found: F, diff: dict, tags: dict) -> F:
        raise NotImplementedError

    def tag(self, api: Api, found: F, tags: dict) -> F:
        api.tag(self.service, self.tag_target(found), tags)
        found.tags.update(tags)
        return found

    def tag_target(self, found: F) -> str:
        """What runbook.aws.api.Api.tag takes for this kind: the id, or the ARN."""
        return found.id

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[F]:
        """Read only: every resource of this kind that carries `env`'s runbook:env tag,
        whichever step made it, each with what `delete` needs and its tags (from which
        teardown tells what runbook created, naming.created, from what it adopted).
        [] for a kind found through another (a mapping through its function)."""
        return []

    def delete(self, api: Api, found: F, options: DeleteOptions = DeleteOptions()) -> None:
        """Start deleting `found`, with what only it holds (a role's policies, a rule's
        targets), its deletion protection turned off first. Idempotent: a resource
        already gone, or being deleted, is done. `gone` says when it has finished."""
        raise NotImplementedError(f"runbook does not delete {self.kind} yet")

    def gone(self, api: Api, found: F) -> bool:
        """Read only: whether the deletion of `found` has finished. True by default: most
        deletes take effect in the call."""
        return True

    def title(self, found: F) -> str:
        """How teardown names one it found: "ec2:subnet matbakh-staging-private-a
        (subnet-12ab)"; the name alone when the id is an ARN or a URL, the id alone for
        a resource without a name."""
        name = found.tags.get("Name") or getattr(found, "name", "") or ""
        if not name or name == found.id:
            return f"{self.kind} {found.id}"
        if found.id.startswith(("arn:", "http")):     # the name says it all
            return f"{self.kind} {name}"
        return f"{self.kind} {name} ({found.id})"


@dataclass
class Apply:
    """How the engine applies a resource change: resolve the spec's Unknowns from the
    step's state, call the resource, keep what it returns under `key`."""

    resource: Resource
    key: str
    # create | update | tag | delete, or an operation of the kind's own, called as
    # (api, spec, found) and returning what exists after it (Secret.restore).
    action: str

    def __call__(self, api: Api, inventory: Inventory, spec: Spec | None = None,
                 diff: dict | None = None, tags: dict | None = None) -> None:
        found = inventory.found.get(self.key)
        if self.action == "create":
            inventory.found[self.key] = self.resource.create(api, resolve(spec, inventory))
        elif self.action == "update":
            inventory.found[self.key] = self.resource.update(
                api, resolve(spec, inventory), found, diff or {}, tags or {})
        elif self.action == "tag":
            inventory.found[self.key] = self.resource.tag(api, found, tags or {})
        elif self.action == "delete":
            self.resource.delete(api, found)
            inventory.found[self.key] = None
        else:
            inventory.found[self.key] = getattr(self.resource, self.action)(
                api, resolve(spec, inventory), found)


def resolve(value: Any, inventory: Inventory, step: str = "?") -> Any:
    """`value` with each Unknown that has a reference replaced by what it refers to."""
    if isinstance(value, Spec):
        step = (value.tags or {}).get(naming.STEP_TAG, step)
    if isinstance(value, Unknown):
        if value.ref is None:
            return value
        key, attribute = value.ref
        item = inventory.found.get(key)
        if item is None:
            raise StepFailed(step, key, f"needed its {attribute}, and it was not made first")
        return getattr(item, attribute)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {f.name: resolve(getattr(value, f.name), inventory, step)
                   for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changed)
    if isinstance(value, (set, frozenset)):
        return type(value)(resolve(item, inventory, step) for item in value)
    if isinstance(value, tuple):
        return tuple(resolve(item, inventory, step) for item in value)
    if isinstance(value, list):
        return [resolve(item, inventory, step) for item in value]
    if isinstance(value, dict):
        return {k: resolve(item, inventory, step) for k, item in value.items()}
    return value

