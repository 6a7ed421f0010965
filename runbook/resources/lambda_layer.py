"""A Lambda layer version: the functions' third-party dependencies and the RDS CA bundle.

Layer versions cannot change: a new one is published when the content hash of what the
layer is built from (runbook.functions.package.layer_content_hash) differs from the
hash the latest version's description records. Publishing builds the layer (from the
cache, or with pip) only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from runbook.aws.api import Api, pages
from runbook.database.rds_ca import CaBundle
from runbook.engine.plan import Change
from runbook.functions import package
from runbook.resources.base import Apply, Found, Resource, Spec


@dataclass(frozen=True)
class LayerSpec(Spec):
    runtime: str = ""
    content_hash: str = ""              # hex sha256 of what the layer is built from
    ca_bundle: CaBundle | None = None


@dataclass
class LayerFound(Found):
    """`id` is the version's ARN; a layer version carries no tags."""

    content_hash: str | None = None


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
