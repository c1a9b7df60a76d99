"""What the families' Hugging Face layouts share: the array transforms of their export tables
and the reading of a transformers config.json.

A family that exports (gpt2, llama) declares, beside its model:

    HF_EXPORT     rows (our parameter path, Hugging Face tensor name, transform); `{i}` stands
                  for the layer index in both. A transform turns our array into theirs:
                    copy     as it is
                    rows     reshape to (shape[0], -1): a kernel's input axis first, its outputs
                             flattened
                    cols     reshape to (-1, shape[-1]): its inputs flattened, the output last
                    flat     reshape to (-1,): a bias over several axes
                    T        the transpose of a 2-D array (torch's nn.Linear stores (out, in))
                    rows_T, cols_T   rows or cols, then T
    HF_OUTPUT     our parameters that the logits are linear in: µP's output multiplier
                  (layers.mup_ratio) is folded into them, so that transformers' forward pass,
                  which has no multiplier, gives our logits
    HF_PREFIX     the prefix of the base model's tensors, which a checkpoint saved from the base
                  class (GPT2Model rather than GPT2LMHeadModel) leaves out
    HF_POSITIONS  the learned position table, if any: imported with a shorter context, only its
                  first seq_len rows are kept (the model is the same on sequences that fit)
    HF_TIED       {their head: their embedding} for a checkpoint with tie_word_embeddings,
                  whose head is the embedding (an untied family imports it as a copy)
    HF_IGNORED    a regular expression of tensor names a published checkpoint may hold that are
                  not parameters (causal-mask and rotary buffers, a copy of a tied head)
    hf_config(m)                 the architecture part of transformers' config.json
    model_fields(hf, where)      our ModelConfig fields of a config.json, refusing (ConfigError
                                 naming the field) what the family cannot compute exactly

The moe family has none: its capacity drops tokens, which no transformers layout does.
"""

from __future__ import annotations

import numpy as np

from scaling.typed import ConfigError

TRANSFORMS = ("copy", "rows", "cols", "flat", "T", "rows_T", "cols_T")
# transformers' model_type -> our family
MODEL_TYPES = {"gpt2": "gpt2", "llama": "llama"}
_MISSING = object()


def to_theirs(x: np.ndarray, transform: str) -> np.ndarray:
    """Our array in the Hugging Face layout."""
    base = transform.removesuffix("_T")
    if base == "rows":
        x = x.reshape(x.shape[0], -1)
    elif base == "cols":
        x = x.reshape(-1, x.shape[-1])
    elif base == "flat":
        x = x.reshape(-1)
    return x.T if transform.endswith("T") else x


def to_ours(y: np.ndarray, transform: str, shape: tuple[int, ...]) -> np.ndarray:
    """Their array back in our layout of `shape` (the inverse of to_theirs)."""
    return (y.T if transform.endswith("T") else y).reshape(shape)


def layer_rows(table, n_layer: int):
    """(our path, their name, transform) of every parameter: the table's `{i}` rows per layer."""
    for path, name, transform in table:
        for i in range(n_layer) if "{i}" in path else [0]:
            yield path.format(i=i), name.format(i=i), transform


def number(hf: dict, key: str, where: str, default=_MISSING, kind: type = int):
    """hf[key] (or `default` when absent or null), refused unless a positive number of `kind`."""
    value = hf.get(key)
    value = default if value is None else value
    if value is _MISSING:
        raise ConfigError(f"{where}: {key}", "missing", f"give {key} as in transformers' config")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok or (kind is int and value != int(value)):
        problem = f"{value!r} is not a positive {kind.__name__}"
        raise ConfigError(f"{where}: {key}", problem, f"give a positive {kind.__name__}")
    return kind(value)


def expect(hf: dict, key: str, allowed: tuple, where: str, default, why: str) -> None:
    """Refuse hf[key] (default when absent) unless it is one of `allowed`: a setting whose other
    values the family does not compute (`why` says what it computes)."""
    value = hf.get(key)
    value = default if value is None else value
    if value not in allowed:
        raise ConfigError(
            f"{where}: {key}",
            f"{value!r} cannot be represented ({why})",
            f"only {' or '.join(map(repr, allowed))} can be imported",
        )
