"""Lambda packages that are byte-identical when their code is, and the dependency layer.

Lambda reports a function's `CodeSha256`, the base64 SHA-256 of the zip it runs. When a
local build of unchanged code gives the same bytes, comparing the two is enough to know
that nothing needs uploading. Zip files carry timestamps, permissions and an entry order
taken from the file system, so the builder fixes all of them: entries sorted by name,
dated 1980-01-01 (the earliest date a zip can hold), mode 0644, made "on Unix", deflated at
one level, with no extra fields. A file's mtime, the umask or the order a directory
lists its files in then change nothing.

A function package is `lambdas/<name>/` at the zip root, plus `runbook/lambda_runtime/` under
`runbook/` (with an empty `runbook/__init__.py`, not the real one), so that a handler
imports `from runbook.lambda_runtime import db` in Lambda as it does here.

Third-party dependencies (psycopg, passlib, bcrypt) contain compiled code, so they go
in a layer built by pip for Lambda's platform rather than for this machine: manylinux2014
x86_64 (glibc 2.17; the python3.11 runtime runs on Amazon Linux 2, glibc 2.26, which
cannot load manylinux_2_28 wheels). `lambdas/requirements.txt` pins every distribution
exactly, so its contents, the runtime and the platform decide the layer: their hash keys
a local cache (the layer is built once per hash) and goes into the layer version's
description (a new version is published only when that hash changes).

The layer also carries the RDS CA bundle (runbook.database.rds_ca) at rds-ca/global-bundle.pem,
/opt/rds-ca/global-bundle.pem in Lambda, which the handlers verify the cluster with. It is
added to the cached dependencies when the layer is assembled, and its sha256 is part of
the layer's content hash: a new bundle is a new layer version, but no new pip build.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from runbook.errors import BadInput
from runbook.files import cache_root, write_atomically

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LIBRARY = Path(__file__).resolve().parents[1] / "lambda_runtime"

# What pip builds the layer for. pip expands manylinux2014 to manylinux2010 and
# manylinux1, but not to the PEP 600 spelling, so a wheel tagged only
# manylinux_2_17_x86_64 would be missed without the second tag. Both mean glibc 2.17.
PLATFORM = "manylinux2014_x86_64"
PLATFORM_TAGS = (PLATFORM, "manylinux_2_17_x86_64")
# Part of every layer's content hash: bump it when the way a layer is built changes
# (pip options, what the zip leaves out), so that caches and published layers follow.
LAYER_FORMAT = 1
LAYER_DESCRIPTION = "runbook dependencies sha256:"

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
COMPRESS_LEVEL = 6
UNIX = 3  # ZipInfo.create_system; Python writes 0 on Windows, which changes the bytes

PIP_ERROR_LINES = 12
RUNTIME = re.compile(r"^python(3\.\d+)$")
# name[extras]==version and nothing else: the cache key assumes the file decides the layer.
PIN = re.compile(r"""^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)
                     (\[[A-Za-z0-9._,\s-]+\])?
                     \s*==\s*[A-Za-z0-9.+!_-]+$""", re.VERBOSE)


class PackageError(BadInput):
    """A function or the layer cannot be built; the message says what to change."""


@dataclass(frozen=True)
class Artifact:
    data: bytes = field(repr=False)
    sha256: str                        # base64 of the SHA-256 digest, as CodeSha256 is
    files: tuple[str, ...] = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class LayerArtifact(Artifact):
    content_hash: str       # hex sha256 of what the layer is built from
    cached: bool            # read from the cache: pip did not run
    path: Path              # the cache entry


# -- function packages -------------------------------------------------------------------

def build_function(name: str, *, lambdas_dir: Path | None = None,
                   shared_dir: Path | None = None) -> Artifact:
    """The deterministic zip of `lambdas/<name>/` with `runbook/lambda_runtime/` beside it."""
    lambdas_dir = Path(lambdas_dir) if lambdas_dir is not None else default_lambdas_dir()
    shared_dir = Path(shared_dir) if shared_dir is not None else RUNTIME_LIBRARY
    if not name or name != Path(name).name or name.startswith("."):
        raise PackageError(f"function {name!r}: a function is one folder lambdas/<name>/; "
                           "give its folder name")
    folder = lambdas_dir / name
    handler = folder / "handler.py"
    if not handler.is_file():
        raise PackageError(f"{handler} does not exist: function {name!r} needs "
                           f"{folder}/handler.py defining handler(event, context)")
    if not shared_dir.is_dir():
        raise PackageError(f"{shared_dir} does not exist: the shared code every function "
                           "package includes is missing")
    entries = dict(_read_tree(folder, _not_function_code))
    shared = {"runbook/__init__.py": b""}
    for path, data in _read_tree(shared_dir, _not_function_code):
        if path.endswith(".py"):
            shared[f"runbook/lambda_runtime/{path}"] = data
    clashes = sorted(set(entries) & set(shared))
    if clashes:
        raise PackageError(f"{folder} has {', '.join(clashes)}, which would replace the shared "
                           "code of the same name in the package; rename or remove it")
    entries.update(shared)
    data = _zip(entries)
    return Artifact(data, code_sha256(data), tuple(sorted(entries)))


def function_names(lambdas_dir: Path | None = None) -> tuple[str, ...]:
    """The functions in `lambdas/`: each folder with a handler.py, sorted."""
    lambdas_dir = Path(lambdas_dir) if lambdas_dir is not None else default_lambdas_dir()
    return tuple(sorted(p.parent.name for p in lambdas_dir.glob("*/handler.py")
                        if not p.parent.name.startswith(".")))


def default_lambdas_dir() -> Path:
    """The repository's `lambdas/`, which only an editable install can see."""
    path = REPO / "lambdas"
    if not path.is_dir():
        raise PackageError(f"{path} does not exist: runbook packages the Lambda functions from "
                           "its repository, and this install has no checkout beside it. "
                           "Install runbook from the repository with `pip install -e .`")
    return path


