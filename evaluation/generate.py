"""Batched generation with a key/value cache: greedy, or sampling with temperature and top-p.

Prompts, in tokens of the run's tokenizer, are right-aligned in a window of P slots (P rounded
up to a multiple of PROMPT_BUCKET, so that few programs are compiled), one pass fills the cache,
and every further token costs one position's compute. Sample j of a prompt draws from a key that
is a pure function of (seed, row id, step), so its text does not depend on how rows are batched.

Stopping is decided on text, like lm-eval's `until`: the output is decoded and cut at the first
occurrence of any stop string, which may straddle tokens or sit inside one, and the tokenizer's
EOS ends it too. On the device a row halts at EOS or at a token whose own text holds a stop
string; that finds every one-byte stop ("\n"). A longer stop can straddle tokens, so then the
rows still running are decoded and checked on the host every STOP_CHECK_EVERY tokens.

Each sample also returns the mean log-probability of its tokens under the model's own
(untempered) distribution: Codex ranks samples by it (Chen et al. 2021, pick-1 of n).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scaling.config import ModelConfig
from scaling.model import decode, init_cache
from scaling.tokenizer import Tokenizer

PROMPT_BUCKET = 32
STOP_CHECK_EVERY = 8  # new tokens between host checks for stops that can straddle tokens


@dataclass(frozen=True)
class Sample:
    text: str  # up to (not including) the first stop string or EOS
    mean_logprob: float  # over the new tokens up to the one completing the stop (or the EOS)
    stopped: bool  # a stop string or EOS came within the budget


class Rows(NamedTuple):
    """What the decoding loop reads for one batch of rows, besides its state."""

    keys: jax.Array  # each row's random key
    pad: jax.Array  # empty slots left of each right-aligned prompt
    width: jax.Array  # prompt slots: the cache position of the first new token
    temperature: jax.Array
    top_p: jax.Array
    n_valid: jax.Array  # the tokenizer's vocabulary size: higher ids are padding
    halts: jax.Array  # (model vocab,) bool: see _halting_ids


def _pick(logits, key, step, temperature, top_p, n_valid):
    """One token per row: argmax at temperature 0, else a draw from the tempered distribution
    cut to its top-p nucleus (Holtzman et al. 2020); and its untempered log-probability. Ids from
    n_valid on (the padding of the model's vocabulary) are never picked: no text decodes them."""
    logits = jnp.where(jnp.arange(logits.shape[-1]) < n_valid, logits, -jnp.inf)
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


def _start(params, prompt, pad, active, cfg: ModelConfig, budget: int):
    """The loop's state before the first new token: the cache filled with the prompts."""
    rows = prompt.shape[0]
    logits, cache = decode(params, cfg, prompt, init_cache(cfg, rows), 0, pad)
    out = jnp.zeros((rows, budget), jnp.int32)
    logp = jnp.zeros((rows, budget), jnp.float32)
    return jnp.int32(0), logits[:, -1], cache, out, logp, ~active


@partial(jax.jit, static_argnames=("cfg", "budget"), donate_argnames=("state",))
def _decode(params, state, prompt, active, rows: Rows, until, cfg: ModelConfig, budget: int):
    """New tokens up to step `until` (<= budget) from `state`, or, with state None, from the
    prompts (filling the cache in the same program: one call when no host check is needed);
    stops early once every row has halted."""
    if state is None:
        state = _start(params, prompt, rows.pad, active, cfg, budget)

    def step(state):
        i, last, cache, out, logp, done = state
        token, token_logp = _pick(last, rows.keys, i, rows.temperature, rows.top_p, rows.n_valid)
        out = out.at[:, i].set(jnp.where(done, 0, token))
        logp = logp.at[:, i].set(jnp.where(done, 0.0, token_logp))
        done = done | rows.halts[token]
        logits, cache = decode(params, cfg, token[:, None], cache, rows.width + i, rows.pad)
        return i + 1, logits[:, -1], cache, out, logp, done

    def more(state):
        i, *_, done = state
        return (i < until) & ~done.all()

    return jax.lax.while_loop(more, step, state)


def _bucket(n: int, size: int) -> int:
    return -(-n // size) * size


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, int] | None:
    """(start, end) of the earliest occurrence in `text` of any of `stops`, else None."""
    hits = [(i, i + len(s)) for s in stops if (i := text.find(s)) >= 0]
    return min(hits, default=None)


@lru_cache(maxsize=16)
def _halting_ids(tok: Tokenizer, model_vocab: int, stops: tuple[str, ...]) -> np.ndarray:
    """(model_vocab,) bool: EOS, and the ids whose own text holds a stop string, so that a row
    emitting one has certainly reached a stop (one whose text straddles tokens is found on the
    host). Every occurrence of a one-byte stop lies inside one token: no host check needed."""
    halts = np.zeros(model_vocab, bool)
    if stops:
        texts = (tok.decode([i]) for i in range(tok.vocab_size))
        halts[: tok.vocab_size] = [any(s in t for s in stops) for t in texts]
    if tok.eos_id is not None:
        halts[tok.eos_id] = True
    return halts


def _mark_stopped(tok: Tokenizer, out: np.ndarray, done: np.ndarray, n: int, stops) -> np.ndarray:
    """`done` and the running rows whose first n new tokens' text holds a stop string."""
    running = np.flatnonzero(~done)
    texts = [tok.decode(out[r, :n]) for r in running]
    done = done.copy()
    done[running] = [first_stop(t, stops) is not None for t in texts]
    return done


def _run(params, cfg: ModelConfig, tok: Tokenizer, prompt, rows: Rows, active, stops, limit: int):
    """(new tokens, their log-probabilities) of one batch: decoding on the device in one go, or,
    with stops that can straddle tokens, in runs of STOP_CHECK_EVERY tokens between host checks."""
    budget = max(8, 1 << (limit - 1).bit_length())  # few distinct output shapes
    every = limit if all(len(s.encode()) == 1 for s in stops) else STOP_CHECK_EVERY
    state = None
    for until in range(every, limit + every, every):
        until = min(until, limit)
        state = _decode(params, state, prompt, active, rows, np.int32(until), cfg, budget)
        *_, out, logp, done = state
        if until >= limit or bool(done.all()):
            break
        done = _mark_stopped(tok, np.asarray(out), np.asarray(done), until, stops)
        state = (*state[:-1], jnp.asarray(done))
    return np.asarray(out), np.asarray(logp)


def generate(
    params,
    cfg: ModelConfig,
    tok: Tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop: str | Sequence[str] = ("\n",),
    row_ids: list[int] | None = None,
    batch: int = 50,
    place=None,
) -> list[Sample]:
    """One continuation per prompt, in tokens of `tok` (the run's tokenizer), ended by the first
    of the `stop` strings (one string or several; () for none) or by EOS. `row_ids` name the
    random stream of each row (default: its index); give the same id to get the same sample.
    A prompt longer than cfg.seq_len - max_new_tokens loses tokens from the left (lm-eval's
    truncation; evaluation.evaluate instead refuses prompts that do not fit, naming the task).
    `place(array)` puts each batch's per-row arrays on the devices (a mesh: split by row)."""
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if "" in stops:
        raise ValueError("an empty stop string would end every sample at once")
    room = cfg.seq_len - max_new_tokens
    if room < 1:
        raise ValueError(f"{max_new_tokens} new tokens leave no room in seq_len={cfg.seq_len}")
    encoded = [ids[-room:] for ids in tok.encode_batch(prompts)]
    width = min(_bucket(max(map(len, encoded)), PROMPT_BUCKET), room)
    n_rows = _bucket(len(prompts), batch)
    tokens = np.zeros((n_rows, width), np.int32)
    pad = np.full(n_rows, width - 1, np.int32)
    for i, p in enumerate(encoded):
        tokens[i, width - len(p) :] = p
        pad[i] = width - len(p)
    ids = np.zeros(n_rows, np.uint32)
    ids[: len(prompts)] = list(range(len(prompts))) if row_ids is None else row_ids
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.asarray(ids))
    active = np.arange(n_rows) < len(prompts)
    halts = jnp.asarray(_halting_ids(tok, cfg.vocab_size, stops))
    put = place or (lambda x: x)
    outs, logps = [], []
    for s in range(0, n_rows, batch):
        r = slice(s, s + batch)
        rows = Rows(
            put(keys[r]),
            put(pad[r]),
            np.int32(width),
            np.float32(temperature),
            np.float32(top_p),
            np.int32(tok.vocab_size),
            halts,
        )
        out, logp = _run(
            params, cfg, tok, put(tokens[r]), rows, put(active[r]), stops, max_new_tokens
        )
        outs.append(out)
        logps.append(logp)
    return [
        _sample(tok, o, lp, stops, max_new_tokens)
        for o, lp in zip(np.concatenate(outs), np.concatenate(logps))
    ][: len(prompts)]


def _sample(tok: Tokenizer, out: np.ndarray, logp: np.ndarray, stops, limit: int) -> Sample:
    """The text before the first stop string or EOS; the mean log-probability of the tokens up to
    the one that completes the stop (or the EOS)."""
    ids = out[:limit]
    eos = np.flatnonzero(ids == tok.eos_id) if tok.eos_id is not None else []
    end = int(eos[0]) if len(eos) else limit
    text = tok.decode(ids[:end])
    hit = first_stop(text, stops)
    if hit is None:
        n_scored = min(end + 1, limit)
    else:  # the fewest tokens whose text reaches the end of the stop
        n_scored = bisect.bisect_left(
            range(end + 1), hit[1], key=lambda k: len(tok.decode(ids[:k]))
        )
        text = text[: hit[0]]
    stopped = hit is not None or len(eos) > 0
    return Sample(text, float(logp[:n_scored].mean()), stopped)
