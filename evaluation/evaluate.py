"""Few-shot evaluation: log-likelihood scoring of choices, generation with a KV cache, and the
metrics of the literature, each with its standard error and number of examples.

Everything is in tokens of the run's tokenizer (DataConfig.run_tokenizer): prompts, budgets, the fit
into the context. Scores and metrics are on text or its bytes, comparable across tokenizers.

Multiple choice (lm-evaluation-harness definitions): `acc` picks the choice of highest total
log-probability (summed over its tokens, split from the prompt's as lm-eval does:
evaluation.likelihood), `acc_norm` the highest log-probability per UTF-8 byte of the continuation
(lm-eval divides by its length in characters), `brier_score` is
Σ_i (p_i − y_i)² with p the softmax over the choices' log-probabilities and y the target scores
normalised to sum 1 (BIG-bench's calibration_multiple_choice_brier_score averages the terms over
the choices instead), and `logprob` is the log-probability of the right answer.

Generation: greedy decoding up to the first newline (or EOS), scored by `exact_match` (after
stripping whitespace), with two continuous companions (Schaeffer et al. 2023):
`token_edit_distance`, the Levenshtein distance between the UTF-8 bytes of the generated and
target text (byte tokens whatever the run's tokenizer), and `logprob`, log p(target | prompt) by
teacher forcing. Chain of thought (`exact_match:cot`): the exemplars show rationales, the answer
is read after the last "So the answer is"; self-consistency (`exact_match:self_consistency`,
Wang et al. 2023) takes a majority vote over sampled chains.

Code (Codex, Chen et al. 2021): zero-shot completions of a signature and docstring, cut at the
end of the function body and unit-tested in the sandbox (evaluation.sandbox). `pass@1:greedy`;
with eval.samples = n, `pass@k:t{T}` by the unbiased estimator 1 − C(n−c, k)/C(n, k) at each
temperature T, `pass@k` at the best temperature for that k (Codex's reporting; optimistic by
the choice), and `pass@1:ranked_t{T}`, the pass rate of the one sample of highest mean token
log-probability.

BIG-bench task files (evaluation.bigbench) run as BIG-bench runs them: its prompts, and
its metrics, named as BIG-bench names them. A task listing multiple-choice metrics gets the
choice metrics above plus `multiple_choice_grade` (the mean target score of the chosen choice)
and `macro_f1` if listed (not BIG-bench's calibration extras, its mean-over-choices Brier score
and expected_calibration_error); one listing generative metrics generates up to `generation_budget`
new tokens (no stop string: BIG-bench's output rules read the answer afterwards) and gets each
of them (exact_str_match, bleu, rouge1/rouge2/rougeLsum, ...: evaluation.metrics), with
`token_edit_distance` and `logprob` beside them, and `log_likelihood` if listed; a task
listing both is scored both ways on the same prompts. A metric it cannot compute (bleurt) is
named in a warning, once.

Every row: task, metric, shots, value, stderr (sample standard deviation / sqrt(n), as
lm-eval), n_examples, random_baseline, higher_is_better.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from evaluation import code_eval
from evaluation.bigbench import nshot_prompts, postprocess
from evaluation.generate import generate
from evaluation.likelihood import continuation_logprobs, encode_pairs
from evaluation.metrics import (
    UNSUPPORTED,
    bigbench_generation_rows,
    byte_edit_distance,
    choice_metrics,
    exact_match,
    log_likelihood,
    macro_f1_row,
    majority_vote,
    summary,
    uniform_brier,
)
from evaluation.problems import Problem
from evaluation.task_suite import expand_all, resolve
from evaluation.tasks import (
    CODE,
    COT_ANSWER,
    GENERATE,
    MIXED,
    MULTIPLE_CHOICE,
    Example,
    Task,
    cot_answer,
    eval_examples,
)
from evaluation.tasks import prompt as build_prompt
from scaling.config import ConfigError, EvalConfig, ModelConfig
from scaling.tokenizer import Tokenizer

PACK_LIMIT = 64  # the most shots pack_shots tries


# ----------------------------------------------------------------------------- prompting


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one task at one number of shots, for its test examples."""

    task: Task
    shots: int
    examples: list[Example]
    prompts: list[str]
    cot_prompts: list[str]  # empty unless chain of thought applies to this task
    budget: int  # new tokens a generated answer may take (generation_budget)