# -- the dependency layer ----------------------------------------------------------------

def build_layer(runtime: str, *, requirements: Path | None = None,
                cache_dir: Path | None = None, ca_bundle=None) -> LayerArtifact:
    """The dependency layer for `runtime`: from the cache, or built by pip and cached,
    with `ca_bundle` (a runbook.database.rds_ca.CaBundle) added at rds_ca.LAYER_ENTRY.

    An entry is written to a temporary file and renamed into place, so an interrupted
    build leaves no entry and the next call builds again. The cache holds the
    dependencies only (keyed by their hash), so a bundle of its own costs no pip run.
    """
    requirements = Path(requirements) if requirements is not None else default_requirements()
    deps_hash = layer_content_hash(runtime, requirements=requirements)
    content_hash = layer_content_hash(runtime, requirements=requirements,
                                      ca_bundle_sha256=ca_bundle and ca_bundle.sha256)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"{deps_hash}.zip"
    cached = _read_cached(path)
    if cached is not None:
        data, files = _with_bundle(*cached, ca_bundle)
        return LayerArtifact(data, code_sha256(data), files, content_hash, True, path)
    with tempfile.TemporaryDirectory(prefix="runbook-layer-") as work:
        target = Path(work) / "python"
        _pip_install(runtime, requirements, target)
        _check_pinned(requirements, target)
        entries = {f"python/{name}": content
                   for name, content in _read_tree(target, _not_layer_content)}
    data = _zip(entries)
    write_atomically(path, data)
    data, files = _with_bundle(data, tuple(sorted(entries)), ca_bundle)
    return LayerArtifact(data, code_sha256(data), files, content_hash, False, path)


def layer_content_hash(runtime: str, *, requirements: Path | None = None,
                       ca_bundle_sha256: str | None = None) -> str:
    """Hex sha256 of what decides the layer: the pins, the runtime, the platform,
    LAYER_FORMAT and the CA bundle's sha256 (when the layer carries one). Comments and
    blank lines in the requirements file do not count."""
    requirements = Path(requirements) if requirements is not None else default_requirements()
    python_version(runtime)
    pins = "\n".join(line for _, line in _requirement_lines(requirements))
    text = (f"runbook layer format {LAYER_FORMAT}\nruntime {runtime}\n"
            f"platform {' '.join(PLATFORM_TAGS)}\n{pins}\n")
    if ca_bundle_sha256:
        text += f"rds ca bundle sha256 {ca_bundle_sha256}\n"
    return hashlib.sha256(text.encode()).hexdigest()


