"""The package rules of docs/architecture.md: dependencies point one way, no
module reaches into another package's private modules, no import cycle, files and functions
readable in one sitting, libraries log instead of print."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("stagetune_api", "model", "tuner", "service")
FORBIDDEN = {
    "stagetune_api": {"model", "tuner", "service", "torch", "ray", "hyperopt", "fastapi"},
    "model": {"tuner", "service", "ray", "hyperopt", "fastapi"},
    "tuner": {"service", "fastapi"},
}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules(package: str):
    for path in sorted((REPO / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package):
    for path, tree in modules(package):
        bad = imported(tree) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_app_reaches_the_model_through_the_tuner():
    """The REST service (everything in service/ but the command line) imports tuner, not model."""
    for path, tree in modules("service"):
        if path.name == "commands.py":  # `stagetune train`, `data inspect`: the model's commands
            continue
        assert "model" not in imported(tree), f"{path.relative_to(REPO)} imports model"


@pytest.mark.parametrize("package", ["model", "tuner"])
def test_library_code_logs_instead_of_printing(package):
    for path, tree in modules(package):
        calls = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
        ]
        assert not calls, f"{path.relative_to(REPO)} prints on lines {calls}"


@pytest.mark.slow
def test_the_probe_runs_where_ray_is_not_installed(tmp_path):
    """A GPU machine without Ray can probe: nothing on that path imports Ray."""
    import json
    import subprocess
    import sys

    script = """
import sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("ray is not installed here")
sys.meta_path.insert(0, NoRay())
from service.cli import main
sys.exit(main(sys.argv[1:]))
"""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "-q",
            "probe",
            "model.hidden_channels=16",
            "model.num_layers=1",
            "model.num_heads=2",
            "model.num_rbf=8",
            "--max-atoms",
            "30",
            "--device",
            "cpu",
            "--memory-budget",
            "256MiB",
            "--batch-size",
            "2",
            "--json",
            "--log-file",
            str(tmp_path / "probe.log"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["fits"] is True


def test_the_service_starts_without_torch_or_ray():
    """The REST service's modules import neither: a job's validation loads them when needed."""
    import subprocess
    import sys

    code = "import sys, service.main; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _top_level_imports(tree: ast.Module) -> set[str]:
    """Modules a module imports when it is imported (not inside functions: lazy imports are how
    the service keeps torch out of its start)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_another_packages_private_modules(package):
    for path, tree in modules(package):
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                top, _, rest = name.partition(".")
                private = any(part.startswith("_") for part in rest.split(".") if part)
                assert not (top in PACKAGES and top != package and private), (
                    f"{path.relative_to(REPO)} imports {name}: use {top}'s public names"
                )


def test_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path, tree in modules(package):
            graph[_module_name(path)] = _top_level_imports(tree)
    for name, imported in graph.items():
        graph[name] = {m for m in imported if m in graph and m != name}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycle = [*stack[stack.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for other in sorted(graph[name]):
            if not other.startswith(name + "."):  # a package importing its own modules
                visit(other, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def _sources():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))
    yield from sorted((REPO / "service" / "ui").glob("*.js"))


@pytest.mark.parametrize("path", list(_sources()), ids=lambda p: str(p.relative_to(REPO)))
def test_files_are_readable_in_one_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(REPO)}: {lines} lines"


@pytest.mark.parametrize("package", PACKAGES)
def test_functions_are_short(package):
    long = []
    for path, tree in modules(package):
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length})")
    assert not long, "functions over 60 lines: " + ", ".join(long)


def test_the_contract_imports_neither_torch_nor_ray():
    import subprocess
    import sys

    code = "import sys, stagetune_api; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_files_of_a_job_a_run_and_a_sweep_are_named_in_stagetune_api_alone():
    """``stagetune_api/_folder.py`` names every file (``JobFiles``, ``RunFiles``, ``SweepFiles``);
    a module that spelled one again could drift from it unnoticed."""
    from stagetune_api import JobFiles, RunFiles, SweepFiles

    names = {
        value
        for kind in (JobFiles, RunFiles, SweepFiles)
        for value in vars(kind).values()
        if isinstance(value, str) and "." in value
    }
    assert {"result.json", "trials.csv", "job-record.json", "metrics.json", "sweep.csv"} <= names
    spelled = []
    for package in PACKAGES:
        for path, tree in modules(package):
            if path == REPO / "stagetune_api" / "_folder.py":
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and node.value in names:
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value}")
    assert not spelled, "file names spelled outside stagetune_api: " + ", ".join(spelled)


def test_the_page_is_es_modules_that_share_no_globals():
    """index.html loads one module (app.js), which imports the rest; every other script
    exports what it offers, and no line is over 120 characters."""
    ui = REPO / "service" / "ui"
    html = (ui / "index.html").read_text()
    assert html.count("<script") == 1 and '<script type="module" src="/ui/app.js">' in html
    for path in sorted(ui.glob("*.js")):
        text = path.read_text()
        assert "use strict" not in text, f"{path.name} is written as a classic script"
        assert path.name == "app.js" or "\nexport " in text, f"{path.name} exports nothing"
        long = [i for i, line in enumerate(text.splitlines(), 1) if len(line) > 120]
        assert not long, f"{path.name}: lines over 120 characters: {long}"
