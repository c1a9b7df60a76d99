"""The metrics of few-shot evaluation on its outputs: text, log-probabilities, target scores.
Text metrics read text or its UTF-8 bytes, never the run's tokens, so that values compare across
tokenizers."""

from __future__ import annotations

from collections import Counter

import numpy as np


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
    """acc, acc_norm, brier_score and logprob of one multiple-choice example, from each
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