def _build(task: Task, examples: list[Example], shots: int, ecfg: EvalConfig, cot: bool):
    if task.bigbench and not cot:  # BIG-bench's own sampling, of the same queries
        return nshot_prompts(task, ecfg.n_examples, shots, ecfg.seed, ecfg.instruction)
    rng = np.random.default_rng([ecfg.seed, shots, int(cot)])
    return [build_prompt(task, ex, shots, rng, ecfg.instruction, cot) for ex in examples]


def generation_budget(tok: Tokenizer, task: Task) -> int:
    """New tokens a generated answer may take: the task's own number, or, for a task file, as
    many as its longest answer takes in the run's tokenizer (a target, or a rationale with its
    answer), spelt after a space as running text spells it, so that every target is within
    reach. (BIG-bench's evaluate_task.py generates 30 tokens, whatever the task.)"""
    if task.max_new_tokens is not None:
        return task.max_new_tokens
    answers = {t for ex in task.examples for t in ex.targets}
    answers |= {ex.rationale + COT_ANSWER + ex.answer for ex in task.examples if ex.rationale}
    return max(len(ids) for ids in tok.encode_batch([" " + a for a in answers]))


def _choice_pairs(task: Task, examples, prompts) -> list[tuple[str, str]]:
    """(prompt, choice + answer_suffix) for every choice of every example, example-major."""
    return [(p, c + task.answer_suffix) for p, ex in zip(prompts, examples) for c in ex.choices]


def _tokens_needed(tok: Tokenizer, task: Task, examples, prompts, budget: int, chain: bool):
    """Context slots each prompt needs with its answers: its longest choice row (the last token
    needs no input position) if its choices are scored, the prompt and the generation budget if
    an answer (or a chain of thought) is generated; the larger when both."""
    needs = [0] * len(prompts)
    if task.scores_choices and not chain:
        rows = iter(encode_pairs(tok, _choice_pairs(task, examples, prompts)))
        needs = [max(len(next(rows)[0]) - 1 for _ in ex.choices) for ex in examples]
    if task.kind != MULTIPLE_CHOICE or chain:
        needs = [max(n, len(ids) + budget) for n, ids in zip(needs, tok.encode_batch(prompts))]
    return needs


def _too_long(tok, task: Task, examples, prompts, seq_len: int, budget: int, chain: bool):
    """(example index, tokens needed) of the first prompt that does not fit, else None."""
    needs = _tokens_needed(tok, task, examples, prompts, budget, chain)
    return next(((i, n) for i, n in enumerate(needs) if n > seq_len), None)


def _packed_shots(tok, task: Task, examples, ecfg: EvalConfig, seq_len: int, budget, cot) -> int:
    """The most shots (<= PACK_LIMIT) with which every test prompt fits (GPT-3's protocol)."""
    pool = PACK_LIMIT if task.sample is not None else len(task.examples) - 1
    lo, hi = 0, min(PACK_LIMIT, pool)
    while lo < hi:  # binary search: prompt length grows with the number of shots
        mid = (lo + hi + 1) // 2
        prompts = _build(task, examples, mid, ecfg, cot)
        if _too_long(tok, task, examples, prompts, seq_len, budget, cot) is None:
            lo = mid
        else:
            hi = mid - 1
    return lo


def prompt_sets(cfg: ModelConfig, ecfg: EvalConfig, tok: Tokenizer):
    """Every (task, shots) to evaluate with its prompts, a pure function of the configs and the
    run's tokenizer; a BIG-bench parent task gives its subtasks. Raises ConfigError naming the
    task and example when a prompt does not fit the context."""
    for task in map(resolve, expand_all(ecfg.tasks)):
        examples = eval_examples(task, ecfg.n_examples, ecfg.seed)
        cot = ecfg.chain_of_thought and task.has_rationales
        budget = generation_budget(tok, task) if task.kind != MULTIPLE_CHOICE or cot else 0
        if task.kind == CODE:  # Codex protocol: zero-shot from the signature and docstring
            all_shots = [0]
        elif ecfg.pack_shots:
            all_shots = [_packed_shots(tok, task, examples, ecfg, cfg.seq_len, budget, cot)]
        else:
            all_shots = sorted(set(ecfg.shots))
        for shots in all_shots:
            prompts = _build(task, examples, shots, ecfg, cot=False)
            cot_prompts = _build(task, examples, shots, ecfg, cot=True) if cot else []
            ps = PromptSet(task, shots, examples, prompts, cot_prompts, budget)
            fix = "lower eval.shots, use eval.pack_shots, or raise model.seq_len"
            check_fit(ps, tok, cfg.seq_len, fix)
            yield ps


