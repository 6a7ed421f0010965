"""The real dependency layer, built by pip from PyPI for Lambda's platform.

Needs the network (PyPI). Each build goes to a temporary cache directory, never the
user's. To prove that a cached build runs no pip, pip is given an environment in which
it can find nothing (no index, empty find-links, no config files): a build that ran pip
would fail, and one test shows that it does.
"""

from __future__ import annotations

import io
import os
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runbook.functions import package

pytestmark = pytest.mark.slow

# The python3.11 runtime runs on Amazon Linux 2: glibc 2.26.
LAMBDA_GLIBC = (2, 26)
ELF_X86_64 = 0x3E


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("layers")


@pytest.fixture(scope="module")
def layer(cache) -> package.LayerArtifact:
    return package.build_layer("python3.11", cache_dir=cache)


@pytest.fixture
def pip_finds_nothing(tmp_path, monkeypatch):
    links = tmp_path / "no-links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def entries(artifact) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        return {info.filename: info for info in archive.infolist()}


def read(artifact, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        return archive.read(name)


def glibc_needed(elf: bytes) -> tuple[int, ...]:
    """The newest GLIBC_x.y symbol version a shared object names (its requirement)."""
    versions = [tuple(int(n) for n in v.split(b"."))
                for v in re.findall(rb"GLIBC_(2\.\d+(?:\.\d+)?)\x00", elf)]
    return max(versions, default=(0,))


def test_layer_holds_the_handlers_dependencies_under_python(layer):
    names = entries(layer)
    for top in ("psycopg", "psycopg_binary", "passlib", "bcrypt"):
        assert any(n.startswith(f"python/{top}/") for n in names), top
    assert "python/typing_extensions.py" in names
    assert all(n.startswith("python/") for n in names)
    assert not layer.cached
    assert layer.files == tuple(sorted(names))


def test_layer_has_no_compiled_python_and_fixed_entries(layer):
    for name, info in entries(layer).items():
        assert not name.endswith(".pyc") and "__pycache__" not in name, name
        assert info.date_time == (1980, 1, 1, 0, 0, 0), name
        assert info.external_attr >> 16 & 0o777 == 0o644, name
        assert info.extra == b"", name


def test_compiled_code_is_manylinux2014_x86_64_and_loads_on_lambda_glibc(layer):
    shared_objects = [n for n in entries(layer) if re.search(r"\.so(\.|$)", n)]
    assert any(n.startswith("python/psycopg_binary/") and "cpython-311-x86_64-linux-gnu" in n
               for n in shared_objects)
    assert any(n.startswith("python/bcrypt/") for n in shared_objects)
    for name in shared_objects:
        elf = read(layer, name)
        assert elf[:4] == b"\x7fELF", name
        assert int.from_bytes(elf[18:20], "little") == ELF_X86_64, name
        assert glibc_needed(elf) <= LAMBDA_GLIBC, (name, glibc_needed(elf))
    for dist in ("psycopg_binary-", "bcrypt-"):
        wheel = next(n for n in entries(layer) if n.startswith(f"python/{dist}")
                     and n.endswith(".dist-info/WHEEL"))
        tags = re.findall(r"^Tag: (.+)$", read(layer, wheel).decode(), re.M)
        assert any(t.endswith(("manylinux2014_x86_64", "manylinux_2_17_x86_64")) for t in tags)


def test_second_build_is_cached_identical_and_runs_no_pip(layer, cache, tmp_path,
                                                         pip_finds_nothing):
    before = layer.path.stat()
    again = package.build_layer("python3.11", cache_dir=cache)
    after = layer.path.stat()
    assert again.cached is True
    assert again.data == layer.data and again.sha256 == layer.sha256
    assert again.path == layer.path
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # The same call without a cache entry does run pip, which fails in this environment.
    with pytest.raises(package.PackageError):
        package.build_layer("python3.11", cache_dir=tmp_path / "empty")


def test_pip_failure_is_a_package_error_with_pips_words_and_leaves_no_entry(tmp_path,
                                                                             pip_finds_nothing):
    cache = tmp_path / "cache"
    with pytest.raises(package.PackageError) as raised:
        package.build_layer("python3.11", cache_dir=cache)
    message = str(raised.value)
    assert "pip could not build the dependency layer for python3.11" in message
    assert "No matching distribution found" in message
    assert "Traceback" not in message
    assert not cache.exists() or not any(cache.iterdir())


def test_a_second_cold_build_gives_the_same_bytes(layer, tmp_path):
    rebuilt = package.build_layer("python3.11", cache_dir=tmp_path)
    assert rebuilt.cached is False
    assert rebuilt.data == layer.data


def test_python312_is_another_layer_with_cp312_code(layer, cache):
    other = package.build_layer("python3.12", cache_dir=cache)
    assert other.content_hash != layer.content_hash
    assert other.path != layer.path and not other.cached
    assert any(n.startswith("python/psycopg_binary/") and "cpython-312-x86_64" in n
               for n in other.files)


def test_an_unpinned_dependency_is_refused(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("psycopg==3.3.9\n")  # psycopg needs typing-extensions
    with pytest.raises(package.PackageError, match=r"typing-extensions==[\d.]+, which .* not pin"):
        package.build_layer("python3.11", requirements=requirements, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_a_version_without_a_wheel_for_the_platform_says_so(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("psycopg-binary==3.0.0\n")  # no cp311 wheel was ever published
    with pytest.raises(package.PackageError, match="manylinux2014 / manylinux_2_17"):
        package.build_layer("python3.11", requirements=requirements, cache_dir=tmp_path / "c")


RUNS_HERE = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64" or sys.version_info[:2] != (3, 11),
    reason="the layer's compiled code runs on Linux x86_64 with Python 3.11")


def run_as_in_lambda(code: str, path: list[Path]) -> subprocess.CompletedProcess:
    """`code` in a Python that sees only `path`, as Lambda puts the function's folder and
    /opt/python (the layer) on sys.path: -I -S, so neither site-packages nor the editable
    runbook can supply an import."""
    setup = "import sys; sys.path[:0] = sys.argv[1:]\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", setup + code, *map(str, path)],
                          capture_output=True, text=True, timeout=120)


def extract(artifact, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        archive.extractall(into)
    return into


@RUNS_HERE
def test_layer_imports_and_hashes_without_site_packages(layer, tmp_path):
    opt = extract(layer, tmp_path / "opt") / "python"
    result = run_as_in_lambda(
        "import bcrypt, psycopg\n"
        "from passlib.hash import bcrypt as scheme\n"
        "assert scheme.verify('secret', scheme.hash('secret'))\n"
        "print(psycopg.pq.__impl__, psycopg.__file__)", [opt])
    assert result.returncode == 0, result.stderr
    impl, where = result.stdout.split()
    assert impl == "binary"
    assert Path(where).is_relative_to(opt)


REAL_FUNCTIONS = package.function_names() if (package.REPO / "lambdas").is_dir() else ()


@RUNS_HERE
@pytest.mark.parametrize("name", REAL_FUNCTIONS)
def test_real_function_imports_with_only_its_package_and_the_layer(name, layer, tmp_path):
    function = extract(package.build_function(name), tmp_path / "task")
    opt = extract(layer, tmp_path / "opt") / "python"
    result = run_as_in_lambda(
        "import handler, psycopg, runbook.lambda_runtime.db\n"
        "assert callable(handler.handler)\n"
        "print(runbook.__file__)", [function, opt])
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(function)


def test_the_layer_with_the_rds_ca_bundle_reuses_the_cached_dependencies(layer, cache,
                                                                          pip_finds_nothing):
    from runbook.database import rds_ca
    from tests.conftest import TEST_CA_BUNDLE

    bundle = rds_ca.from_file(TEST_CA_BUNDLE, "a local ca_bundle")
    with_bundle = package.build_layer("python3.11", cache_dir=cache, ca_bundle=bundle)
    assert with_bundle.cached and with_bundle.path == layer.path  # pip could find nothing
    assert read(with_bundle, rds_ca.LAYER_ENTRY) == TEST_CA_BUNDLE.read_bytes()
    assert set(with_bundle.files) == set(layer.files) | {rds_ca.LAYER_ENTRY}
    assert with_bundle.content_hash != layer.content_hash
    assert package.build_layer("python3.11", cache_dir=cache, ca_bundle=bundle).data == \
        with_bundle.data
