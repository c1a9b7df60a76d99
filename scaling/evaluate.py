"""Few-shot evaluation: log-likelihood scoring of choices, generation with a KV cache, and the
metrics of the literature, each with its standard error and number of examples.

Multiple choice (lm-evaluation-harness definitions): `acc` picks the choice of highest total
log-probability, `acc_norm` the highest log-probability per byte of the scored continuation
(lm-eval divides by its length in characters; one byte is one token here), `brier_score` is
Σ_i (p_i − y_i)² with p the softmax over the choices' log-probabilities and y the target scores
normalised to sum 1 (BIG-bench's calibration_multiple_choice_brier_score), and `logprob` is the
log-probability of the right answer.

Generation: greedy decoding scored by `exact_match` (after stripping whitespace), with two
continuous companions (Schaeffer et al. 2023): `token_edit_distance`, the Levenshtein distance
between the generated and target tokens, and `logprob`, log p(target | prompt) by teacher
forcing. Chain of thought (`exact_match:cot`): the exemplars show rationales, the answer is read
after the last "So the answer is"; self-consistency (`exact_match:self_consistency`, Wang et al.
2023) takes a majority vote over sampled chains.

Code (Codex, Chen et al. 2021): zero-shot completions of a signature and docstring, cut at the
end of the function body and unit-tested in the sandbox (scaling.sandbox). `pass@1:greedy`;
with eval.samples = n, `pass@k:t{T}` by the unbiased estimator 1 − C(n−c, k)/C(n, k) at each
temperature T, `pass@k` at the best temperature for that k (Codex's reporting; optimistic by
the choice), and `pass@1:ranked_t{T}`, the pass rate of the one sample of highest mean token
log-probability.

Every row: task, metric, shots, value, stderr (sample standard deviation / sqrt(n), as
lm-eval), n_examples, random_baseline, higher_is_better.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from scaling import code_eval, data
from scaling.config import ConfigError, EvalConfig, ModelConfig
from scaling.generate import PROMPT_BUCKET, generate
from scaling.model import apply
from scaling.tasks import (
    CODE,
    MULTIPLE_CHOICE,
    Example,
    Task,
    cot_answer,
    eval_examples,
    resolve,
)
from scaling.tasks import prompt as build_prompt

PACK_LIMIT = 64  # the most shots pack_shots tries


@partial(jax.jit, static_argnames=("cfg",))
def _continuation_logprob(params, tokens, mask, cfg: ModelConfig):
    """Sum of log p(token) over the positions where mask is 1 (mask aligned with tokens)."""
    logp = jax.nn.log_softmax(apply(params, cfg, tokens[:, :-1]))
    token_logp = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return (token_logp * mask[:, 1:]).sum(-1)


def _pad_rows(arrays: list[np.ndarray], width: int, batch: int) -> np.ndarray:
    out = np.zeros((-(-len(arrays) // batch) * batch, width), np.int32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def continuation_logprobs(
    params, cfg: ModelConfig, pairs: list[tuple[str, str]], batch: int = 50
) -> np.ndarray:
    """log p(continuation | context) for each (context, continuation) pair, in batches of rows
    left-aligned in at most seq_len+1 tokens (the last token needs no input position)."""
    rows, masks = [], []
    for context, continuation in pairs:
        ctx, cont = data.encode(context), data.encode(continuation)
        if len(ctx) + len(cont) > cfg.seq_len + 1:
            raise ValueError(f"{len(ctx) + len(cont)} tokens exceed seq_len+1={cfg.seq_len + 1}")
        rows.append(np.concatenate([ctx, cont]))
        masks.append(np.r_[np.zeros(len(ctx)), np.ones(len(cont))])
    # Rows are causal and start at position 0, so a window just wide enough for the longest
    # row (rounded up to a bucket, to bound the number of compiled shapes) gives the same
    # log-probabilities as the full context at a fraction of the cost.
    width = min(cfg.seq_len + 1, -(-max(map(len, rows)) // PROMPT_BUCKET) * PROMPT_BUCKET)
    tokens = _pad_rows(rows, width, batch)
    mask = _pad_rows(masks, width, batch)
    scores = [
        np.asarray(_continuation_logprob(params, tokens[i : i + batch], mask[i : i + batch], cfg))
        for i in range(0, len(tokens), batch)
    ]
    return np.concatenate(scores)[: len(pairs)]


# --------------------------------------------------------------------------- pure metrics


def exact_match(prediction: str, targets: tuple[str, ...]) -> bool:
    return prediction.strip() in {t.strip() for t in targets}


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def choice_metrics(logprobs: np.ndarray, n_bytes: np.ndarray, scores: np.ndarray) -> dict:
    """acc, acc_norm, brier_score and logprob of one multiple-choice example, from each
    choice's log-probability, the byte length of its scored continuation and its target score."""
    best = scores.max()
    probs = np.exp(logprobs - logprobs.max())
    probs /= probs.sum()
    y = scores / scores.sum()
    return {
        "acc": float(scores[np.argmax(logprobs)] == best),
        "acc_norm": float(scores[np.argmax(logprobs / n_bytes)] == best),
        "brier_score": float(((probs - y) ** 2).sum()),
        "logprob": float(logprobs[np.argmax(scores)]),
    }


