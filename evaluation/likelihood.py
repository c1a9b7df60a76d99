"""Log-likelihoods of continuations given contexts, under the run's tokenizer, tokenized as
lm-evaluation-harness does.

lm-eval's rule (`_encode_pair`, lm_eval/api/model.py): trailing whitespace of the context moves
onto the continuation; the whole text and the context alone are encoded; the continuation's
tokens are the whole text's tokens after as many as the context alone has, and the model reads
the context's tokens followed by them. A tokenizer that writes a word with its leading space
(GPT-2's BPE: " 42") so scores " 42" after a prompt ending in "is ", the way its training text
spells it, instead of a lone " " and then "42".

One departure, so that a score only holds tokens that spell continuation text: leading
continuation tokens that spell nothing but the moved whitespace (it did not merge with the word
after it, which under bytes it never does) go back to the context. A byte-level score is thus
the continuation's bytes exactly, as it was before evaluation knew other tokenizers; lm-eval
would add the space's log-probability to every choice (the same for each, so `acc` agrees, but
`logprob` and `acc_norm` would not).

Rows longer than seq_len + 1 tokens lose context tokens from the left (lm-eval's truncation).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from evaluation.generate import PROMPT_BUCKET
from scaling.config import ModelConfig
from scaling.model import apply
from scaling.tokenizer import Tokenizer


def _move_space(context: str, continuation: str) -> tuple[str, str, str]:
    """(context, continuation, moved whitespace) with the context's trailing whitespace moved."""
    n_spaces = len(context) - len(context.rstrip())
    if not n_spaces:
        return context, continuation, ""
    space = context[-n_spaces:]
    return context[:-n_spaces], space + continuation, space


def _spaces_only(tok: Tokenizer, ids: np.ndarray, space: str) -> int:
    """How many leading `ids` spell nothing but (a prefix of) the moved whitespace."""
    n, text = 0, ""
    while text != space and n < len(ids):
        text = tok.decode(ids[: n + 1])
        if not space.startswith(text):
            break
        n += 1
    return n


def encode_pairs(tok: Tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[np.ndarray, int]]:
    """(tokens, n_context) per (context, continuation): the model reads tokens[:-1] and
    tokens[n_context:] are scored (see the module docstring)."""
    moved = [_move_space(context, continuation) for context, continuation in pairs]
    contexts = list(dict.fromkeys(c for c, _, _ in moved))  # choices of one prompt share it
    context_ids = dict(zip(contexts, tok.encode_batch(contexts)))
    wholes = tok.encode_batch([c + x for c, x, _ in moved])
    encoded = []
    for (context, _, space), whole, pair in zip(moved, wholes, pairs):
        ctx = context_ids[context]
        continuation = whole[len(ctx) :]
        n_context = len(ctx) + _spaces_only(tok, continuation, space)
        if n_context == len(ctx) + len(continuation):
            raise ValueError(f"no token of {pair[1]!r} to score after {pair[0][-40:]!r}")
        encoded.append((np.concatenate([ctx, continuation]), n_context))
    return encoded


def fit_row(tokens: np.ndarray, n_context: int, seq_len: int) -> tuple[np.ndarray, int]:
    """At most seq_len + 1 tokens: context tokens go from the left, never scored ones."""
    cut = max(0, len(tokens) - (seq_len + 1))
    if cut >= max(n_context, 1):
        raise ValueError(f"{len(tokens) - n_context} continuation tokens exceed seq_len={seq_len}")
    return tokens[cut:], n_context - cut


@partial(jax.jit, static_argnames=("cfg",))
def _continuation_logprob(params, tokens, mask, cfg: ModelConfig):
    """Per row: the sum of log p(token) over the positions where mask is 1 (mask aligned with
    tokens), and whether each of those tokens is the model's most likely one (lm-eval's
    is_greedy)."""
    logits = apply(params, cfg, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits)
    token_logp = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    greedy = (jnp.argmax(logits, axis=-1) == tokens[:, 1:]) | (mask[:, 1:] == 0)
    return (token_logp * mask[:, 1:]).sum(-1), greedy.all(-1)


def _pad_rows(arrays: list[np.ndarray], width: int, batch: int) -> np.ndarray:
    out = np.zeros((-(-len(arrays) // batch) * batch, width), np.int32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def score_rows(
    params, cfg: ModelConfig, rows: list[tuple[np.ndarray, int]], batch: int = 50, place=None
) -> tuple[np.ndarray, np.ndarray]:
    """(log-probability, is_greedy) of tokens[n_context:] for each (tokens, n_context) row of at
    most seq_len + 1 tokens, the model reading tokens[:-1]. Rows go longest first into batches,
    each as wide as its longest row (rounded up to a bucket, to bound the number of compiled
    shapes): rows are causal and start at position 0, so a narrower window gives the same
    log-probabilities as the full context at a fraction of the cost. `place(array)` puts each
    batch on the devices (default: as jax does; a mesh: scaling.mesh.batch_sharding)."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    logprob, greedy = np.zeros(len(rows)), np.zeros(len(rows), bool)
    for start in range(0, len(rows), batch):
        chunk = order[start : start + batch]
        longest = len(rows[chunk[0]][0])
        width = min(cfg.seq_len + 1, -(-longest // PROMPT_BUCKET) * PROMPT_BUCKET)
        tokens = _pad_rows([rows[i][0] for i in chunk], width, batch)
        mask = _pad_rows(
            [np.arange(len(t)) >= n for t, n in (rows[i] for i in chunk)], width, batch
        )
        if place is not None:
            tokens, mask = place(tokens), place(mask)
        lp, g = _continuation_logprob(params, tokens, mask, cfg)
        logprob[chunk], greedy[chunk] = np.asarray(lp)[: len(chunk)], np.asarray(g)[: len(chunk)]
    return logprob, greedy


def continuation_logprobs(
    params, cfg: ModelConfig, tok: Tokenizer, pairs: list[tuple[str, str]], batch: int = 50
) -> np.ndarray:
    """log p(continuation | context) for each (context, continuation) pair, summed over the
    continuation's tokens (score_rows of the rows encode_pairs gives, fit to the context)."""
    rows = [
        fit_row(tokens, n_context, cfg.seq_len) for tokens, n_context in encode_pairs(tok, pairs)
    ]
    return score_rows(params, cfg, rows, batch)[0]
