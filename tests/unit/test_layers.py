"""The layout's rules, read from the source (every import, at module level or inside a
function): no import cycle in runbook/, the engine knows no step, sandbox or output
module, and the library shipped inside every Lambda zip imports only the standard
library and psycopg."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import runbook

ROOT = Path(runbook.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every module `name` imports, as written (absolute), including `from x import y`
    where y is a submodule."""
    path = MODULES[name]
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in MODULES)
    return found


def runbook_imports(name: str) -> set[str]:
    return {m for m in imports(name) if m in MODULES and m != name}


def test_the_checker_sees_the_imports_it_judges():
    """A rule over an empty graph would pass whatever the code does."""
    assert len(MODULES) > 40
    assert "runbook.engine.plan" in runbook_imports("runbook.engine.runner")
    assert "runbook.aws.naming" in runbook_imports("runbook.steps.network")
    # A function-level import counts too (Runner.upstream's siblings used to hide one).
    assert "runbook.functions.invoke" in runbook_imports("runbook.steps")


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = {name: runbook_imports(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycle_in_runbook():
    assert cycles() == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("runbook.engine")))
def test_the_engine_imports_no_step_sandbox_or_output_module(name):
    forbidden = ("runbook.steps", "runbook.sandbox", "runbook.output")
    assert sorted(m for m in runbook_imports(name) if m.startswith(forbidden)) == []


# What the library may import besides the standard library: psycopg, which the layer
# carries, and boto3 with its botocore, which the Lambda runtime provides
# (runbook.lambda_runtime.db signs an RDS IAM token with it; SigV4 is not hand-written;
# runbook.lambda_runtime.registration sets its client's timeouts with botocore's Config),
# and passlib (libpass), which the layer carries for the UserMigration trigger
# (runbook.lambda_runtime.migration).
RUNTIME_PROVIDED = {"psycopg", "boto3", "botocore", "passlib"}


@pytest.mark.parametrize("name", sorted(m for m in MODULES
                                        if m.startswith("runbook.lambda_runtime")))
def test_the_lambda_runtime_library_imports_only_the_standard_library_and_psycopg(name):
    outside = {m.split(".")[0] for m in imports(name)} - {"runbook"}
    assert sorted(m for m in outside
                  if m not in sys.stdlib_module_names and m not in RUNTIME_PROVIDED) == []
    assert sorted(m for m in imports(name) if m.startswith("runbook")
                  and not m.startswith("runbook.lambda_runtime")) == []
