"""Few-shot evaluation: exact match by greedy generation, multiple choice by log-likelihood.

Prompts are left-aligned in a window of seq_len tokens. The model is causal, so the padding to
the right of a prompt never changes the logits at the prompt's positions; one compiled program
per model shape serves every task. (A KV cache would make generation cheaper; these models and
answers are short enough that recomputing the window per new token is the simpler choice.)
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from scaling import data
from scaling.config import ConfigError, EvalConfig, ModelConfig
from scaling.model import apply
from scaling.tasks import TASKS, Example, Task, eval_examples, few_shot_prompt

EVAL_BATCH = 50  # rows per compiled call; inputs are padded to a multiple of it


@partial(jax.jit, static_argnames=("cfg",))
def _greedy(params, tokens, lengths, active, max_new_tokens, cfg: ModelConfig):
    """Greedy decoding until every row has emitted a newline or max_new_tokens are added.
    max_new_tokens is traced (a while loop), so every task shares one compiled program."""
    rows = jnp.arange(tokens.shape[0])
    newline = data.encode("\n")[0]

    def add_token(carry):
        i, toks, finished = carry
        position = lengths + i - 1  # the last filled position of each row
        next_token = jnp.argmax(apply(params, cfg, toks)[rows, position], -1)
        toks = toks.at[rows, position + 1].set(next_token)
        return i + 1, toks, finished | (next_token == newline)

    def more(carry):
        i, _, finished = carry
        return (i < max_new_tokens) & ~finished.all()

    start = (jnp.int32(0), tokens, ~active)  # padding rows count as finished
    return jax.lax.while_loop(more, add_token, start)[1]


@partial(jax.jit, static_argnames=("cfg",))
def _continuation_logprob(params, tokens, mask, cfg: ModelConfig):
    """Sum of log p(token) over the positions where mask is 1 (mask aligned with tokens)."""
    logp = jax.nn.log_softmax(apply(params, cfg, tokens[:, :-1]))
    token_logp = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return (token_logp * mask[:, 1:]).sum(-1)


def _pad_rows(arrays: list[np.ndarray], width: int) -> np.ndarray:
    n = -(-len(arrays) // EVAL_BATCH) * EVAL_BATCH
    out = np.zeros((n, width), np.int32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _check_length(n_tokens: int, limit: int, task: str) -> None:
    if n_tokens > limit:
        raise ConfigError(
            "eval.shots",
            f"a {task} prompt needs {n_tokens} tokens but model.seq_len allows {limit}",
            "lower eval.shots or raise model.seq_len",
        )


def check_prompts_fit(cfg: ModelConfig, ecfg: EvalConfig) -> None:
    """Fail before training if some few-shot prompt plus its answer exceeds the context."""
    for name, examples, prompts in _task_prompts(ecfg):
        task = TASKS[name]
        for ex, prompt in zip(examples, prompts):
            answers = ex.choices or (ex.target,)
            longest = max(len(data.encode(a)) for a in answers) + 1
            limit = cfg.seq_len + 1 if task.kind == "multiple_choice" else cfg.seq_len
            extra = longest if task.kind == "multiple_choice" else task.max_new_tokens
            _check_length(len(data.encode(prompt)) + extra, limit, name)


def _task_prompts(ecfg: EvalConfig):
    """(task name, test examples, k-shot prompts) for every task, a pure function of ecfg."""
    for name in ecfg.tasks:
        task = TASKS[name]
        examples = eval_examples(task, ecfg.n_examples, ecfg.seed)
        rng = np.random.default_rng(ecfg.seed)
        yield name, examples, [few_shot_prompt(task, ex, ecfg.shots, rng) for ex in examples]


def generate(params, cfg: ModelConfig, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of `prompts`, each cut at its first newline."""
    encoded = [data.encode(p) for p in prompts]
    for p in encoded:
        _check_length(len(p) + max_new_tokens, cfg.seq_len, "generation")
    tokens = _pad_rows(encoded, cfg.seq_len)
    lengths = np.array([len(p) for p in encoded] + [1] * (len(tokens) - len(encoded)), np.int32)
    active = np.arange(len(tokens)) < len(encoded)
    outputs = []
    for start in range(0, len(tokens), EVAL_BATCH):
        rows = slice(start, start + EVAL_BATCH)
        outputs.append(
            np.asarray(
                _greedy(params, tokens[rows], lengths[rows], active[rows], max_new_tokens, cfg)
            )
        )
    out = np.concatenate(outputs)
    return [
        data.decode(out[i, n : n + max_new_tokens]).split("\n")[0]
        for i, n in enumerate(lengths[: len(prompts)])
    ]


def continuation_logprobs(params, cfg: ModelConfig, pairs: list[tuple[str, str]]) -> np.ndarray:
    """log p(continuation | context) for each (context, continuation) pair."""
    rows, masks = [], []
    for context, continuation in pairs:
        ctx, cont = data.encode(context), data.encode(continuation)
        _check_length(len(ctx) + len(cont), cfg.seq_len + 1, "multiple-choice")
        rows.append(np.concatenate([ctx, cont]))
        masks.append(np.r_[np.zeros(len(ctx)), np.ones(len(cont))])
    tokens, mask = _pad_rows(rows, cfg.seq_len + 1), _pad_rows(masks, cfg.seq_len + 1)
    scores = [
        np.asarray(
            _continuation_logprob(params, tokens[i : i + EVAL_BATCH], mask[i : i + EVAL_BATCH], cfg)
        )
        for i in range(0, len(tokens), EVAL_BATCH)
    ]
    return np.concatenate(scores)[: len(pairs)]


def exact_match(prediction: str, target: str) -> bool:
    return prediction.strip() == target.strip()


def choice_correct(logprobs: np.ndarray, examples: list[Example]) -> np.ndarray:
    """0/1 per example: does the highest-scoring choice equal the target? `logprobs` holds the
    choices of all examples one after another."""
    correct, offset = [], 0
    for ex in examples:
        k = len(ex.choices)
        correct.append(ex.choices[int(np.argmax(logprobs[offset : offset + k]))] == ex.target)
        offset += k
    return np.array(correct, float)


def score_task(
    params, cfg: ModelConfig, task: Task, examples: list[Example], prompts: list[str]
) -> np.ndarray:
    """Per-example 0/1 correctness."""
    if task.kind == "generate":
        predictions = generate(params, cfg, prompts, task.max_new_tokens)
        return np.array([exact_match(p, ex.target) for p, ex in zip(predictions, examples)], float)
    # Each choice is scored with its terminating newline, so a short answer that is the prefix
    # of a longer one ("9" vs "97") is compared as a complete answer.
    pairs = [
        (prompt, choice + "\n") for prompt, ex in zip(prompts, examples) for choice in ex.choices
    ]
    return choice_correct(continuation_logprobs(params, cfg, pairs), examples)


def evaluate(params, cfg: ModelConfig, ecfg: EvalConfig) -> list[dict]:
    """One row per task: value (mean score), its binomial standard error, and the baseline."""
    rows = []
    for name, examples, prompts in _task_prompts(ecfg):
        task = TASKS[name]
        correct = score_task(params, cfg, task, examples, prompts)
        p = float(correct.mean())
        rows.append(
            {
                "task": name,
                "metric": task.metric,
                "shots": ecfg.shots,
                "value": p,
                "stderr": float(np.sqrt(p * (1 - p) / len(correct))),
                "n_examples": len(correct),
                "random_baseline": task.random_baseline,
            }
        )
    return rows
