"""Few-shot tasks in the BIG-bench JSON task format, and how prompts are built from them.

A task is what a BIG-bench `task.json` holds (Srivastava et al. 2022, docs/doc.md "JSON schema"):

    {"name": ..., "description": ..., "keywords": [...],
     "metrics": ["exact_str_match", "multiple_choice_grade", "bleu", "rouge", ...],
     "preferred_score": ..., "task_prefix": "", "example_input_prefix": "\\nQ: ",
     "example_output_prefix": "\\nA: ", "choice_prefix": "\\n  choice: ",
     "few_shot_example_separator": "\\n", "append_choices_to_input": true,
     "output_regex": ..., "stop_string": ...,
     "examples": [{"input": ..., "target": "..." | [...], "target_scores": {...}}]}

evaluation.bigbench reads such files and runs them as BIG-bench's json_task.py does (parent
tasks and their subtasks, duplicate examples, its sampling of queries and exemplars, its output
rules and metrics). A directory holding a task.json (or the file itself) can be given wherever a
task name can (`eval.tasks`). The built-in tasks (evaluation.task_suite) are the same structure
with a seeded generator of items instead of a fixed list, and export to task.json; this project
adds three optional fields of its own: `rationale` per example (a chain of thought),
`answer_suffix` (appended to every scored answer: the built-ins' lines end with a newline) and
`random_baseline`.

A prompt is `task_prefix` (the instruction, optional) followed by k solved exemplars and the
query, joined by `few_shot_example_separator`; an exemplar is its formatted input followed by
its answer, or by its rationale and then its answer under chain-of-thought prompting
(Wei et al. 2022). A formatted input is BIG-bench's: input prefix, input, the choices (when an
example has target_scores and the task appends them, in BIG-bench's order: `choice_order`),
output prefix. Exemplars are drawn with a fixed seed and are never the query: a built-in task
draws them from the training side of its item space, which never holds a test item; a JSON task
from its other examples (evaluation.bigbench.nshot_prompts).

Random baseline (DESIGN conventions): multiple choice, the mean of each example's mean
target score (1/#choices for one right answer); exact match, 0 unless the task says otherwise.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MULTIPLE_CHOICE, GENERATE, CODE = "multiple_choice", "generate", "code"
MIXED = "multiple_choice+generate"  # a BIG-bench task scored both ways (e.g. its arithmetic)
BIGBENCH_SEED = 42  # BIG-bench's random_seed (the order of choices, its draw of exemplars)
COT_ANSWER = " So the answer is "  # joins a rationale to its answer; answers are read after it


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
    """One item. Generation: `target` lists the accepted answers. Multiple choice:
    `target_scores` maps each choice to its score (1 right, 0 wrong); a BIG-bench example may
    hold both, one for each way it is scored. Code: `input` is the prompt, `target` the
    reference solution, `test` the unit test."""

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
        """The answer an exemplar shows: the first target, else the first best-scoring choice
        (BIG-bench's target for an example that gives only target_scores)."""
        if self.target:
            return self.target[0]
        return max(self.target_scores, key=lambda cs: cs[1])[0]

    @property
    def targets(self) -> tuple[str, ...]:
        """The answers BIG-bench draws an exemplar's from: `target`, else `answer`."""
        return self.target or (self.answer,)


@dataclass(frozen=True)
class Task:
    """A task: BIG-bench's fields, plus a generator of items (built-ins) or a fixed list (JSON).
    `bigbench`: loaded from a task.json, so sampled, generated and scored as BIG-bench does
    (evaluation.bigbench); `max_new_tokens` None: its longest target, in the run's tokenizer."""

    name: str
    description: str
    metrics: tuple[str, ...]
    kind: str  # MULTIPLE_CHOICE | GENERATE | MIXED | CODE
    max_new_tokens: int | None
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
    bigbench: bool = False
    output_regex: str | None = None  # BIG-bench's rules for reading a generated answer
    stop_string: str | None = None

    @property
    def scores_choices(self) -> bool:
        return self.kind in (MULTIPLE_CHOICE, MIXED)

    @property
    def generates(self) -> bool:
        return self.kind in (GENERATE, MIXED)

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


def query_indices(task: Task, n: int, seed: int) -> list[int]:
    """The examples of a fixed list that are queries. A JSON task: all of them in file order
    when n covers them, else BIG-bench's draw of n (make_nshot_dataset's rng.choice without
    replacement under RandomState(seed)). Others (the code problems): the first n."""
    total = len(task.examples)
    if not task.bigbench or n >= total:
        return list(range(min(n, total)))
    return [int(i) for i in np.random.RandomState(seed).permutation(total)[:n]]


def eval_examples(task: Task, n: int, seed: int) -> list[Example]:
    """n distinct test items, a pure function of (task, n, seed). A task with a fixed list gives
    its `query_indices` (all of them when it has fewer). A generated task with fewer than n
    test items fails once EXHAUSTED_AFTER draws in a row bring no new one, whatever n is."""
    if task.sample is None:
        return [task.examples[i] for i in query_indices(task, n, seed)]
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


def choice_order(choices, seed: int = BIGBENCH_SEED) -> list[str]:
    """The order in which BIG-bench shows an example's choices: its choices sorted, then
    shuffled by RandomState(seed), seeded afresh for every example (json_task.py's
    default_format_fn), so that examples with as many choices share one permutation."""
    return [str(c) for c in np.random.RandomState(seed).permutation(sorted(choices))]


def format_input(task: Task, ex: Example, seed: int = BIGBENCH_SEED) -> str:
    """BIG-bench's formatting of one input: prefix, input, its choices when it has target_scores
    and the task appends them (whatever the task's metrics, as BIG-bench), output prefix."""
    text = task.example_input_prefix + ex.input
    if ex.target_scores and task.append_choices_to_input:
        text += "".join(task.choice_prefix + c for c in choice_order(ex.choices, seed))
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
