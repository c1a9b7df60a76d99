"""Code problems (HumanEval-style, Chen et al. 2021): the problem file format and its loader.

Part of the task registry, so it imports nothing from the project but the task format; judging
completions is evaluation.code_eval's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from evaluation.tasks import TaskError, load_json

PROBLEMS_PATH = Path(__file__).parent / "task_data" / "python_functions.json"


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


FIELDS = tuple(f.name for f in fields(Problem))


def load_problems(path: str | Path = PROBLEMS_PATH) -> list[Problem]:
    """The problems of a JSON file: a list of objects with exactly the fields of Problem."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(str(path), "no such file", "give the path of a problem file")
    return parse_problems(load_json(path, str(path)), str(path))


def parse_problems(raw, where: str) -> list[Problem]:
    """Problems from decoded JSON; TaskError names the problem and field at fault."""
    if not isinstance(raw, list) or not raw:
        raise TaskError(where, "not a non-empty list", "write a JSON list of problem objects")
    problems = [_problem(item, i, where) for i, item in enumerate(raw)]
    seen = set()
    for p in problems:
        if p.task_id in seen:
            raise TaskError(
                f"{where}: {p.task_id}.task_id", "appears twice", "give each problem its own id"
            )
        seen.add(p.task_id)
    return problems


def _problem(item, index: int, where: str) -> Problem:
    named = isinstance(item, dict) and isinstance(item.get("task_id"), str)
    name = f"{where}: {item['task_id'] if named else f'problem #{index}'}"
    if not isinstance(item, dict):
        raise TaskError(name, "not a JSON object", f"give the fields {', '.join(FIELDS)}")
    for key in item:
        if key not in FIELDS:
            raise TaskError(f"{name}.{key}", "unknown field", f"use only {', '.join(FIELDS)}")
    for key in FIELDS:
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise TaskError(f"{name}.{key}", "missing or empty", "give it as a non-empty string")
    problem = Problem(**item)
    if not problem.entry_point.isidentifier():
        raise TaskError(
            f"{name}.entry_point",
            f"{problem.entry_point!r} is not a Python name",
            "name the function the prompt defines",
        )
    if f"def {problem.entry_point}(" not in problem.prompt:
        raise TaskError(
            f"{name}.prompt",
            f"does not define {problem.entry_point}()",
            "end the prompt with the function's signature and docstring",
        )
    if "def check(candidate)" not in problem.test:
        raise TaskError(
            f"{name}.test", "does not define check(candidate)", "define check(candidate)"
        )
    return problem
