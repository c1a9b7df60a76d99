"""Few-shot tasks in the BIG-bench JSON task format, and how prompts are built from them.

A task is what a BIG-bench `task.json` holds (Srivastava et al. 2022, docs/doc.md "JSON schema"):

    {"name": ..., "description": ..., "keywords": [...],
     "metrics": ["exact_str_match"] | ["multiple_choice_grade"], "preferred_score": ...,
     "task_prefix": "", "example_input_prefix": "\\nQ: ", "example_output_prefix": "\\nA: ",
     "choice_prefix": "\\n  choice: ", "few_shot_example_separator": "\\n",
     "append_choices_to_input": true,
     "examples": [{"input": ..., "target": "..." | [...]} | {"input": ..., "target_scores": {...}}]}

A directory holding a task.json (or the file itself) can be given wherever a task name can
(`eval.tasks`). The built-in tasks (evaluation.task_suite) are the same structure with a seeded
generator of items instead of a fixed list, and export to task.json (`to_bigbench`); this
project adds three optional fields of its own: `rationale` per example (a chain of thought),
`answer_suffix` (appended to every scored answer: the built-ins' lines end with a newline) and
`random_baseline`.

A prompt is `task_prefix` (the instruction, optional) followed by k solved exemplars and the
query, joined by `few_shot_example_separator`; an exemplar is its formatted input followed by
its answer, or by its rationale and then its answer under chain-of-thought prompting
(Wei et al. 2022). Exemplars are drawn with a fixed seed and are never the query: a built-in
task draws them from the training side of its item space, which never holds a test item; a
JSON task draws them from its other examples.

Random baseline (DESIGN conventions): multiple choice, the mean of each example's mean
target score (1/#choices for one right answer); exact match, 0 unless the task says otherwise.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MULTIPLE_CHOICE, GENERATE, CODE = "multiple_choice", "generate", "code"
COT_ANSWER = " So the answer is "  # joins a rationale to its answer; answers are read after it
JSON_TYPES = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}


class TaskError(ValueError):
    """A bad task or task file: `field` says where, the message says how to fix it. Its own
    class (the shape of scaling.typed.ConfigError) so that the registry imports nothing from the
    project; the CLI reports both the same way, on one line with exit code 2."""

    def __init__(self, field_path: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field_path, problem, fix
        super().__init__(f"{field_path}: {problem}; fix: {fix}")


def load_json(path: Path, field: str):
    """The JSON document of a task file; unreadable, non-UTF-8 or malformed is a TaskError."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise TaskError(field, f"cannot read {path}: {e.strerror}", "check the path") from None
    except UnicodeDecodeError as e:
        raise TaskError(
            field, f"{path} is not UTF-8 text (byte {e.start})", "give a text file"
        ) from None
    except json.JSONDecodeError as e:
        raise TaskError(
            field, f"{path} is not valid JSON at line {e.lineno} ({e.msg})", "fix the JSON syntax"
        ) from None


@dataclass(frozen=True)
class Example:
    """One item. Exact match: `target` lists the accepted answers (the first is the one shown in
    exemplars). Multiple choice: `target_scores` maps each choice to its score (1 right, 0
    wrong). Code: `input` is the prompt, `target` the reference solution, `test` the unit test."""

    input: str
    target: tuple[str, ...] = ()
    target_scores: tuple[tuple[str, float], ...] = ()
    rationale: str = ""
    test: str = ""
    entry_point: str = ""

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.target_scores)

    @property
    def answer(self) -> str:
        """The answer an exemplar shows: the first target, or the best-scoring choice."""
        if self.target_scores:
            return max(self.target_scores, key=lambda cs: cs[1])[0]
        return self.target[0]


@dataclass(frozen=True)
class Task:
    """A task: BIG-bench's fields, plus a generator of items (built-ins) or a fixed list (JSON)."""

    name: str
    description: str
    metrics: tuple[str, ...]
    kind: str  # MULTIPLE_CHOICE | GENERATE | CODE
    max_new_tokens: int
    random_baseline: float
    sample: Callable[[np.random.Generator], Example] | None = field(default=None, repr=False)
    examples: tuple[Example, ...] = field(default=(), repr=False)
    task_prefix: str = ""
    example_input_prefix: str = "\nQ: "
    example_output_prefix: str = "\nA: "
    choice_prefix: str = "\n  choice: "
    few_shot_example_separator: str = "\n"
    append_choices_to_input: bool = True
    answer_suffix: str = ""
    preferred_score: str = ""
    test_share: float = 0.1  # generated tasks: share of the item space kept for testing

    @property
    def has_rationales(self) -> bool:
        if self.sample is not None:
            return bool(self.sample(np.random.default_rng(0)).rationale)
        return all(ex.rationale for ex in self.examples)

    def is_test_item(self, ex: Example) -> bool:
        """Generated tasks: test items never appear in the training corpus or as exemplars,
        so a score measures generalisation, not recall of a memorised line."""
        return _stable_hash(ex.input) % 1000 < 1000 * self.test_share


def _stable_hash(text: str) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


# ---------------------------------------------------------------------------------- items


