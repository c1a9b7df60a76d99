"""BIG-bench's JSON tasks, run as BIG-bench runs them (bigbench==1.0.0, bigbench/api/json_task.py).

Reading a task.json (`load_task_file`, `from_bigbench`):
- A task.json without `examples` is a parent task: its tasks are the folders beside it that hold
  a task.json, in the order of their paths (`subtask_files`); BIG-bench evaluates a parent as
  its subtasks, and so does `eval.tasks` (evaluation.task_suite.expand). A subtask is named
  `parent/subtask` from the two files' `name` fields (BIG-bench joins them with ':'), so that
  logical_deduction/three_objects and tracking_shuffled_objects/three_objects stay apart.
- Duplicate examples, the same JSON text twice, are dropped; the first is kept.
- `metrics` says how a task is scored. Generative ones (GENERATIVE) read the text a model
  generates, multiple-choice ones (MULTIPLE_CHOICE_METRICS) the log-probability of each choice;
  a task listing both (all of BIG-bench's arithmetic) is scored both ways on the same prompt.
  A file without metrics (hand-written) is multiple choice when every example has
  target_scores, else exact_str_match.
- An example with target_scores shows its choices when `append_choices_to_input` is true,
  whatever the task's metrics, in BIG-bench's order (evaluation.tasks.choice_order). BIG-bench
  tests the field for truth, so the strings "true" and "false" (six of its files say "false")
  both show the choices; other strings are refused.
- A generated answer is read by the task's `stop_string` and `output_regex`, and by the default
  regex DEFAULT_REGEX when it gives neither (`postprocess`).

Prompts (`nshot_prompts`) are those of BIG-bench's JsonTask with random_seed = eval.seed: the
order of each example's choices, and make_nshot_dataset's draw of the queries, of each query's
exemplars among the other examples and of the target each exemplar shows. eval.seed = 42
(BIG-bench's own, never changed by its evaluate_task.py) gives the prompts of BIG-bench's runs.

Left out: the character cut of an answer at the model's max_length (evaluate_task.py's 30
tokens, applied to characters), and max_examples split across a parent's subtasks (here
eval.n_examples applies to each subtask). The generation budget is the task's longest target
(evaluation.evaluate.generation_budget), so that no target is out of reach.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from evaluation.tasks import (
    GENERATE,
    MIXED,
    MULTIPLE_CHOICE,
    Example,
    Task,
    TaskError,
    eval_examples,
    format_input,
    load_json,
    query_indices,
)

# BIG-bench's metrics, by what they read (json_task.py).
GENERATIVE = (
    "bleu",
    "bleurt",
    "exact_str_match",
    "case_insensitive_str_match",
    "sequence_f1",
    "numeric_match_with_0_1_relative_error",
    "rouge",
    "log_likelihood",  # BIG-bench's one "scoring" metric: log p(target), needs a target too
)
MULTIPLE_CHOICE_METRICS = (
    "multiple_choice_grade",
    "calibration_multiple_choice_brier_score",
    "expected_calibration_error",
    "weighted_log_probabilities",
    "weighted_probabilities",
    "macro_f1",
)
DEFAULT_REGEX = r"[^\.\?\!\;\n]+"  # BIG-bench's answer: the first run free of . ? ! ; newline

_OPTIONAL = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "few_shot_example_separator": "\n",
    "append_choices_to_input": True,
    "answer_suffix": "",
}
JSON_TYPES = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
# The type of every task.json field read here (a float is a finite number); other fields of
# BIG-bench's schema (canary, keywords' contents, ...) are left alone. null means absent.
FIELD_TYPES = {
    "name": str,
    "description": str,
    "keywords": list,
    "metrics": list,
    "preferred_score": str,
    "random_baseline": float,
    "examples": list,
    "output_regex": str,
    "stop_string": str,
    **{k: type(v) for k, v in _OPTIONAL.items() if k != "append_choices_to_input"},
}
EXAMPLE_TYPES = {"input": str, "target": (str, list), "target_scores": dict, "rationale": str}


def _type_error(fields: dict, types: dict) -> tuple[str, str] | None:
    """(field, expected type) of the first field of the wrong type, else None."""
    for key, kind in types.items():
        value = fields.get(key)
        if value is None:
            continue
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value):
                return key, "a finite number"
        elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            return key, "a JSON " + " or ".join(JSON_TYPES[t] for t in kinds)
    return None


# ---------------------------------------------------------------------------- reading files


def from_bigbench(spec: dict, source: str, parent: str = "") -> Task:
    """A Task from a parsed task.json (a subtask of `parent` when given); TaskError naming the
    task, example and field when BIG-bench could not run it either."""

    def bad(where: str, problem: str, fix: str):
        return TaskError(f"task {source}: {where}", problem, fix)

    if not isinstance(spec, dict):
        raise bad("file", "does not hold a JSON object", "write a BIG-bench task.json object")
    if wrong := _type_error(spec, FIELD_TYPES):
        raise bad(wrong[0], f"is not {wrong[1]}", f"write {wrong[0]} as {wrong[1]}")
    spec = {k: v for k, v in spec.items() if v is not None}
    append = _append_choices(spec.get("append_choices_to_input", True), bad)
    if not spec.get("examples"):
        raise bad(
            "examples", "missing or empty", "give a list of examples, or subtask folders beside it"
        )
    metrics = _metrics(spec, bad)
    choices = bool(set(metrics) & set(MULTIPLE_CHOICE_METRICS))
    generates = bool(set(metrics) & set(GENERATIVE))
    kind = MIXED if choices and generates else MULTIPLE_CHOICE if choices else GENERATE
    parsed = tuple(_example(e, i, choices, generates, bad) for i, e in _distinct(spec["examples"]))
    if "macro_f1" in metrics and not all(_one_right(ex) for ex in parsed):
        raise bad("metrics", "macro_f1 needs one choice scored 1, the others 0", "drop macro_f1")
    numeric = "numeric_match_with_0_1_relative_error"
    if numeric in metrics and any(len(ex.target) != 1 for ex in parsed):
        raise bad("metrics", f"{numeric} takes one target per example", "give one target each")
    baseline = spec.get("random_baseline", _choice_baseline(parsed) if choices else 0.0)
    if not 0 <= baseline <= 1:
        raise bad("random_baseline", f"{baseline} not in [0, 1]", "give chance accuracy")
    regex, stop = spec.get("output_regex"), spec.get("stop_string")
    if regex is not None:
        _check_regex(regex, bad)
    elif stop is None:
        regex = DEFAULT_REGEX
    name = spec.get("name") or source
    options = {k: spec.get(k, default) for k, default in _OPTIONAL.items()}
    options["append_choices_to_input"] = append
    return Task(
        name=f"{parent}/{name}" if parent else name,
        description=spec.get("description", ""),
        metrics=metrics,
        kind=kind,
        max_new_tokens=None,
        random_baseline=float(baseline),
        examples=parsed,
        preferred_score=spec.get("preferred_score", metrics[0]),
        bigbench=True,
        output_regex=regex,
        stop_string=stop,
        **options,
    )


def _append_choices(value, bad) -> bool:
    """BIG-bench tests append_choices_to_input for truth: "false" appends the choices too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return True
    raise bad(
        "append_choices_to_input",
        f"{value!r} is not a JSON boolean",
        'write true or false (BIG-bench reads the strings "true" and "false" both as true)',
    )


