"""Named model sizes: a ladder of GPT shapes from 3k (s0) to 85M (s10) non-embedding parameters.

Each rung fixes (n_layer, d_model); n_head = d_model / 16 (head size 16, small enough for the
smallest rungs) and d_ff = 4·d_model (GPT-2). vocab_size and seq_len come from the run config.
A rung is a shape of every model family: the SwiGLU families (llama, moe) make their MLP 2/3 of
d_ff wide, which matches gpt2's non-embedding parameters (scaling.families.llama).
`scaling.flops.param_counts` gives each rung's exact counts for a given family, vocab and
context.
"""

from __future__ import annotations

HEAD_DIM = 16

LADDER: dict[str, tuple[int, int]] = {  # name: (n_layer, d_model)
    "s0": (1, 16),
    "s1": (1, 32),
    "s2": (2, 32),
    "s3": (2, 48),
    "s4": (2, 64),
    "s5": (3, 96),
    "s6": (4, 128),
    "s7": (6, 192),
    "s8": (8, 256),
    "s9": (12, 384),
    "s10": (12, 768),
}


def shape(name: str) -> dict:
    """Model-config fields of a named rung."""
    n_layer, d_model = LADDER[name]
    return {
        "n_layer": n_layer,
        "d_model": d_model,
        "n_head": d_model // HEAD_DIM,
        "d_ff": 4 * d_model,
    }


def label(n_layer: int, d_model: int, n_head: int, d_ff: int) -> str:
    """The ladder name of a shape, or 'L{n_layer}-d{d_model}' for a shape off the ladder."""
    for name in LADDER:
        if shape(name) == {"n_layer": n_layer, "d_model": d_model, "n_head": n_head, "d_ff": d_ff}:
            return name
    return f"L{n_layer}-d{d_model}"
