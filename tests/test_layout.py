"""The package rules of DESIGN.md: dependencies point one way, libraries log instead of print."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "model": {"tuner", "service", "ray", "hyperopt", "fastapi"},
    "tuner": {"service", "fastapi"},
}


def modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
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
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_app_reaches_the_model_through_the_tuner():
    """The REST service (everything in service/ but the command line) imports tuner, not model."""
    for path, tree in modules("service"):
        if path.name == "cli.py":  # `stagetune train` and `data inspect` are the model's commands
            continue
        assert "model" not in imported(tree), f"{path.relative_to(ROOT)} imports model"


@pytest.mark.parametrize("package", ["model", "tuner"])
def test_library_code_logs_instead_of_printing(package):
    for path, tree in modules(package):
        calls = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
        ]
        assert not calls, f"{path.relative_to(ROOT)} prints on lines {calls}"


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
        [sys.executable, "-c", script, "-q", "probe", "model.hidden_channels=16",
         "model.num_layers=1", "model.num_heads=2", "model.num_rbf=8", "--max-atoms", "30",
         "--device", "cpu", "--memory-budget", "256MiB", "--batch-size", "2", "--json",
         "--log-file", str(tmp_path / "probe.log")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["fits"] is True


def test_the_service_starts_without_torch_or_ray():
    """The REST service's modules import neither: a job's validation loads them when needed."""
    import subprocess
    import sys

    code = "import sys, service.main; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