def _metrics(spec: dict, bad) -> tuple[str, ...]:
    metrics = spec.get("metrics") or []
    if not all(isinstance(m, str) for m in metrics):
        raise bad("metrics", f"{metrics} is not a list of names", "e.g. [exact_str_match]")
    unknown = [m for m in metrics if m not in GENERATIVE + MULTIPLE_CHOICE_METRICS]
    if unknown:
        known = ", ".join(GENERATIVE + MULTIPLE_CHOICE_METRICS)
        raise bad("metrics", f"{unknown[0]!r} is not a BIG-bench metric", f"use {known}")
    if metrics:
        return tuple(metrics)
    examples = spec["examples"]
    scored = all(isinstance(e, dict) and "target_scores" in e for e in examples)
    return ("multiple_choice_grade",) if scored else ("exact_str_match",)


def _distinct(examples: list):
    """(index in the file, example) without repeats of an example's JSON text, as BIG-bench."""
    seen = set()
    for i, e in enumerate(examples):
        text = json.dumps(e)
        if text not in seen:
            seen.add(text)
            yield i, e


def _example(e, i: int, choices: bool, generates: bool, bad) -> Example:
    where = f"examples[{i}]"
    if not isinstance(e, dict) or not isinstance(e.get("input"), str):
        raise bad(f"{where}.input", "missing or not a string", "give every example an input")
    if wrong := _type_error(e, EXAMPLE_TYPES):
        raise bad(f"{where}.{wrong[0]}", f"is not {wrong[1]}", f"write it as {wrong[1]}")
    target, scores = e.get("target"), e.get("target_scores")
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    if target is not None and (not targets or not all(isinstance(t, str) for t in targets)):
        raise bad(f"{where}.target", "not a string or list of strings", "give the answer(s)")
    if generates and not targets:
        raise bad(f"{where}.target", "missing: generative metrics score it", "give the answer")
    if choices and scores is None:
        raise bad(f"{where}.target_scores", "missing: multiple-choice metrics score it", "add it")
    if scores is not None:
        if not scores or _type_error(scores, dict.fromkeys(scores, float)):
            raise bad(f"{where}.target_scores", "empty or a score not a number", "use 1 and 0")
        values = list(scores.values())
        if not targets and (max(values) <= min(values) if len(values) > 1 else values[0] <= 0):
            raise bad(
                f"{where}.target_scores", "no choice scores above another", "mark the right one 1"
            )
    return Example(
        e["input"],
        target=targets,
        target_scores=tuple((c, float(s)) for c, s in (scores or {}).items()),
        rationale=e.get("rationale") or "",
    )


