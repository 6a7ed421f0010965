"""Function packages: byte-identical builds, what goes in them, and that they import.

Every package here is built from a tree made in a temporary directory, except the tests
of the repository's own lambdas/ folder. The layer's pip build is in
tests/integration/test_layer_build.py; these tests run no pip and need no network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from runbook.functions import package
from runbook.errors import EXIT_BAD_INPUT, BadInput

HANDLER = """\
from helpers import NAME
from runbook.lambda_runtime import greeting


def handler(event, context):
    return greeting.greet(NAME)
"""

TREE = {
    "lambdas/hello/handler.py": HANDLER,
    "lambdas/hello/helpers.py": "NAME = 'lambda'\n",
    "lambdas/hello/data/template.txt": "Dear {name}\n",
    "lambdas/hello/__pycache__/handler.cpython-311.pyc": b"\x00compiled",
    "lambdas/hello/stale.pyc": b"\x00compiled",
    "lambdas/hello/.env": "SECRET=1\n",
    "lambdas/hello/.cache/x.py": "",
    "lambdas/hello/tests/test_handler.py": "def test(): pass\n",
    "lambdas/other/handler.py": "def handler(event, context):\n    return 'other'\n",
    "shared/__init__.py": '"""Shared."""\n',
    "shared/greeting.py": "def greet(name):\n    return f'hello {name}'\n",
    "shared/sub/__init__.py": "",
    "shared/sub/deep.py": "DEPTH = 2\n",
    "shared/__pycache__/greeting.cpython-311.pyc": b"\x00compiled",
    "shared/notes.md": "not code\n",
}

EXPECTED_FILES = (
    "data/template.txt",
    "handler.py",
    "helpers.py",
    "runbook/__init__.py",
    "runbook/lambda_runtime/__init__.py",
    "runbook/lambda_runtime/greeting.py",
    "runbook/lambda_runtime/sub/__init__.py",
    "runbook/lambda_runtime/sub/deep.py",
)


def make_tree(root: Path, files: dict = TREE, *, reverse: bool = False) -> Path:
    for name in sorted(files, reverse=reverse):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = files[name]
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def build(root: Path, name: str = "hello") -> package.Artifact:
    return package.build_function(name, lambdas_dir=root / "lambdas", shared_dir=root / "shared")


def extract(artifact: package.Artifact, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        archive.extractall(into)
    return into


def run_isolated(code: str, path: list[Path]) -> subprocess.CompletedProcess:
    """`code` in a Python that sees only `path`: -I -S, so no site-packages and not the
    editable runbook either; what imports comes from `path`."""
    setup = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", setup + code],
                           capture_output=True, text=True, timeout=60, cwd=path[0])


# -- deterministic bytes -----------------------------------------------------------------

def test_two_builds_of_the_same_tree_are_byte_identical(tmp_path):
    root = make_tree(tmp_path)
    assert build(root).data == build(root).data


def test_mtimes_modes_and_creation_order_do_not_change_the_bytes(tmp_path):
    first = make_tree(tmp_path / "a")
    old_umask = os.umask(0o077)
    try:
        second = make_tree(tmp_path / "b", reverse=True)
    finally:
        os.umask(old_umask)
    for path in second.rglob("*"):
        if path.is_file():
            os.utime(path, (1_900_000_000, 1_900_000_000))
    (second / "lambdas/hello/handler.py").chmod(0o755)
    assert build(first).data == build(second).data


def test_editing_a_handler_file_or_shared_code_changes_the_sha256(tmp_path):
    root = make_tree(tmp_path)
    before = build(root).sha256
    (root / "lambdas/hello/helpers.py").write_text("NAME = 'changed'\n")
    after_handler = build(root).sha256
    (root / "shared/greeting.py").write_text("def greet(name):\n    return name\n")
    after_shared = build(root).sha256
    assert len({before, after_handler, after_shared}) == 3


def test_sha256_is_base64_of_the_digest_as_lambda_reports_code_sha256(tmp_path):
    artifact = build(make_tree(tmp_path))
    assert artifact.sha256 == base64.b64encode(hashlib.sha256(artifact.data).digest()).decode()
    assert artifact.size == len(artifact.data)


def test_every_entry_has_the_fixed_date_mode_compression_and_no_extra_fields(tmp_path):
    artifact = build(make_tree(tmp_path))
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
        assert info.external_attr >> 16 == stat.S_IFREG | 0o644, info.filename
        assert info.create_system == 3, info.filename
        assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
        assert info.extra == b"", info.filename
        assert not info.is_dir()


# -- what goes in ------------------------------------------------------------------------

def test_package_holds_the_function_folder_at_the_root_and_the_shared_code(tmp_path):
    artifact = build(make_tree(tmp_path))
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        assert tuple(archive.namelist()) == EXPECTED_FILES
        assert archive.read("runbook/__init__.py") == b""
        assert archive.read("handler.py").decode() == HANDLER
    assert artifact.files == EXPECTED_FILES


def test_other_functions_and_non_python_shared_files_stay_out(tmp_path):
    files = build(make_tree(tmp_path)).files
    assert not any(f.endswith((".pyc", ".md")) or "__pycache__" in f or "/." in f
                   or f.startswith((".", "tests/")) for f in files)
    assert build(tmp_path, "other").files == ("handler.py",) + EXPECTED_FILES[3:]


def test_package_imports_in_a_python_that_sees_only_the_package(tmp_path):
    unpacked = extract(build(make_tree(tmp_path / "src")), tmp_path / "unpacked")
    result = run_isolated(
        "import handler, runbook.lambda_runtime.greeting as g, runbook.lambda_runtime.sub.deep as d\n"
        "print(handler.handler({}, None)); print(g.__file__); print(d.DEPTH)",
        [unpacked])
    assert result.returncode == 0, result.stderr
    said, greeting_file, depth = result.stdout.splitlines()
    assert said == "hello lambda"
    assert Path(greeting_file).is_relative_to(unpacked)
    assert depth == "2"


# -- errors ------------------------------------------------------------------------------

def test_missing_handler_is_a_package_error_naming_the_path(tmp_path):
    root = make_tree(tmp_path)
    with pytest.raises(package.PackageError) as raised:
        build(root, "absent")
    assert str(root / "lambdas/absent/handler.py") in str(raised.value)
    assert isinstance(raised.value, BadInput)
    assert raised.value.exit_code == EXIT_BAD_INPUT


def test_folder_without_handler_py_is_refused(tmp_path):
    root = make_tree(tmp_path, {**TREE, "lambdas/nohandler/main.py": "x = 1\n"})
    with pytest.raises(package.PackageError, match="nohandler/handler.py"):
        build(root, "nohandler")


@pytest.mark.parametrize("name", ["", "../hello", "hello/sub", ".hidden"])
def test_a_name_that_is_not_one_folder_is_refused(tmp_path, name):
    with pytest.raises(package.PackageError, match="one folder"):
        build(make_tree(tmp_path), name)


def test_a_function_file_that_would_replace_shared_code_is_refused(tmp_path):
    root = make_tree(tmp_path, {**TREE, "lambdas/hello/runbook/lambda_runtime/greeting.py": "x = 1\n"})
    with pytest.raises(package.PackageError, match="runbook/lambda_runtime/greeting.py"):
        build(root)


def test_without_a_checkout_the_error_says_to_install_editable(tmp_path, monkeypatch):
    monkeypatch.setattr(package, "REPO", tmp_path / "site-packages")
    with pytest.raises(package.PackageError, match=r"pip install -e \."):
        package.build_function("post_confirmation")


# -- the repository's own functions ------------------------------------------------------

REAL = package.function_names() if (package.REPO / "lambdas").is_dir() else ()


def test_function_names_lists_the_folders_with_a_handler(tmp_path):
    assert package.function_names(make_tree(tmp_path) / "lambdas") == ("hello", "other")


@pytest.mark.parametrize("name", REAL)
def test_real_function_builds_deterministically_and_imports(name, tmp_path):
    artifact = package.build_function(name)
    assert package.build_function(name).data == artifact.data
    assert "handler.py" in artifact.files and "runbook/__init__.py" in artifact.files
    assert {f"runbook/lambda_runtime/{p.name}" for p in package.RUNTIME_LIBRARY.glob("*.py")} <= set(artifact.files)
    unpacked = extract(artifact, tmp_path / "unpacked")
    # Third-party packages (psycopg, which the layer provides, and boto3, which the
    # runtime provides) come from site-packages, after the package.
    site = sysconfig.get_paths()["purelib"]
    result = run_isolated(
        f"sys.path.append({site!r})\n"
        "import handler, runbook\n"
        "assert callable(handler.handler)\n"
        "print(runbook.__file__)", [unpacked])
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(unpacked)


# -- the layer's identity (no pip) -------------------------------------------------------

PINS = "psycopg[binary]==3.3.9\npsycopg-binary==3.3.9\n"


def test_layer_description_round_trips_its_content_hash():
    digest = hashlib.sha256(b"x").hexdigest()
    assert package.content_hash_of(package.layer_description(digest)) == digest
    assert package.content_hash_of("psycopg layer built by hand") is None
    assert package.content_hash_of("") is None
    assert package.content_hash_of(None) is None


def test_layer_content_hash_follows_pins_and_runtime_but_not_comments(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(PINS)
    base = package.layer_content_hash("python3.11", requirements=requirements)
    assert package.layer_content_hash("python3.12", requirements=requirements) != base
    requirements.write_text("# the database driver\n\n" + PINS.replace("\n", "  # pinned\n"))
    assert package.layer_content_hash("python3.11", requirements=requirements) == base
    requirements.write_text(PINS.replace("3.3.9", "3.3.8"))
    assert package.layer_content_hash("python3.11", requirements=requirements) != base
    assert len(base) == 64 and int(base, 16) >= 0


@pytest.mark.parametrize("line", ["psycopg>=3.1", "psycopg", "psycopg==3.*",
                                  "-e git+https://example.com/x", "--index-url http://x"])
def test_a_requirement_that_is_not_an_exact_pin_is_refused_with_its_line(tmp_path, line):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{PINS}{line}\n")
    with pytest.raises(package.PackageError, match=r"requirements.txt:3: .*pin an exact"):
        package.layer_content_hash("python3.11", requirements=requirements)


@pytest.mark.parametrize("runtime", ["nodejs20.x", "python2.7", "3.11", ""])
def test_a_runtime_that_is_not_python3_is_refused(tmp_path, runtime):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(PINS)
    with pytest.raises(package.PackageError, match="not a Lambda Python runtime"):
        package.layer_content_hash(runtime, requirements=requirements)


def test_missing_requirements_file_is_a_package_error_naming_it(tmp_path):
    with pytest.raises(package.PackageError, match="requirements.txt does not exist"):
        package.build_layer("python3.11", requirements=tmp_path / "requirements.txt",
                            cache_dir=tmp_path / "cache")


def test_repository_requirements_pin_the_handlers_dependencies():
    pinned = package.layer_content_hash("python3.11")  # parses and validates every line
    names = {line.split("==")[0].split("[")[0].lower()
             for _, line in package._requirement_lines(package.default_requirements())}
    assert {"psycopg", "psycopg-binary", "typing-extensions", "libpass", "bcrypt"} <= names
    assert len(pinned) == 64


def cached_dependencies(tmp_path, monkeypatch) -> tuple[Path, str, Path]:
    """(requirements, their content hash, the cache entry) for PINS, with pip unable to
    find anything (no index, no links, no config), so that only the cache can answer."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(PINS)
    digest = package.layer_content_hash("python3.11", requirements=requirements)
    entry = tmp_path / "cache" / f"{digest}.zip"
    entry.parent.mkdir()
    entry.write_bytes(package._zip({"python/dep/__init__.py": b"VALUE = 1\n"}))
    return requirements, digest, entry