def training_example(task: Task, rng: np.random.Generator) -> Example:
    """An item from the training side of a generated task's item space (never a test item)."""
    while True:
        ex = task.sample(rng)
        if not task.is_test_item(ex):
            return ex


# Draws in a row without a new test item after which a generated task counts as exhausted:
# a built-in task draws a new one in ~10 while it has plenty left.
EXHAUSTED_AFTER = 10_000


def distinct_items(task: Task, n: int, rng: np.random.Generator, test: bool) -> list[Example]:
    """Up to n items of distinct inputs from one side (test or training) of a generated task's
    item space, in the order drawn; fewer once EXHAUSTED_AFTER draws in a row bring no new one."""
    seen, items, misses = set(), [], 0
    while len(items) < n and misses < EXHAUSTED_AFTER:
        ex = task.sample(rng)
        if task.is_test_item(ex) == test and ex.input not in seen:
            seen.add(ex.input)
            items.append(ex)
            misses = 0
        else:
            misses += 1
    return items


def eval_examples(task: Task, n: int, seed: int) -> list[Example]:
    """n distinct test items, a pure function of (task, n, seed). A JSON task gives its first n
    examples in file order (all of them when it has fewer). A generated task with fewer than n
    test items fails once EXHAUSTED_AFTER draws in a row bring no new one, whatever n is."""
    if task.sample is None:
        return list(task.examples[:n])
    items = distinct_items(task, n, np.random.default_rng([seed, _stable_hash(task.name)]), True)
    if len(items) < n:
        raise TaskError(
            "eval.n_examples",
            f"task {task.name} has {len(items)} distinct test items, fewer than {n}",
            f"lower n_examples to at most {len(items)}",
        )
    return items


def exemplars(task: Task, query: Example, k: int, rng: np.random.Generator) -> list[Example]:
    """k distinct solved examples for a k-shot prompt, never the query itself."""
    if k == 0:
        return []
    if task.sample is None:
        pool = [ex for ex in task.examples if ex != query]
        if len(pool) < k:
            raise TaskError(
                "eval.shots",
                f"task {task.name} has {len(pool)} other examples, fewer than {k} shots",
                f"use at most {len(pool)} shots for this task",
            )
        return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
    chosen: dict[str, Example] = {}
    for _ in range(200 * k):
        ex = training_example(task, rng)
        chosen.setdefault(ex.input, ex)
        if len(chosen) == k:
            return list(chosen.values())
    raise TaskError(
        "eval.shots", f"task {task.name} has fewer than {k} distinct exemplars", "use fewer shots"
    )


# --------------------------------------------------------------------------------- prompts


def format_input(task: Task, ex: Example) -> str:
    """BIG-bench's formatting of one input: prefix, input, choices (if appended), output prefix."""
    text = task.example_input_prefix + ex.input
    if task.kind == MULTIPLE_CHOICE and task.append_choices_to_input:
        text += "".join(task.choice_prefix + c for c in ex.choices)
    return text + task.example_output_prefix


def solved(task: Task, ex: Example, cot: bool = False) -> str:
    """An exemplar: its input and answer (after its rationale under chain of thought)."""
    answer = ex.rationale + COT_ANSWER + ex.answer if cot else ex.answer
    return format_input(task, ex) + answer


def prompt(
    task: Task,
    query: Example,
    shots: int,
    rng: np.random.Generator,
    instruction: bool = True,
    cot: bool = False,
) -> str:
    """The k-shot prompt for `query`: instruction, k solved exemplars, the query's input."""
    if cot and not task.has_rationales:
        raise TaskError(
            "eval.chain_of_thought",
            f"task {task.name} has no rationales for chain-of-thought exemplars",
            "leave it out of the chain-of-thought tasks",
        )
    demos = [solved(task, ex, cot) for ex in exemplars(task, query, shots, rng)]
    body = task.few_shot_example_separator.join([*demos, format_input(task, query)])
    return (task.task_prefix if instruction else "") + body


def cot_answer(generated: str) -> str:
    """The answer in a generated chain of thought: what follows its last COT_ANSWER."""
    head, sep, tail = generated.rpartition(COT_ANSWER.strip())
    return tail.strip().rstrip(".") if sep else ""


# ---------------------------------------------------------------------------- JSON format

_OPTIONAL = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "few_shot_example_separator": "\n",
    "append_choices_to_input": True,
    "answer_suffix": "",
}
SUPPORTED_METRICS = {"exact_str_match": GENERATE, "multiple_choice_grade": MULTIPLE_CHOICE}
MAX_NEW_TOKENS = 32  # generation budget of a JSON task: the longest target plus slack, capped
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
    **{k: type(v) for k, v in _OPTIONAL.items()},
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