def _one_right(ex: Example) -> bool:
    """What BIG-bench's macro_f1 asks of an example: one choice scored 1, scores summing to 1."""
    scores = [s for _, s in ex.target_scores]
    return scores.count(1.0) == 1 and sum(scores) == 1


def _choice_baseline(examples) -> float:
    """Chance of multiple_choice_grade: the mean of each example's mean target score."""
    return float(np.mean([np.mean([s for _, s in ex.target_scores]) for ex in examples]))


def _check_regex(regex: str, bad) -> None:
    try:
        groups = re.compile(regex).groups
    except re.error as e:
        raise bad("output_regex", f"is not a regular expression ({e})", "fix it") from None
    if groups > 1:  # re.findall would give tuples; BIG-bench asserts
        raise bad("output_regex", f"has {groups} groups", "use non-capturing groups (?:...)")


def _task_file(path) -> Path:
    path = Path(path)
    file = path / "task.json" if path.is_dir() else path
    if not file.is_file():  # missing, or a socket or device that reading would block on
        raise TaskError(
            "eval.tasks", f"no task.json at {path}", "give a built-in name or a task.json path"
        )
    return file


def _is_parent(spec) -> bool:
    return isinstance(spec, dict) and "examples" not in spec


def _version(file: Path) -> tuple[str, int, int]:
    """A file's key in the caches below: its path, modification time and size, so that an
    edited file is read again."""
    stat = file.stat()
    return str(file.resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=256)
def _parent_name(version: tuple) -> str | None:
    """The name of the parent task a task.json is, None for a task with examples. Cached: a
    task file may be tens of MB, and evaluation asks this of every task at every step."""
    file = Path(version[0])
    spec = load_json(file, "eval.tasks")
    return str(spec.get("name") or file.parent.name) if _is_parent(spec) else None


@lru_cache(maxsize=16)
def _load(version: tuple, source: str, parent: str) -> Task:
    return from_bigbench(load_json(Path(version[0]), "eval.tasks"), source, parent)


def subtask_files(path) -> list[Path]:
    """The task.json files of a parent task's subtasks, sorted by path as BIG-bench does; []
    for a task with examples."""
    file = _task_file(path)
    if _parent_name(_version(file)) is None:
        return []
    subtasks = (d / "task.json" for d in file.parent.iterdir() if d.is_dir())
    return sorted((f for f in subtasks if f.is_file()), key=str)


