"""A Lambda layer version: the functions' third-party dependencies and the RDS CA bundle.

Layer versions cannot change: a new one is published when the content hash of what the
layer is built from (runbook.functions.package.layer_content_hash) differs from the
hash the latest version's description records. Publishing builds the layer (from the
cache, or with pip) only then.

A layer version carries no tags: what runbook published is told by its description
(package.layer_description), and teardown deletes a layer's versions that have it
(`versions`), each by name and number. A function that uses a deleted version keeps
working: Lambda keeps a copy for the functions that already use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from runbook.aws.api import Api, or_none, pages
from runbook.database.rds_ca import CaBundle
from runbook.engine.plan import Change
from runbook.functions import package
from runbook.resources.base import Apply, DeleteOptions, Found, Resource, Spec


@dataclass(frozen=True)
class LayerSpec(Spec):
    runtime: str = ""
    content_hash: str = ""              # hex sha256 of what the layer is built from
    ca_bundle: CaBundle | None = None


@dataclass
class LayerFound(Found):
    """`id` is the version's ARN (arn:aws:lambda:<region>:<account>:layer:<name>:<number>);
    a layer version carries no tags."""

    content_hash: str | None = None

    @property
    def name(self) -> str:
        """The layer's name, from the ARN."""
        return self.id.split(":")[6]

    @property
    def version(self) -> int:
        """The version's number, from the ARN."""
        return int(self.id.rsplit(":", 1)[1])


class LayerVersion(Resource[LayerSpec, LayerFound]):
    kind, service, plural = "lambda:layer-version", "lambda", "layer versions"
    label_id = False

    def __init__(self, say: Callable[[str], None] = lambda text: None):
        self.say = say                  # reports how the layer was built

    def find(self, api: Api, spec: LayerSpec) -> LayerFound | None:
        """The latest version, when it was built from the same content."""
        versions = pages(api.client("lambda"), "list_layer_versions", "LayerVersions",
                         LayerName=spec.name, CompatibleRuntime=spec.runtime)
        if not versions:
            return None
        latest = max(versions, key=lambda v: v["Version"])
        content = package.content_hash_of(latest.get("Description", ""))
        if content != spec.content_hash:
            return None
        return LayerFound(latest["LayerVersionArn"], {}, content)

    def summary(self, spec: LayerSpec) -> dict:
        bundle = spec.ca_bundle
        return {"runtime": spec.runtime, "content": f"sha256:{spec.content_hash[:12]}",
                "built_with": f"pip --platform {package.PLATFORM}",
                "ca_bundle": f"sha256:{bundle.sha256[:12]} ({bundle.source})"}

    def plan(self, spec: LayerSpec, found: LayerFound | None, key: str) -> list[Change]:
        if found is not None:
            return []
        return [Change("create", self.label(spec), "publish_layer", {"spec": spec},
                       self.summary(spec), run=Apply(self, key, "create"))]

    def create(self, api: Api, spec: LayerSpec) -> LayerFound:
        built = package.build_layer(spec.runtime, ca_bundle=spec.ca_bundle)
        self.say(f"  layer {'from cache' if built.cached else 'built'}: "
                 f"{built.size / 1e6:.1f} MB")
        published = api.client("lambda").publish_layer_version(
            LayerName=spec.name, Description=package.layer_description(spec.content_hash),
            Content={"ZipFile": built.data}, CompatibleRuntimes=[spec.runtime],
            CompatibleArchitectures=["x86_64"])
        return LayerFound(published["LayerVersionArn"], {}, spec.content_hash)

    # -- teardown --------------------------------------------------------------------

    def versions(self, api: Api, layer_name: str) -> list[LayerFound]:
        """Read only: every version of layer `layer_name`, for any runtime, whose
        description is runbook's (it records a content hash), oldest first. A version
        published under the name with another description is not runbook's, and is
        left out. `tags` are empty: the description is what marks runbook's versions.
        [] for a layer that does not exist."""
        listed = or_none(lambda: pages(api.client("lambda"), "list_layer_versions",
                                       "LayerVersions", LayerName=layer_name))
        ours = [(v, package.content_hash_of(v.get("Description"))) for v in listed or ()]
        return [LayerFound(v["LayerVersionArn"], {}, content)
                for v, content in sorted(ours, key=lambda pair: pair[0]["Version"])
                if content is not None]

    def delete(self, api: Api, found: LayerFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteLayerVersion. A version already gone is done, and costs no write."""
        lam = api.client("lambda")
        if or_none(lambda: lam.get_layer_version(LayerName=found.name,
                                                 VersionNumber=found.version)) is None:
            return
        or_none(lambda: lam.delete_layer_version(LayerName=found.name,
                                                 VersionNumber=found.version))