def check_fit(ps: PromptSet, tok: Tokenizer, seq_len: int, fix: str) -> None:
    """ConfigError naming the task and example whose prompt and answer exceed seq_len."""
    for variant, chain in ((ps.prompts, False), (ps.cot_prompts, True)):
        bad = _too_long(tok, ps.task, ps.examples, variant, seq_len, ps.budget, chain)
        if bad is not None:
            raise ConfigError(
                f"eval: task {ps.task.name}, example {bad[0]}, {ps.shots} shots",
                f"the prompt and answer need {bad[1]} tokens; model.seq_len is {seq_len}",
                fix,
            )


def check_prompts_fit(cfg: ModelConfig, ecfg: EvalConfig, tok: Tokenizer) -> None:
    """Fail before training if some prompt plus its answer exceeds the context."""
    for _ in prompt_sets(cfg, ecfg, tok):
        pass


# ------------------------------------------------------------------------------- scoring


def _score_choices(params, cfg: ModelConfig, tok: Tokenizer, ps: PromptSet, ecfg) -> list[dict]:
    task = ps.task
    pairs = _choice_pairs(task, ps.examples, ps.prompts)
    logprobs = continuation_logprobs(params, cfg, tok, pairs, ecfg.batch_size)
    per_example, picked, offset = [], [], 0
    for ex in ps.examples:
        k = len(ex.choices)
        n_bytes = np.array([len((c + task.answer_suffix).encode()) for c in ex.choices])
        scores = np.array([s for _, s in ex.target_scores])
        per_example.append(choice_metrics(logprobs[offset : offset + k], n_bytes, scores))
        picked.append(ex.choices[int(np.argmax(logprobs[offset : offset + k]))])
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
    if task.bigbench:
        baselines["multiple_choice_grade"] = task.random_baseline
    rows = [
        summary(
            [m[metric] for m in per_example],
            metric=metric,
            random_baseline=base,
            higher_is_better=metric != "brier_score",
        )
        for metric, base in baselines.items()
    ]
    if "macro_f1" in task.metrics:
        truth = [next(c for c, s in ex.target_scores if s == 1) for ex in ps.examples]
        rows.append(macro_f1_row(truth, picked))
    return rows


def _target_logprobs(params, cfg: ModelConfig, tok: Tokenizer, ps: PromptSet, ecfg, every: bool):
    """Per example, log p(target + answer_suffix | prompt) of its first target, or of each."""
    task = ps.task
    alternatives = [ex.target if every else ex.target[:1] for ex in ps.examples]
    pairs = [(p, t + task.answer_suffix) for p, ts in zip(ps.prompts, alternatives) for t in ts]
    flat = iter(continuation_logprobs(params, cfg, tok, pairs, ecfg.batch_size))
    return [np.array([next(flat) for _ in ts]) for ts in alternatives]


def _score_generation(params, cfg: ModelConfig, tok: Tokenizer, ps: PromptSet, ecfg) -> list[dict]:
    """Greedy answers: a built-in task's up to the first newline, scored by exact_match; a task
    file's read by its output rules and scored by its BIG-bench metrics."""
    task, examples = ps.task, ps.examples
    stop = () if task.bigbench else ("\n",)
    greedy = generate(params, cfg, tok, ps.prompts, ps.budget, stop=stop, batch=ecfg.batch_size)
    texts = [postprocess(s.text, task) if task.bigbench else s.text for s in greedy]
    targets = [ex.target for ex in examples]
    if task.bigbench:
        chance = task.random_baseline if task.kind == GENERATE else 0.0
        rows = bigbench_generation_rows(task.metrics, texts, targets, chance)
    else:
        matches = [exact_match(t, ts) for t, ts in zip(texts, targets)]
        rows = [
            summary(
                matches,
                metric="exact_match",
                random_baseline=task.random_baseline,
                higher_is_better=True,
            )
        ]
    rows.append(
        summary(
            [byte_edit_distance(t, ts[0]) for t, ts in zip(texts, targets)],
            metric="token_edit_distance",
            random_baseline=np.nan,
            higher_is_better=False,
        )
    )
    every = "log_likelihood" in task.metrics
    if task.kind == MIXED and not every:
        return rows  # its one logprob row is the right choice's (_score_choices)
    logprobs = _target_logprobs(params, cfg, tok, ps, ecfg, every)
    named = {} if task.kind == MIXED else {"logprob": [lp[0] for lp in logprobs]}
    if every:
        named["log_likelihood"] = log_likelihood(logprobs)
    return rows + [
        summary(v, metric=m, random_baseline=np.nan, higher_is_better=True)
        for m, v in named.items()
    ]