def from_bigbench(spec: dict, source: str) -> Task:
    """A Task from a parsed task.json; TaskError naming the task, example and field."""

    def bad(where: str, problem: str, fix: str):
        return TaskError(f"task {source}: {where}", problem, fix)

    if not isinstance(spec, dict):
        raise bad("file", "does not hold a JSON object", "write a BIG-bench task.json object")
    if wrong := _type_error(spec, FIELD_TYPES):
        raise bad(wrong[0], f"is not {wrong[1]}", f"write {wrong[0]} as {wrong[1]}")
    spec = {k: v for k, v in spec.items() if v is not None}
    examples = spec.get("examples")
    if not examples:
        raise bad("examples", "missing or empty", "give a non-empty list of examples")
    metrics = tuple(spec.get("metrics", ()))
    if not all(isinstance(m, str) for m in metrics):
        raise bad("metrics", f"{list(metrics)} is not a list of names", "e.g. [exact_str_match]")
    kinds = {SUPPORTED_METRICS[m] for m in metrics if m in SUPPORTED_METRICS}
    if not kinds:
        has_scores = all(isinstance(e, dict) and "target_scores" in e for e in examples)
        kinds = {MULTIPLE_CHOICE if has_scores else GENERATE}
    if len(kinds) > 1:
        raise bad("metrics", f"mixes {sorted(metrics)}", "split it into two tasks")
    kind = kinds.pop()
    parsed = tuple(_example(e, i, kind, bad) for i, e in enumerate(examples))
    if kind == MULTIPLE_CHOICE:
        baseline = float(np.mean([np.mean([s for _, s in ex.target_scores]) for ex in parsed]))
    else:
        baseline = 0.0
    baseline = spec.get("random_baseline", baseline)
    if not 0 <= baseline <= 1:
        raise bad("random_baseline", f"{baseline} not in [0, 1]", "give chance accuracy")
    # In bytes: no fewer than its tokens under any tokenizer here (a token spells >= 1 byte).
    longest = max(len(t.encode()) for ex in parsed for t in (ex.target or ("",)))
    return Task(
        name=spec.get("name") or source,
        description=spec.get("description", ""),
        metrics=metrics or (("multiple_choice_grade",) if kind == MULTIPLE_CHOICE else ()),
        kind=kind,
        max_new_tokens=min(MAX_NEW_TOKENS, longest + 4),
        random_baseline=float(baseline),
        examples=parsed,
        preferred_score=spec.get("preferred_score", metrics[0] if metrics else ""),
        **{k: spec.get(k, default) for k, default in _OPTIONAL.items()},
    )


def _example(e, i: int, kind: str, bad) -> Example:
    where = f"examples[{i}]"
    if not isinstance(e, dict) or not isinstance(e.get("input"), str):
        raise bad(f"{where}.input", "missing or not a string", "give every example an input")
    if wrong := _type_error(e, EXAMPLE_TYPES):
        raise bad(f"{where}.{wrong[0]}", f"is not {wrong[1]}", f"write it as {wrong[1]}")
    rationale = e.get("rationale") or ""
    if kind == MULTIPLE_CHOICE:
        scores = e.get("target_scores")
        if not isinstance(scores, dict) or len(scores) < 2:
            raise bad(
                f"{where}.target_scores", "missing or fewer than 2 choices", "map each choice"
            )
        if _type_error(scores, dict.fromkeys(scores, float)):
            raise bad(f"{where}.target_scores", "a score is not a finite number", "use 1 and 0")
        if max(scores.values()) <= min(scores.values()):
            raise bad(
                f"{where}.target_scores", "no choice scores above another", "mark the right one 1"
            )
        target = e.get("target")
        targets = [target] if isinstance(target, str) else list(target or [])
        missing = [t for t in targets if t not in scores]
        if missing:
            raise bad(
                f"{where}.target", f"{missing[0]!r} is not among the choices", "fix target_scores"
            )
        return Example(
            e["input"],
            target_scores=tuple((c, float(s)) for c, s in scores.items()),
            rationale=rationale,
        )
    target = e.get("target")
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    if not targets or not all(isinstance(t, str) for t in targets):
        raise bad(f"{where}.target", "missing or not a string (list)", "give the expected answer")
    return Example(e["input"], target=targets, rationale=rationale)


def load_task_file(path: str | Path) -> Task:
    """A task.json, or a directory holding one, as a Task."""
    path = Path(path)
    file = path / "task.json" if path.is_dir() else path
    if not file.is_file():  # missing, or a socket or device that reading would block on
        raise TaskError(
            "eval.tasks", f"no task.json at {path}", "give a built-in name or a task.json path"
        )
    return from_bigbench(load_json(file, "eval.tasks"), str(file))


def to_bigbench(task: Task, n: int, seed: int) -> dict:
    """A task (built-in or loaded) as a BIG-bench task.json dict holding n test examples."""
    examples = []
    for ex in eval_examples(task, n, seed):
        row: dict = {"input": ex.input}
        if ex.target_scores:
            row["target_scores"] = dict(ex.target_scores)
        else:
            row["target"] = list(ex.target) if len(ex.target) > 1 else ex.target[0]
        if ex.rationale:
            row["rationale"] = ex.rationale
        examples.append(row)
    fields = {k: getattr(task, k) for k in _OPTIONAL}
    return {
        "name": task.name,
        "description": task.description,
        "keywords": ["scaling built-in"],
        "metrics": list(task.metrics),
        "preferred_score": task.preferred_score or task.metrics[0],
        "random_baseline": task.random_baseline,
        **fields,
        "examples": examples,
    }
