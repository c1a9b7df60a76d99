"""The package layout holds: the task registry is a leaf, and no evaluation module needs an
import hidden inside a function to break a cycle (each one imports alone, in a fresh process)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("scaling", "evaluation", "experiments", "analysis")
REGISTRY = (
    "evaluation.tasks",
    "evaluation.task_suite",
    "evaluation.problems",
    "evaluation.bigbench",
)
EVALUATION = sorted(
    f"evaluation.{p.stem}" for p in (ROOT / "evaluation").glob("*.py") if p.stem != "__init__"
)


def _loaded_after_import(module: str) -> set[str]:
    """Project modules that importing `module` loads, beyond what the interpreter loads at
    start-up (the lm-eval registration line of `make test` imports experiments.lm_eval_plugin)."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "loaded = set(sys.modules) - before\n"
        "print('\\n'.join(m for m in loaded if m.split('.')[0] in "
        f"{PROJECT!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("module", REGISTRY)
def test_the_task_registry_imports_nothing_else_from_the_project(module):
    others = {m for m in _loaded_after_import(module) if m not in (*REGISTRY, "evaluation")}
    assert not others, f"{module} pulls in {sorted(others)}"


def test_every_evaluation_module_imports_alone():
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for module in EVALUATION:  # one process each: an import order cannot mask a cycle
        subprocess.run([sys.executable, "-c", code, module], cwd=ROOT, check=True)


@pytest.mark.parametrize("package", ["evaluation", "scaling"])
def test_no_project_import_is_hidden_inside_a_function(package):
    hidden = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    names = []
                    if isinstance(inner, ast.ImportFrom) and inner.module:
                        names = [inner.module]
                    elif isinstance(inner, ast.Import):
                        names = [a.name for a in inner.names]
                    hidden += [
                        f"{path.relative_to(ROOT)}:{inner.lineno} {n}"
                        for n in names
                        if n.split(".")[0] in PROJECT
                    ]
    assert not hidden, hidden
