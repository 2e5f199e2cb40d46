"""The package layout holds: layers run one way, no import cycles, the spec is a leaf,
importing the public API has no side effects, and only the CLI prints."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "jobs", "schemas")


def _run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_layer_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in graph.find_modules_directly_imported_by(m) & modules:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            comp: list[str] = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                comp.append(n)
                if n == m:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles_between_modules() -> None:
    # Imports inside functions count too: a lazy import is how a cycle hides.
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if not _is_package(m)}
    assert _cycles(graph, modules) == []


def _is_package(module: str) -> bool:
    path = ROOT / module.replace(".", "/")
    return (path / "__init__.py").exists()


def test_the_spec_imports_nothing_of_the_engine() -> None:
    loaded = _run_python(
        "import sys, schemas.job, schemas.records, schemas.prices\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipeline', 'jobs')))"
    )
    assert loaded == "[]"


def test_importing_the_public_api_has_no_side_effects() -> None:
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import pipeline\n"
        "assert dict(os.environ) == before, 'environment changed'\n"
        "heavy = [m for m in ('ray', 'aiohttp', 'polars', 'typer') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert _run_python(code) == "[]"


def test_public_names_are_exported_and_documented() -> None:
    import pipeline

    for name in pipeline.__all__:
        obj = getattr(pipeline, name)
        assert obj.__doc__, f"pipeline.{name} has no docstring"
    for fn in ("run", "forecast", "verify", "load_spec"):
        assert "pipeline." in (getattr(pipeline, fn).__doc__ or "") or fn == "load_spec"


def test_the_adapter_registry_serves_exactly_the_spec_kinds() -> None:
    from pipeline.providers.registry import batch_kinds, known_kinds
    from schemas.base import BATCH_KINDS, PROVIDER_KINDS

    assert sorted(PROVIDER_KINDS) == known_kinds()
    assert sorted(BATCH_KINDS) == batch_kinds()


def _prints(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_only_the_cli_prints(package: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): lines
        for p in sorted((ROOT / package).rglob("*.py"))
        if "cli" not in p.relative_to(ROOT).parts
        and "examples" not in p.relative_to(ROOT).parts
        and (lines := _prints(p))
    }
    assert offenders == {}


def test_a_users_folder_named_like_our_package_fails_with_its_path(tmp_path: Path) -> None:
    shadow = tmp_path / "jobs"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-c", "import pipeline; pipeline.load_spec; pipeline.check({})"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), done.stderr
    assert str(shadow) in last and "shadows" in last