def _with_bundle(data: bytes, files: tuple[str, ...], ca_bundle) -> tuple[bytes, tuple[str, ...]]:
    """The dependencies' zip with the CA bundle appended as one more fixed entry (same
    bytes for the same two inputs)."""
    if ca_bundle is None:
        return data, files
    from runbook.database.rds_ca import LAYER_ENTRY

    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(_entry_info(LAYER_ENTRY), ca_bundle.data,
                         compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue(), tuple(sorted((*files, LAYER_ENTRY)))


def layer_description(content_hash: str) -> str:
    """The layer version's description, which records what it was built from."""
    return LAYER_DESCRIPTION + content_hash


def content_hash_of(description: str | None) -> str | None:
    """The content hash `layer_description` put in `description`, or None."""
    match = re.fullmatch(re.escape(LAYER_DESCRIPTION) + "([0-9a-f]{64})",
                         (description or "").strip())
    return match.group(1) if match else None


def python_version(runtime: str) -> str:
    """'python3.11' -> '3.11'."""
    match = RUNTIME.match(runtime or "")
    if not match:
        raise PackageError(f"runtime {runtime!r} is not a Lambda Python runtime; "
                           "expected one such as python3.11")
    return match.group(1)


def default_requirements() -> Path:
    return default_lambdas_dir() / "requirements.txt"


def default_cache_dir() -> Path:
    """$RUNBOOK_CACHE_DIR/layers, else $XDG_CACHE_HOME/runbook/layers (~/.cache)."""
    return cache_root() / "layers"


def _pip_install(runtime: str, requirements: Path, target: Path) -> None:
    """pip installs the pinned distributions into `target` as Lambda's platform needs them.

    Dependencies are resolved (no --no-deps), so that a missing pin shows up as an extra
    distribution in `_check_pinned` rather than as an ImportError in Lambda.
    """
    version = python_version(runtime)
    command = [sys.executable, "-m", "pip", "install", "--target", str(target),
               "--requirement", str(requirements), "--only-binary=:all:",
               "--implementation", "cp", "--python-version", version,
               "--abi", f"cp{version.replace('.', '')}", "--abi", "abi3", "--abi", "none",
               "--no-compile", "--no-input", "--disable-pip-version-check",
               "--no-warn-script-location", "--progress-bar", "off"]
    for tag in PLATFORM_TAGS:
        command += ["--platform", tag]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        tail = "\n".join("  " + line for line in lines[-PIP_ERROR_LINES:])
        hint = ""
        if "No matching distribution" in result.stderr:
            hint = (f"\nA pinned version may have no wheel for {runtime} on {PLATFORM} "
                    "(glibc 2.17): pick one that publishes manylinux2014 / manylinux_2_17 "
                    f"x86_64 wheels for cp{version.replace('.', '')}, or check the network.")
        raise PackageError(f"pip could not build the dependency layer for {runtime} from "
                           f"{requirements} (exit {result.returncode}):\n{tail}{hint}")


def _check_pinned(requirements: Path, target: Path) -> None:
    """Every distribution pip installed must be pinned, or the cache key would lie."""
    pinned = {_canonical(PIN.match(line)["name"]) for _, line in _requirement_lines(requirements)}
    installed = {}
    for metadata in target.glob("*.dist-info/METADATA"):
        fields = dict(re.findall(r"^(Name|Version): (.+)$", metadata.read_text("utf-8"), re.M))
        installed[_canonical(fields.get("Name", metadata.parent.name))] = fields.get("Version")
    extra = sorted(f"{name}=={version}" for name, version in installed.items()
                   if name not in pinned)
    if extra:
        raise PackageError(f"pip also installed {', '.join(extra)}, which {requirements} does "
                           "not pin. Add exact pins for them, so that the file decides the layer.")


def _requirement_lines(requirements: Path) -> list[tuple[int, str]]:
    """(line number, requirement) for each pin; comments and blank lines dropped."""
    try:
        text = requirements.read_text("utf-8")
    except FileNotFoundError:
        raise PackageError(f"{requirements} does not exist: the dependency layer is built "
                           "from it (one name==version per line)") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not PIN.match(line):
            raise PackageError(f"{requirements}:{number}: {line!r}: pin an exact version "
                               "(name==version, extras allowed); the layer is cached and "
                               "published by the file's contents, so ranges would go stale")
        lines.append((number, line))
    if not lines:
        raise PackageError(f"{requirements} pins no distribution")
    return lines


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_cached(path: Path) -> tuple[bytes, tuple[str, ...]] | None:
    """A cache entry's bytes and names, or None if there is none or it is not a zip."""
    try:
        data = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return data, tuple(archive.namelist())
    except (FileNotFoundError, zipfile.BadZipFile):
        return None




# -- deterministic zips ------------------------------------------------------------------

def _compiled(parts: tuple[str, ...]) -> bool:
    return "__pycache__" in parts or parts[-1].endswith((".pyc", ".pyo"))


def _not_function_code(parts: tuple[str, ...]) -> bool:
    """Left out of a function package: compiled files, dot-files, tests."""
    return _compiled(parts) or any(p.startswith(".") or p == "tests" for p in parts)


def _not_layer_content(parts: tuple[str, ...]) -> bool:
    """Left out of the layer: compiled files, and the console scripts pip --target puts
    in bin/ (their #! names this machine's Python, and nothing in a layer runs them).
    Dot-folders and tests stay: older auditwheel put a wheel's libraries in `.libs/`."""
    return _compiled(parts) or parts[0] == "bin"


def _read_tree(root: Path, skip) -> Iterable[tuple[str, bytes]]:
    """(path relative to root with '/', contents) for every file `skip` keeps, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root).parts
        dirs[:] = [d for d in dirs if not skip((*relative, d))]
        found += ["/".join((*relative, name)) for name in files if not skip((*relative, name))]
    for name in sorted(found):
        yield name, (root / name).read_bytes()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            archive.writestr(_entry_info(name), entries[name], compress_type=zipfile.ZIP_DEFLATED,
                             compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()


def _entry_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.create_system = UNIX
    info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def code_sha256(data: bytes) -> str:
    """base64(sha256(data)), the form of Lambda's CodeSha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
