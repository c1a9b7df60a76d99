"""The metrics of few-shot evaluation on its outputs: text, log-probabilities, target scores.
Text metrics read text or its UTF-8 bytes, never the run's tokens, so that values compare across
tokenizers.

BIG-bench's metrics (bigbench/api/task_metrics.py) are computed as it computes them, on answers
read by its output rules (evaluation.bigbench.postprocess), on its scales (bleu, rouge and
sequence_f1 in 0-100): `bigbench_generation_rows`, and multiple_choice_grade and macro_f1 beside
the choice metrics. BLEU is sacrebleu's corpus BLEU with the options of t5.evaluation.metrics
(tokenizer "intl", exp smoothing), references padded with the first as BIG-bench pads them;
ROUGE is rouge-score's F-measure (no stemming, " . " split into lines for rougeLsum, as t5), of
the best reference per example. BIG-bench reports ROUGE as rouge-score's BootstrapAggregator
median of resampled means (unseeded); here it is the mean itself, with its standard error.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer
from scipy.special import logsumexp


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


def byte_edit_distance(prediction: str, target: str) -> int:
    """`token_edit_distance`: the Levenshtein distance between the UTF-8 bytes of the stripped
    texts. Bytes whatever tokenizer the run has, so that values compare across tokenizers (the
    tokens of the byte tokenizer, which gave the metric its name)."""
    return edit_distance(prediction.strip().encode(), target.strip().encode())


def choice_metrics(logprobs: np.ndarray, n_bytes: np.ndarray, scores: np.ndarray) -> dict:
    """acc, acc_norm, brier_score, logprob and multiple_choice_grade (the target score of the
    choice picked: acc for 0/1 scores) of one multiple-choice example, from each
    choice's log-probability, the UTF-8 length of its continuation and its target score.
    acc_norm divides by bytes, not tokens, so that it compares across tokenizers (lm-eval divides
    by characters)."""
    best = scores.max()
    probs = np.exp(logprobs - logprobs.max())
    probs /= probs.sum()
    y = scores / scores.sum()
    return {
        "acc": float(scores[np.argmax(logprobs)] == best),
        "acc_norm": float(scores[np.argmax(logprobs / n_bytes)] == best),
        "brier_score": float(((probs - y) ** 2).sum()),
        "logprob": float(logprobs[np.argmax(scores)]),
        "multiple_choice_grade": float(scores[np.argmax(logprobs)]),  # BIG-bench's
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
    """value = mean, stderr = sample standard deviation / sqrt(n) (0 for a single value), and
    the values themselves (item_values)."""
    v = np.asarray(values, float)
    stderr = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {
        "value": float(v.mean()),
        "stderr": stderr,
        "n_examples": len(v),
        **row,
        "item_values": v.tolist(),
    }


# --------------------------------------------------------------------------- BIG-bench


def exact_str_match(response: str, targets: tuple[str, ...]) -> float:
    """BIG-bench's exact_str_match: the answer as read is one of the targets (not stripped)."""
    return float(response in targets)


def case_insensitive_str_match(response: str, targets: tuple[str, ...]) -> float:
    return float(response.strip().lower() in {t.strip().lower() for t in targets})


def numeric_match(response: str, targets: tuple[str, ...], rel_error: float = 0.1) -> float:
    """numeric_match_with_0_1_relative_error: both parse as numbers and |r - t| <= 0.1 |t| (the
    absolute error when t = 0). BIG-bench divides by t, not |t|, so that any number matches a
    negative target; none of its tasks has one, and here the bound is the intended |t|."""
    try:
        value, target = float(response), float(targets[0])
    except ValueError:
        return 0.0
    return float(abs(value - target) <= rel_error * (abs(target) if target else 1.0))


def sequence_f1(response: str, targets: tuple[str, ...]) -> float:
    """BIG-bench's sequence_f1 (a per-label accuracy, 0-100): the space-separated labels of the
    answer, cut or padded with "O" to the first target's length, that equal the target's."""
    want = targets[0].split(" ")
    got = (response.split(" ") + ["O"] * len(want))[: len(want)]
    return 100 * float(np.mean([g == w for g, w in zip(got, want)]))