def load_task_file(path) -> Task:
    """A task.json, or a directory holding one, as a Task; a subtask is named after its parent
    (the task.json one folder up, when that is a parent task)."""
    file = _task_file(path)
    if subtasks := [f.parent.name for f in subtask_files(file)]:
        raise TaskError(
            "eval.tasks",
            f"{file} is a parent task: its {len(subtasks)} subtasks "
            f"({', '.join(subtasks[:3])}{', ...' if len(subtasks) > 3 else ''}) hold the examples",
            "name it in eval.tasks, which evaluates every subtask, or name one subtask",
        )
    above = file.parent.parent / "task.json"
    parent = _parent_name(_version(above)) if above.is_file() else None
    return _load(_version(file), str(file), parent or "")


# ------------------------------------------------------------------ prompts and answers


def nshot_prompts(task: Task, n: int, shots: int, seed: int, instruction: bool = True) -> list[str]:
    """The prompts of the task's n queries (eval_examples(task, n, seed)) with `shots`
    exemplars each, as BIG-bench's JsonTask(random_seed=seed) renders them: choices in the
    order of that seed, and exemplars drawn as make_nshot_dataset draws them: RandomState(seed)
    first permutes the examples to order the queries, then for each query picks its exemplars
    among the other examples and the target each exemplar shows."""
    shown: dict[int, str] = {}

    def formatted(i: int) -> str:
        if i not in shown:
            shown[i] = format_input(task, task.examples[i], seed)
        return shown[i]

    prefix = task.task_prefix if instruction else ""
    queries = query_indices(task, n, seed)
    if shots == 0:
        return [prefix + formatted(i) for i in queries]
    total = len(task.examples)
    if total < shots + 1:
        raise TaskError(
            "eval.shots",
            f"task {task.name} has {total} distinct examples, too few for {shots} shots",
            f"use at most {total - 1} shots for this task",
        )
    rng = np.random.RandomState(seed)
    sep, prompts = task.few_shot_example_separator, {}
    for q in map(int, rng.permutation(total)[: len(queries)]):
        others = np.delete(np.arange(total), q)
        demos = []
        for i in others[rng.permutation(total - 1)[:shots]]:
            targets = task.examples[i].targets
            demos.append(formatted(i) + targets[rng.randint(len(targets))])
        prompts[q] = prefix + sep.join([*demos, formatted(q)])
    return [prompts[q] for q in queries]


def postprocess(text: str, task: Task) -> str:
    """A generated answer as BIG-bench reads it (model_utils.postprocess_output): cut after the
    first stop_string unless the text starts with it, then the first match of output_regex
    ("" when none matches)."""
    stop, regex = task.stop_string, task.output_regex
    if stop and (i := text.find(stop)) > 0:
        text = text[: i + len(stop)]
    if regex:
        text = next(iter(re.findall(regex, text)), "")
    return text


# ------------------------------------------------------------------------------- export


def to_bigbench(task: Task, n: int, seed: int) -> dict:
    """A task (built-in or loaded) as a BIG-bench task.json dict holding n test examples."""
    examples = []
    for ex in eval_examples(task, n, seed):
        row: dict = {"input": ex.input}
        if ex.target:
            row["target"] = list(ex.target) if len(ex.target) > 1 else ex.target[0]
        if ex.target_scores:
            row["target_scores"] = dict(ex.target_scores)
        if ex.rationale:
            row["rationale"] = ex.rationale
        examples.append(row)
    rules = {"output_regex": task.output_regex, "stop_string": task.stop_string}
    return {
        "name": task.name,
        "description": task.description,
        "keywords": ["scaling built-in"],
        "metrics": list(task.metrics),
        "preferred_score": task.preferred_score or task.metrics[0],
        "random_baseline": task.random_baseline,
        **{k: getattr(task, k) for k in _OPTIONAL},
        **{k: v for k, v in rules.items() if v is not None},
        "examples": examples,
    }
