"""Evaluation throughput on a fixed model: multiple-choice examples/s (batched log-likelihood),
generation examples/s with the KV cache, and its speed-up over recomputing the whole window for
every new token (what evaluation.evaluate did before it had a cache).

    python bench/eval.py [--model s6] [--seq-len 256] [--examples 200] [--new-tokens 32]

Parameters are a random initialisation: throughput does not depend on what the model learned,
but the number of generated tokens does, so generation runs without stop strings to a fixed
length. Text is byte-tokenized.
Times exclude compilation (one warm-up call) and take the best of --repeats.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from evaluation.evaluate import prompt_sets
from evaluation.generate import generate
from evaluation.likelihood import continuation_logprobs
from scaling import zoo
from scaling.config import EvalConfig, ModelConfig
from scaling.model import apply, init_params
from scaling.tokenizer import ByteTokenizer


@partial(jax.jit, static_argnames=("cfg", "new_tokens"))
def _recompute_greedy(params, tokens, lengths, cfg: ModelConfig, new_tokens: int):
    """Greedy decoding without a cache: a full forward pass over the window per new token."""
    rows = jnp.arange(tokens.shape[0])

    def add_token(i, toks):
        position = lengths + i - 1
        next_token = jnp.argmax(apply(params, cfg, toks)[rows, position], -1)
        return toks.at[rows, position + 1].set(next_token)

    return jax.lax.fori_loop(0, new_tokens, add_token, tokens)


def best_time(fn, repeats: int) -> float:
    fn()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="s6", choices=sorted(zoo.LADDER))
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = ModelConfig(**zoo.shape(args.model), seq_len=args.seq_len)
    params = init_params(cfg, 0)
    tok = ByteTokenizer()
    print(
        f"model {args.model} ({cfg.n_layer} layers, d_model {cfg.d_model}), seq_len {cfg.seq_len}"
    )
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s)\n")

    mc = EvalConfig(tasks=("largest_of_4",), shots=(3,), n_examples=args.examples)
    ps = next(prompt_sets(cfg, mc, tok))
    pairs = [(p, c + "\n") for p, ex in zip(ps.prompts, ps.examples) for c in ex.choices]
    t_mc = best_time(
        lambda: continuation_logprobs(params, cfg, tok, pairs, args.batch), args.repeats
    )
    print(f"multiple choice (largest_of_4, 3-shot, 4 choices): {args.examples / t_mc:8.1f} ex/s")

    gen = EvalConfig(tasks=("add3",), shots=(3,), n_examples=args.examples)
    prompts = next(prompt_sets(cfg, gen, tok)).prompts
    n = args.new_tokens

    def cached():
        return generate(params, cfg, tok, prompts, n, stop=(), batch=args.batch)

    encoded = tok.encode_batch(prompts)
    tokens = np.zeros((len(prompts), cfg.seq_len), np.int32)
    for i, p in enumerate(encoded):
        tokens[i, : len(p)] = p
    lengths = np.array([len(p) for p in encoded], np.int32)

    def recompute():
        out = [
            _recompute_greedy(
                params, tokens[s : s + args.batch], lengths[s : s + args.batch], cfg, n
            )
            for s in range(0, len(prompts), args.batch)
        ]
        return jax.block_until_ready(out)

    # Same greedy tokens both ways (the cache changes the cost, not the result).
    first = np.asarray(recompute()[0])
    for i, sample in enumerate(cached()[: args.batch]):
        assert sample.text == tok.decode(first[i, lengths[i] : lengths[i] + n])
    t_cache, t_full = best_time(cached, args.repeats), best_time(recompute, args.repeats)
    print(f"generation (add3, 3-shot, {n} new tokens):")
    for label, t in (("KV cache", t_cache), ("full recompute", t_full)):
        print(f"  {label:<17}{args.examples / t:8.1f} ex/s  {args.examples * n / t:9.0f} tok/s")
    print(f"  KV-cache speed-up  {t_full / t_cache:8.1f}x")


if __name__ == "__main__":
    main()