PER_EXAMPLE = {
    "exact_str_match": exact_str_match,
    "case_insensitive_str_match": case_insensitive_str_match,
    "numeric_match_with_0_1_relative_error": numeric_match,
    "sequence_f1": sequence_f1,
}
ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
BLEU_BOOTSTRAP = 1000  # resamples for BLEU's standard error (sacrebleu's, seeded)
# BIG-bench metrics not computed here, and why; evaluation.evaluate warns once per task.
UNSUPPORTED = {
    "bleurt": "it needs the BLEURT-20 TensorFlow checkpoint",
    "calibration_multiple_choice_brier_score": "brier_score is reported instead",
    "expected_calibration_error": "not implemented",
    "weighted_log_probabilities": "not implemented",
    "weighted_probabilities": "not implemented",
}


def rouge(responses: list[str], targets: list[tuple[str, ...]]) -> dict[str, np.ndarray]:
    """Per example, 100 x the F-measure of its best reference, for rouge1, rouge2, rougeLsum."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
    lines = lambda text: text.replace(" . ", " .\n")  # noqa: E731 - t5's sentence split
    best = {k: [] for k in ROUGE_TYPES}
    for response, refs in zip(responses, targets):
        scores = [scorer.score(target=lines(t), prediction=lines(response)) for t in refs]
        for k in ROUGE_TYPES:
            best[k].append(100 * max(s[k].fmeasure for s in scores))
    return {k: np.array(v) for k, v in best.items()}


def bleu(responses: list[str], targets: list[tuple[str, ...]]) -> tuple[float, float]:
    """Corpus BLEU (0-100) as BIG-bench computes it, and its bootstrap standard error
    (sacrebleu's 95% interval half-width over 1.96)."""
    streams = [
        [t[i] if i < len(t) else t[0] for t in targets] for i in range(max(map(len, targets)))
    ]
    metric = sacrebleu.BLEU(tokenize="intl", smooth_method="exp", smooth_value=0.0)
    score = metric.corpus_score(responses, streams, n_bootstrap=BLEU_BOOTSTRAP)
    return score.score, score._ci / 1.96 if len(responses) > 1 else 0.0


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    """The mean over labels (those true or predicted) of 2TP / (2TP + FP + FN), which is
    scikit-learn's f1_score(average="macro") that BIG-bench calls (not a dependency here)."""
    labels = sorted(set(truth) | set(predicted))
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    f1 = []
    for label in labels:
        tp = np.sum((truth == label) & (predicted == label))
        wrong = np.sum((truth == label) != (predicted == label))
        f1.append(2 * tp / (2 * tp + wrong))
    return float(np.mean(f1))


def macro_f1_row(truth: list[str], predicted: list[str], draws: int = 1000) -> dict:
    """BIG-bench's macro_f1 of the chosen choices, with a bootstrap standard error (the
    standard deviation over `draws` resamples of the examples, seeded: it is not a mean)."""
    rng, n = np.random.default_rng(0), len(truth)
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    spread = [macro_f1(truth[i], predicted[i]) for i in rng.integers(0, n, (draws, n))]
    row = {"metric": "macro_f1", "random_baseline": np.nan, "higher_is_better": True}
    return {
        "value": macro_f1(truth, predicted),
        "stderr": float(np.std(spread, ddof=1)),
        "n_examples": n,
        **row,
    }


def bigbench_generation_rows(
    metrics, responses: list[str], targets: list[tuple[str, ...]], baseline: float
) -> list[dict]:
    """One row per BIG-bench generative metric of the task (rouge: one per ROUGE_TYPES) on the
    answers as read; `baseline` is the chance level of the exact-match metrics (0 for open
    generation). log_likelihood and the UNSUPPORTED metrics are left to the caller."""
    rows, n = [], len(responses)
    for metric in metrics:
        if metric in PER_EXAMPLE:
            values = [PER_EXAMPLE[metric](r, t) for r, t in zip(responses, targets)]
            chance = np.nan if metric == "sequence_f1" else baseline
            rows.append(
                summary(values, metric=metric, random_baseline=chance, higher_is_better=True)
            )
        elif metric == "rouge":
            for k, values in rouge(responses, targets).items():
                rows.append(
                    summary(values, metric=k, random_baseline=np.nan, higher_is_better=True)
                )
        elif metric == "bleu":
            value, stderr = bleu(responses, targets)
            row = {"metric": "bleu", "random_baseline": np.nan, "higher_is_better": True}
            rows.append({"value": value, "stderr": stderr, "n_examples": n, **row})
    return rows


def log_likelihood(logprobs: list[np.ndarray]) -> np.ndarray:
    """BIG-bench's log_likelihood per example: log of the summed probability of its targets."""
    return np.array([logsumexp(lp) for lp in logprobs])