def _score_cot(params, cfg: ModelConfig, tok: Tokenizer, ps: PromptSet, ecfg) -> list[dict]:
    """Chain of thought, greedy; and self-consistency when samples > 0."""
    if not ps.cot_prompts:
        return []
    task, examples = ps.task, ps.examples
    targets = [ex.target or (ex.answer,) for ex in examples]
    row = {"random_baseline": task.random_baseline, "higher_is_better": True}
    chains = generate(params, cfg, tok, ps.cot_prompts, ps.budget, batch=ecfg.batch_size)
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
            tok,
            [p for p in ps.cot_prompts for _ in range(m)],
            ps.budget,
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
        Problem(str(i), ex.input, ex.entry_point, ex.answer, ex.test)
        for i, ex in enumerate(ps.examples)
    ]
    completions = [
        [code_eval.truncate_completion(s.text) for s in samples[i * n : (i + 1) * n]]
        for i in range(len(problems))
    ]
    return code_eval.score_completions(problems, completions)


def _score_code(params, cfg: ModelConfig, tok: Tokenizer, ps: PromptSet, ecfg) -> list[dict]:
    """Codex's protocol: greedy pass@1; with samples, pass@k at each temperature (unbiased
    estimator over n = samples), its best temperature per k, and pick-1 of n by mean
    log-probability."""
    budget = ps.budget
    row = {"random_baseline": 0.0, "higher_is_better": True}
    greedy = generate(params, cfg, tok, ps.prompts, budget, stop=(), batch=ecfg.batch_size)
    rows = [summary([s.c for s in _passes(ps, greedy, 1)], metric="pass@1:greedy", **row)]
    if not ecfg.samples:
        return rows
    n, best = ecfg.samples, {}
    for temperature in ecfg.temperatures:
        sampled = generate(
            params,
            cfg,
            tok,
            [p for p in ps.prompts for _ in range(n)],
            budget,
            stop=(),
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


def evaluate(params, cfg: ModelConfig, ecfg: EvalConfig, tok: Tokenizer) -> list[dict]:
    """One row per task × shots × metric (see the module docstring), for a model trained on
    tokens of `tok` (DataConfig.run_tokenizer of its run, scaling.config)."""
    rows = []
    for ps in prompt_sets(cfg, ecfg, tok):
        for row in score(params, cfg, tok, ps, ecfg):
            row.pop("item_values", None)  # eval.jsonl keeps the summaries (BLEU has none)
            rows.append(row)
    return rows


def score(params, cfg: ModelConfig, tok: Tokenizer, ps: PromptSet, ecfg: EvalConfig):
    """The rows of one prompt set (task, shots, metric, value, ...), each with the metric's
    value on every example in `item_values` (for a bootstrap over items) where it has one."""
    task, model, scored = ps.task, (params, cfg, tok), []
    if missing := [f"{m} ({UNSUPPORTED[m]})" for m in task.metrics if m in UNSUPPORTED]:
        warnings.warn(f"task {task.name}: not scored: {', '.join(missing)}", stacklevel=2)
    if task.kind == CODE:
        scored = _score_code(*model, ps, ecfg)
    if task.scores_choices:
        scored += _score_choices(*model, ps, ecfg)
    if task.generates:
        scored += _score_generation(*model, ps, ecfg)
    scored += _score_cot(*model, ps, ecfg)
    return [{"task": task.name, "shots": ps.shots, **r} for r in scored]
