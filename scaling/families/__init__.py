"""Model families, found by name (`model.family`). A family is one module of this package that
owns everything the rest of the project needs to know about its architecture, so that adding
one is one new file plus a line here (Levanter's model registry, nanoGPT's one-file model):

    Model(cfg)          Flax module: (tokens, cache=None, index=None, pad=None) -> (logits,
                        cache, aux_loss); aux_loss is a float32 scalar added to the training
                        loss (a routed MLP's load balancing), 0 for a dense family. Every
                        parameter carries logical axis names (scaling.mesh's rule table).
    init_cache(cfg, batch)             the empty key/value cache that decoding fills
    param_counts(cfg)                  scaling.flops.ParamCounts from the config alone
    forward_flops_per_sequence(cfg)    Hoffmann et al. 2022 App. F, adapted to the family
    activation_terms(cfg)              activation bytes per token and layer kept for the
                                       backward pass, by the logical axis that splits them
                                       (scaling.memory)
    label(cfg)                         the readable name of a shape (`s3`, `llama-s3`)
    HF_EXPORT, hf_config, ...          the Hugging Face layout (scaling.families.hf), or
                                       HF_EXPORT = None where no layout computes the family

scaling.model, scaling.flops and scaling.memory dispatch on cfg.family; nothing else needs to.

This module imports no JAX, so configs can be validated without it: `FIELDS` names the model
fields each family reads (the others must keep their defaults), and `get_family` imports a
family's module only when asked for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scaling.config import ModelConfig

ROPE = ("n_kv_head", "rope_theta")
ROUTED = ("n_expert", "expert_top_k", "capacity_factor", "router_aux_weight")
FIELDS: dict[str, tuple[str, ...]] = {  # the model fields beyond the shared shape
    "gpt2": (),
    "llama": ROPE,
    "moe": ROPE + ROUTED,
}


def get_family(name: str) -> ModuleType:
    """The module of family `name` (imported on first use)."""
    if name not in FIELDS:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(FIELDS)}")
    return importlib.import_module(f"scaling.families.{name}")


def label(m: ModelConfig) -> str:
    """The readable name of a model: its family's label of its shape (`s3`, `llama-s3`)."""
    return get_family(m.family).label(m)
