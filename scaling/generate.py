"""Batched generation with a key/value cache: greedy, or sampling with temperature and top-p.

Prompts of a batch are right-aligned in a window of P slots (P rounded up to a multiple of
PROMPT_BUCKET, so that few programs are compiled), one pass fills the cache, and every further
token costs one position's compute. Sample j of a prompt draws from a key that is a pure
function of (seed, row id, step), so its text does not depend on how rows are batched.
Each sample also returns the mean log-probability of its tokens under the model's own
(untempered) distribution: Codex ranks samples by it (Chen et al. 2021, pick-1 of n).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from scaling import data
from scaling.config import ModelConfig
from scaling.model import decode, init_cache

PROMPT_BUCKET = 32
NO_STOP = -1


@dataclass(frozen=True)
class Sample:
    text: str  # up to (not including) the stop token
    mean_logprob: float  # over the generated tokens, the stop token included
    stopped: bool  # the stop token was generated within the budget


def _pick(logits, key, step, temperature, top_p):
    """One token per row: argmax at temperature 0, else a draw from the tempered distribution
    cut to its top-p nucleus (Holtzman et al. 2020); and its untempered log-probability."""
    logprobs = jax.nn.log_softmax(logits)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    ordered = jnp.sort(scaled, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(ordered, axis=-1)
    inside = jnp.cumsum(probs, axis=-1) - probs < top_p  # always keeps the most likely token
    threshold = jnp.min(jnp.where(inside, ordered, jnp.inf), axis=-1, keepdims=True)
    nucleus = jnp.where(scaled >= threshold, scaled, -jnp.inf)
    draw = jax.vmap(lambda k, lg: jax.random.categorical(jax.random.fold_in(k, step), lg))
    token = jnp.where(temperature > 0, draw(key, nucleus), jnp.argmax(logits, axis=-1))
    return token, jnp.take_along_axis(logprobs, token[:, None], axis=-1)[:, 0]


@partial(jax.jit, static_argnames=("cfg", "budget"))
def _generate(params, prompt, pad, keys, active, temperature, top_p, stop, limit, cfg, budget):
    """Up to `limit` (<= budget) new tokens per row; stops early once every row is done."""
    rows, width = prompt.shape
    logits, cache = decode(params, cfg, prompt, init_cache(cfg, rows), 0, pad)

    def step(carry):
        i, last, cache, out, logp, done = carry
        token, token_logp = _pick(last, keys, i, temperature, top_p)
        out = out.at[:, i].set(jnp.where(done, 0, token))
        logp = logp.at[:, i].set(jnp.where(done, 0.0, token_logp))
        done = done | (token == stop)
        logits, cache = decode(params, cfg, token[:, None], cache, width + i, pad)
        return i + 1, logits[:, -1], cache, out, logp, done

    def more(carry):
        i, *_, done = carry
        return (i < limit) & ~done.all()

    out = jnp.zeros((rows, budget), jnp.int32)
    logp = jnp.zeros((rows, budget), jnp.float32)
    start = (jnp.int32(0), logits[:, -1], cache, out, logp, ~active)
    _, _, _, out, logp, _ = jax.lax.while_loop(more, step, start)
    return out, logp


def _bucket(n: int, size: int) -> int:
    return -(-n // size) * size


def generate(
    params,
    cfg: ModelConfig,
    prompts: list[str],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop: str | None = "\n",
    row_ids: list[int] | None = None,
    batch: int = 50,
) -> list[Sample]:
    """One continuation per prompt. `row_ids` name the random stream of each row (default: its
    index); give the same id to get the same sample. The caller checks that every prompt plus
    max_new_tokens fits in cfg.seq_len (scaling.evaluate does, naming the task)."""
    encoded = [data.encode(p) for p in prompts]
    longest = max(len(p) for p in encoded)
    if longest + max_new_tokens > cfg.seq_len:
        raise ValueError(f"prompt of {longest} tokens + {max_new_tokens} exceeds {cfg.seq_len}")
    width = min(_bucket(longest, PROMPT_BUCKET), cfg.seq_len - max_new_tokens)
    budget = max(8, 1 << (max_new_tokens - 1).bit_length())  # few distinct output shapes
    row_ids = list(range(len(prompts))) if row_ids is None else row_ids
    n_rows = _bucket(len(prompts), batch)
    tokens = np.zeros((n_rows, width), np.int32)
    pad = np.full(n_rows, width - 1, np.int32)
    for i, p in enumerate(encoded):
        tokens[i, width - len(p) :] = p
        pad[i] = width - len(p)
    ids = np.zeros(n_rows, np.uint32)
    ids[: len(prompts)] = row_ids
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.asarray(ids))
    active = np.arange(n_rows) < len(prompts)
    stop_id = NO_STOP if stop is None else int(data.encode(stop)[0])
    outs, logps = [], []
    for s in range(0, n_rows, batch):
        rows = slice(s, s + batch)
        out, logp = _generate(
            params,
            tokens[rows],
            pad[rows],
            keys[rows],
            active[rows],
            jnp.float32(temperature),
            jnp.float32(top_p),
            jnp.int32(stop_id),
            jnp.int32(max_new_tokens),
            cfg,
            budget,
        )
        outs.append(np.asarray(out))
        logps.append(np.asarray(logp))
    return [
        _sample(o, lp, stop_id, max_new_tokens)
        for o, lp in zip(np.concatenate(outs), np.concatenate(logps))
    ][: len(prompts)]


def _sample(out: np.ndarray, logp: np.ndarray, stop_id: int, limit: int) -> Sample:
    hits = np.flatnonzero(out[:limit] == stop_id)
    end = int(hits[0]) if len(hits) else limit
    n_scored = min(end + 1, limit)
    return Sample(data.decode(out[:end]), float(logp[:n_scored].mean()), bool(len(hits)))