def uniform_brier(scores: np.ndarray) -> float:
    """The Brier score of a uniform guess: the chance level of brier_score."""
    y = scores / scores.sum()
    return float(((1 / len(y) - y) ** 2).sum())


def majority_vote(answers: list[str]) -> str:
    """The most common non-empty answer; ties go to the one seen first."""
    counts = Counter(a for a in answers if a)
    return max(counts, key=lambda a: (counts[a], -answers.index(a))) if counts else ""


def summary(values, **row) -> dict:
    """value = mean, stderr = sample standard deviation / sqrt(n) (0 for a single value)."""
    v = np.asarray(values, float)
    stderr = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"value": float(v.mean()), "stderr": stderr, "n_examples": len(v), **row}


# ----------------------------------------------------------------------------- prompting


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one task at one number of shots, for its test examples."""

    task: Task
    shots: int
    examples: list[Example]
    prompts: list[str]
    cot_prompts: list[str]  # empty unless chain of thought applies to this task


def _build(task: Task, examples: list[Example], shots: int, ecfg: EvalConfig, cot: bool):
    rng = np.random.default_rng([ecfg.seed, shots, int(cot)])
    return [build_prompt(task, ex, shots, rng, ecfg.instruction, cot) for ex in examples]


def _answer_budget(task: Task, ex: Example, generating: bool) -> int:
    """Tokens after the prompt: the longest scored choice, or the generation budget."""
    if task.kind == MULTIPLE_CHOICE and not generating:
        return max(len(data.encode(c + task.answer_suffix)) for c in ex.choices) - 1
    return task.max_new_tokens


def _too_long(task: Task, examples, prompts, seq_len: int, cot: bool) -> tuple[int, int] | None:
    """(example index, tokens needed) of the first prompt that does not fit, else None."""
    for i, (ex, p) in enumerate(zip(examples, prompts)):
        need = len(data.encode(p)) + _answer_budget(task, ex, generating=cot)
        if need > seq_len:
            return i, need
    return None


def _packed_shots(task: Task, examples, ecfg: EvalConfig, seq_len: int, cot: bool) -> int:
    """The most shots (<= PACK_LIMIT) with which every test prompt fits (GPT-3's protocol)."""
    pool = PACK_LIMIT if task.sample is not None else len(task.examples) - 1
    lo, hi = 0, min(PACK_LIMIT, pool)
    while lo < hi:  # binary search: prompt length grows with the number of shots
        mid = (lo + hi + 1) // 2
        prompts = _build(task, examples, mid, ecfg, cot)
        if _too_long(task, examples, prompts, seq_len, cot) is None:
            lo = mid
        else:
            hi = mid - 1
    return lo


def prompt_sets(cfg: ModelConfig, ecfg: EvalConfig):
    """Every (task, shots) to evaluate with its prompts, a pure function of the configs.
    Raises ConfigError naming the task and example when a prompt does not fit the context."""
    for name in ecfg.tasks:
        task = resolve(name)
        examples = eval_examples(task, ecfg.n_examples, ecfg.seed)
        cot = ecfg.chain_of_thought and task.has_rationales
        if task.kind == CODE:  # Codex protocol: zero-shot from the signature and docstring
            all_shots = [0]
        elif ecfg.pack_shots:
            all_shots = [_packed_shots(task, examples, ecfg, cfg.seq_len, cot)]
        else:
            all_shots = sorted(set(ecfg.shots))
        for shots in all_shots:
            prompts = _build(task, examples, shots, ecfg, cot=False)
            cot_prompts = _build(task, examples, shots, ecfg, cot=True) if cot else []
            for variant, generating in ((prompts, False), (cot_prompts, True)):
                bad = _too_long(task, examples, variant, cfg.seq_len, generating)
                if bad is not None:
                    raise ConfigError(
                        f"eval: task {task.name}, example {bad[0]}, {shots} shots",
                        f"the prompt and answer need {bad[1]} tokens; model.seq_len is "
                        f"{cfg.seq_len}",
                        "lower eval.shots, use eval.pack_shots, or raise model.seq_len",
                    )
            yield PromptSet(task, shots, examples, prompts, cot_prompts)


def check_prompts_fit(cfg: ModelConfig, ecfg: EvalConfig) -> None:
    """Fail before training if some prompt plus its answer exceeds the context."""
    for _ in prompt_sets(cfg, ecfg):
        pass


# ------------------------------------------------------------------------------- scoring


def _score_choices(params, cfg: ModelConfig, ps: PromptSet, ecfg: EvalConfig) -> list[dict]:
    task = ps.task
    pairs = [
        (p, c + task.answer_suffix) for p, ex in zip(ps.prompts, ps.examples) for c in ex.choices
    ]
    logprobs = continuation_logprobs(params, cfg, pairs, ecfg.batch_size)
    per_example, offset = [], 0
    for ex in ps.examples:
        k = len(ex.choices)
        n_bytes = np.array([len(data.encode(c + task.answer_suffix)) for c in ex.choices])
        scores = np.array([s for _, s in ex.target_scores])
        per_example.append(choice_metrics(logprobs[offset : offset + k], n_bytes, scores))
        offset += k
    brier_chance = np.mean(
        [uniform_brier(np.array([s for _, s in ex.target_scores])) for ex in ps.examples]
    )
    baselines = {
        "acc": task.random_baseline,
        "acc_norm": task.random_baseline,
        "brier_score": brier_chance,
        "logprob": np.nan,
    }
    return [
        summary(
            [m[metric] for m in per_example],
            metric=metric,
            random_baseline=base,
            higher_is_better=metric != "brier_score",
        )
        for metric, base in baselines.items()
    ]


def _score_generation(params, cfg: ModelConfig, ps: PromptSet, ecfg: EvalConfig) -> list[dict]:
    task, examples = ps.task, ps.examples
    greedy = generate(params, cfg, ps.prompts, task.max_new_tokens, batch=ecfg.batch_size)
    targets = [ex.target for ex in examples]
    pairs = [(p, ex.answer + task.answer_suffix) for p, ex in zip(ps.prompts, examples)]
    rows = [
        summary(
            [exact_match(s.text, t) for s, t in zip(greedy, targets)],
            metric="exact_match",
            random_baseline=task.random_baseline,
            higher_is_better=True,
        ),
        summary(
            [
                edit_distance(data.encode(s.text.strip()), data.encode(t[0].strip()))
                for s, t in zip(greedy, targets)
            ],
            metric="token_edit_distance",
            random_baseline=np.nan,
            higher_is_better=False,
        ),
        summary(
            continuation_logprobs(params, cfg, pairs, ecfg.batch_size),
            metric="logprob",
            random_baseline=np.nan,
            higher_is_better=True,
        ),
    ]
    return rows + _score_cot(params, cfg, ps, ecfg)


def _score_cot(params, cfg: ModelConfig, ps: PromptSet, ecfg: EvalConfig) -> list[dict]:
    """Chain of thought, greedy; and self-consistency when samples > 0."""
    if not ps.cot_prompts:
        return []
    task, examples = ps.task, ps.examples
    targets = [ex.target or (ex.answer,) for ex in examples]
    row = {"random_baseline": task.random_baseline, "higher_is_better": True}
    chains = generate(params, cfg, ps.cot_prompts, task.max_new_tokens, batch=ecfg.batch_size)
    rows = [
        summary(
            [exact_match(cot_answer(c.text), t) for c, t in zip(chains, targets)],
            metric="exact_match:cot",
            **row,
        )
    ]
    if ecfg.samples:
        m = ecfg.samples
        sampled = generate(
            params,
            cfg,
            [p for p in ps.cot_prompts for _ in range(m)],
            task.max_new_tokens,
            temperature=ecfg.sc_temperature,
            top_p=ecfg.top_p,
            seed=ecfg.seed,
            batch=ecfg.batch_size,
        )
        votes = [
            majority_vote([cot_answer(s.text) for s in sampled[i * m : (i + 1) * m]])
            for i in range(len(examples))
        ]
        rows.append(
            summary(
                [exact_match(v, t) for v, t in zip(votes, targets)],
                metric="exact_match:self_consistency",
                **row,
            )
        )
    return rows


def _passes(ps: PromptSet, samples: list, n: int) -> list[code_eval.ProblemScore]:
    """Sandboxed unit tests of n truncated samples per problem (samples problem-major)."""
    problems = [
        code_eval.Problem(str(i), ex.input, ex.entry_point, ex.answer, ex.test)
        for i, ex in enumerate(ps.examples)
    ]
    completions = [
        [code_eval.truncate_completion(s.text) for s in samples[i * n : (i + 1) * n]]
        for i in range(len(problems))
    ]
    return code_eval.score_completions(problems, completions)


def _score_code(params, cfg: ModelConfig, ps: PromptSet, ecfg: EvalConfig) -> list[dict]:
    """Codex's protocol: greedy pass@1; with samples, pass@k at each temperature (unbiased
    estimator over n = samples), its best temperature per k, and pick-1 of n by mean
    log-probability."""
    budget = ps.task.max_new_tokens
    row = {"random_baseline": 0.0, "higher_is_better": True}
    greedy = generate(params, cfg, ps.prompts, budget, stop=None, batch=ecfg.batch_size)
    rows = [summary([s.c for s in _passes(ps, greedy, 1)], metric="pass@1:greedy", **row)]
    if not ecfg.samples:
        return rows
    n, best = ecfg.samples, {}
    for temperature in ecfg.temperatures:
        sampled = generate(
            params,
            cfg,
            [p for p in ps.prompts for _ in range(n)],
            budget,
            stop=None,
            temperature=temperature,
            top_p=ecfg.top_p,
            seed=ecfg.seed,
            batch=ecfg.batch_size,
        )
        scores = _passes(ps, sampled, n)
        c = [s.c for s in scores]
        for k in ecfg.pass_k:
            r = summary(code_eval.pass_at_k_many(n, c, k), metric=f"pass@{k}:t{temperature}", **row)
            rows.append(r)
            if r["value"] >= best.get(k, {"value": -1})["value"]:
                best[k] = r | {"metric": f"pass@{k}"}
        logprobs = [
            [x.mean_logprob for x in sampled[i * n : (i + 1) * n]] for i in range(len(scores))
        ]
        picked = code_eval.ranked_passes(scores, logprobs)
        rows.append(summary(picked, metric=f"pass@1:ranked_t{temperature}", **row))
    return rows + list(best.values())


def evaluate(params, cfg: ModelConfig, ecfg: EvalConfig) -> list[dict]:
    """One row per task × shots × metric (see the module docstring)."""
    rows = []
    for ps in prompt_sets(cfg, ecfg):
        if ps.task.kind == MULTIPLE_CHOICE:
            scored = _score_choices(params, cfg, ps, ecfg) + _score_cot(params, cfg, ps, ecfg)
        elif ps.task.kind == CODE:
            scored = _score_code(params, cfg, ps, ecfg)
        else:
            scored = _score_generation(params, cfg, ps, ecfg)
        rows += [{"task": ps.task.name, "shots": ps.shots, **r} for r in scored]
    return rows
