"""A fine-tune's items: a task's training and test splits, which never share an input, and the
rows it trains on (a zero-shot prompt and its completion, the loss on the completion only).

Sources (finetune.task) and their splits:
  * a built-in generated task (evaluation.task_suite): its own split of the item space. An item
    whose input hashes into the task's test share is a test item, which is never in the
    training corpus nor an exemplar (evaluation.tasks.Task.is_test_item). Training items: the
    first `examples` distinct training-side items drawn from default_rng([seed, hash(name)]),
    so a smaller example count's items are the first of a larger one's (nested, as a
    data-scaling curve wants); test items: the first test_items distinct test-side items drawn
    from default_rng([split_seed, hash(name)]), which are the items the few-shot evaluation
    scores with eval.seed = split_seed.
  * a fixed list (a BIG-bench task.json, or a .jsonl of {"prompt": ..., "completion": ...}
    lines): its distinct inputs in a permutation seeded by split_seed, the first test_fraction
    of them held out for testing; or, with test_file (a file of the same kind), every item of
    that file, an input in both files being an error. Training items: the first `examples` of
    the others in a permutation seeded by seed (nested again); test items: the first
    test_items held out, in file order.

A row is what the evaluation reads and scores, so that fine-tuning matches evaluation: the
zero-shot prompt (evaluation.tasks.prompt: the instruction and the formatted input) followed by
the completion, the answer the evaluation scores (with the task's answer_suffix) ended by the
newline at which generation stops (evaluation.generate). It is tokenized as the evaluation
tokenizes a scored continuation (evaluation.likelihood.encode_pairs).
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.evaluate import PromptSet, check_fit, generation_budget
from evaluation.generate import PROMPT_BUCKET
from evaluation.likelihood import encode_pairs
from evaluation.task_suite import resolve as resolve_task
from evaluation.tasks import (
    CODE,
    GENERATE,
    MULTIPLE_CHOICE,
    Example,
    Task,
    TaskError,
    distinct_items,
    prompt,
)
from scaling.config import EvalConfig, RunConfig
from scaling.config_io import json_type, read_input
from scaling.finetune_config import FinetuneConfig
from scaling.tokenizer import Tokenizer
from scaling.typed import ConfigError

JSONL = ".jsonl"
TRAIN_SALT = 1  # keeps the training draw of a fixed list apart from its split (seed == split_seed)
# The score a fine-tune reports as its accuracy (error = 1 - accuracy), by kind of task.
PRIMARY_METRIC = {MULTIPLE_CHOICE: "acc", GENERATE: "exact_match"}


@dataclass(frozen=True)
class Split:
    task: Task
    train: tuple[Example, ...]  # the fine-tune's `examples` training items
    test: tuple[Example, ...]  # the items scored after it


def _hash(text: str) -> int:
    return zlib.crc32(text.encode())


@functools.lru_cache(maxsize=16)
def source(name: str) -> Task:
    """The task named by finetune.task: a built-in, a BIG-bench task.json or a .jsonl file."""
    if name.endswith(JSONL):
        return _jsonl_task(name)
    try:
        task = resolve_task(name)
    except TaskError as e:  # the registry's own error, told as a config error
        if e.field != "eval.tasks":
            raise ConfigError(e.field, e.problem, e.fix) from None
        raise ConfigError(
            "finetune.task", e.problem, f"{e.fix}, or a .jsonl of prompt/completion lines"
        ) from None
    if task.kind == CODE:
        raise ConfigError(
            "finetune.task",
            f"{task.name} is a code task, scored by running its unit tests",
            "fine-tune on an exact-match or multiple-choice task",
        )
    return task


def _jsonl_task(path: str) -> Task:
    """prompt/completion pairs as an exact-match task whose prompt is the item's text as is."""
    examples = []
    for n, line in enumerate(read_input(path, "finetune.task").splitlines(), 1):
        if line.strip():
            examples.append(_pair(line, f"{path}:{n}"))
    if not examples:
        raise ConfigError("finetune.task", f"{path} holds no items", "write one pair per line")
    longest = max(len(ex.answer.encode()) for ex in examples)  # bytes: >= its tokens
    return Task(
        name=Path(path).stem,
        description=f"prompt/completion pairs of {path}",
        metrics=("exact_str_match",),
        kind=GENERATE,
        max_new_tokens=longest + 4,
        random_baseline=0.0,
        examples=tuple(examples),
        example_input_prefix="",
        example_output_prefix="",
        preferred_score="exact_str_match",
    )