def test_a_cache_entry_is_returned_without_building(tmp_path, monkeypatch):
    requirements, digest, entry = cached_dependencies(tmp_path, monkeypatch)
    built = package.build_layer("python3.11", requirements=requirements,
                                cache_dir=tmp_path / "cache")
    assert built.cached is True
    assert built.data == entry.read_bytes()
    assert built.files == ("python/dep/__init__.py",)
    assert built.path == entry and built.content_hash == digest


def test_the_cache_defaults_to_runbook_cache_dir_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_CACHE_DIR", str(tmp_path / "rb"))
    assert package.default_cache_dir() == tmp_path / "rb" / "layers"
    monkeypatch.delenv("RUNBOOK_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert package.default_cache_dir() == tmp_path / "home" / ".cache" / "runbook" / "layers"


# -- the RDS CA bundle in the layer ---------------------------------------------------------

def test_the_layer_carries_the_ca_bundle_and_its_hash_follows_the_bundle(tmp_path, monkeypatch):
    from runbook.database import rds_ca
    from tests.conftest import TEST_CA_BUNDLE

    requirements, deps, entry = cached_dependencies(tmp_path, monkeypatch)
    bundle = rds_ca.from_file(TEST_CA_BUNDLE, "test")

    built = package.build_layer("python3.11", requirements=requirements,
                                cache_dir=tmp_path / "cache", ca_bundle=bundle)

    assert built.cached is True and built.path == entry  # no pip run for the bundle
    assert built.files == ("python/dep/__init__.py", "rds-ca/global-bundle.pem")
    with zipfile.ZipFile(io.BytesIO(built.data)) as archive:
        assert archive.read("rds-ca/global-bundle.pem") == TEST_CA_BUNDLE.read_bytes()
        info = archive.getinfo("rds-ca/global-bundle.pem")
        assert (info.date_time, info.external_attr >> 16) == ((1980, 1, 1, 0, 0, 0),
                                                               stat.S_IFREG | 0o644)
    assert rds_ca.LAYER_PATH == "/opt/" + rds_ca.LAYER_ENTRY  # where Lambda unpacks it
    assert built.content_hash == package.layer_content_hash(
        "python3.11", requirements=requirements, ca_bundle_sha256=bundle.sha256) != deps
    again = package.build_layer("python3.11", requirements=requirements,
                                cache_dir=tmp_path / "cache", ca_bundle=bundle)
    assert again.data == built.data  # byte-identical: the same CodeSha256
    other = tmp_path / "other.pem"
    other.write_bytes(TEST_CA_BUNDLE.read_bytes() + TEST_CA_BUNDLE.read_bytes())
    rebuilt = package.build_layer("python3.11", requirements=requirements,
                                  cache_dir=tmp_path / "cache",
                                  ca_bundle=rds_ca.from_file(other, "test"))
    assert rebuilt.content_hash != built.content_hash  # a new bundle is a new layer version
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [entry.name]


def test_a_file_that_is_not_a_pem_bundle_is_refused_naming_its_source(tmp_path):
    from runbook.database import rds_ca
    from runbook.errors import BadInput

    text = tmp_path / "bundle.pem"
    text.write_text("not a certificate\n")
    with pytest.raises(BadInput, match="database.ca_bundle: .*holds no PEM certificate"):
        rds_ca.from_file(text, "database.ca_bundle")
    with pytest.raises(BadInput, match="database.ca_bundle: cannot read"):
        rds_ca.from_file(tmp_path / "missing.pem", "database.ca_bundle")