def _pair(line: str, at: str) -> Example:
    fix = 'write {"prompt": "...", "completion": "..."} on each line'
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError("finetune.task", f"{at} is not valid JSON ({e.msg})", fix) from None
    if not isinstance(row, dict):
        raise ConfigError("finetune.task", f"{at} is a JSON {json_type(row)}, not an object", fix)
    for key in ("prompt", "completion"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise ConfigError("finetune.task", f"{at} has no text in {key!r}", fix)
    if "\n" in row["completion"].strip():
        raise ConfigError(
            "finetune.task",
            f"{at}: the completion spans lines; generation stops at the first newline",
            "give one-line completions",
        )
    return Example(row["prompt"], (row["completion"],))


def split(ft: FinetuneConfig) -> Split:
    """The task's `examples` training items and its test items (module docstring)."""
    task = source(ft.task)
    if task.sample is not None:
        if ft.test_file:
            raise ConfigError(
                "finetune.test_file",
                f"{task.name} is a built-in task with its own test split",
                "drop test_file",
            )
        rng = lambda seed: np.random.default_rng([seed, _hash(task.name)])  # noqa: E731
        train = distinct_items(task, ft.examples, rng(ft.seed), test=False)
        test = distinct_items(task, ft.test_items, rng(ft.split_seed), test=True)
    else:
        pool, held_out = _fixed_split(ft.task, ft.test_file, ft.test_fraction, ft.split_seed)
        order = np.random.default_rng([ft.seed, TRAIN_SALT]).permutation(len(pool))
        train = [pool[i] for i in order[: ft.examples]]
        test = held_out[: ft.test_items]
    if len(train) < ft.examples:
        raise ConfigError(
            "finetune.examples",
            f"task {task.name} has {len(train)} training items, fewer than {ft.examples}",
            f"use at most {len(train)} examples",
        )
    if not test:
        raise ConfigError("finetune.test_items", f"task {task.name} has no test items", "check it")
    return Split(task, tuple(train), tuple(test))


@functools.lru_cache(maxsize=16)
def _fixed_split(name: str, test_file: str, fraction: float, seed: int):
    """(training pool, test items) of a fixed list, disjoint in their inputs."""
    examples = source(name).examples
    if test_file:
        test = list(source(test_file).examples)
        shared = {ex.input for ex in test} & {ex.input for ex in examples}
        if shared:
            raise ConfigError(
                "finetune.test_file",
                f"{len(shared)} inputs are in both {name} and {test_file}, e.g. "
                f"{sorted(shared)[0][:40]!r}",
                "remove them from one of the files",
            )
        return list(examples), test
    inputs = list(dict.fromkeys(ex.input for ex in examples))
    n_test = max(1, round(fraction * len(inputs)))
    if n_test >= len(inputs):
        raise ConfigError(
            "finetune.test_fraction",
            f"leaves no training items of the {len(inputs)} distinct inputs of {name}",
            "lower test_fraction or give a test_file",
        )
    order = np.random.default_rng(seed).permutation(len(inputs))
    held = {inputs[i] for i in order[:n_test]}
    return [e for e in examples if e.input not in held], [e for e in examples if e.input in held]


def zero_shot(task: Task, ex: Example) -> str:
    """The prompt the evaluation builds with no exemplars (the instruction and the input)."""
    return prompt(task, ex, 0, np.random.default_rng(0), instruction=True)


def completion(task: Task, ex: Example) -> str:
    """What a row trains on: the scored answer, ended by a newline (where generation stops)."""
    text = ex.answer + task.answer_suffix
    return text if text.endswith("\n") else text + "\n"


def rows(task: Task, items, tok: Tokenizer, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (n, width + 1), weights (n, width)) of the items' rows, left-aligned and padded
    with zeros; weights[i, j] = 1 where tokens[i, j + 1] is a completion token. width: the
    longest row rounded up to a multiple of PROMPT_BUCKET (few compiled shapes), at most
    seq_len. A row longer than seq_len + 1 tokens is a ConfigError naming the item."""
    encoded = encode_pairs(tok, [(zero_shot(task, ex), completion(task, ex)) for ex in items])
    longest = max(len(ids) for ids, _ in encoded)
    if longest > seq_len + 1:
        i = next(i for i, (ids, _) in enumerate(encoded) if len(ids) == longest)
        raise ConfigError(
            f"finetune: task {task.name}, item {items[i].input[:40]!r}",
            f"the prompt and completion need {longest - 1} tokens; model.seq_len is {seq_len}",
            "fine-tune a model with a longer context, or shorten the items",
        )
    width = min(seq_len, -(-(longest - 1) // PROMPT_BUCKET) * PROMPT_BUCKET)
    tokens = np.zeros((len(items), width + 1), np.int32)
    weights = np.zeros((len(items), width), np.float32)
    for i, (ids, n_context) in enumerate(encoded):
        tokens[i, : len(ids)] = ids
        weights[i, n_context - 1 : len(ids) - 1] = 1.0  # position j predicts token j + 1
    return tokens, weights


def test_prompts(s: Split, tok) -> PromptSet:
    """The test items as the evaluation scores them: zero-shot, with the instruction, and the
    evaluation's generation budget in the run's tokenizer."""
    prompts = [zero_shot(s.task, ex) for ex in s.test]
    budget = generation_budget(tok, s.task) if s.task.kind != MULTIPLE_CHOICE else 0
    return PromptSet(s.task, 0, list(s.test), prompts, [], budget)


def test_eval(cfg: RunConfig, n_items: int) -> EvalConfig:
    """The evaluation settings of a fine-tune's test items: zero-shot, instructed, the parent's
    batch size (the fine-tune's tasks field names its task, for the eval key)."""
    ft = cfg.finetune
    return EvalConfig(
        tasks=(source(ft.task).name,),
        shots=(0,),
        n_examples=n_items,
        seed=ft.split_seed,
        batch_size=cfg.eval.batch_size,
    )


def check(cfg: RunConfig) -> Split:
    """Everything about a fine-tune's items that can fail, before anything compiles: the task,
    enough training items, training rows and test prompts that fit the context."""
    s = split(cfg.finetune)
    tok = cfg.data.run_tokenizer()
    rows(s.task, s.train, tok, cfg.model.seq_len)
    fix = "fine-tune a model with a longer context, or shorten the items"
    check_fit(test_prompts(s, tok), tok, cfg.model.seq_len, fix)
    return s
