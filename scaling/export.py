"""A model's parameters in the field's formats and back.

Hugging Face: transformers' own layout of the family (GPT2LMHeadModel, LlamaForCausalLM; the
tables and configs are the families', scaling.families.hf): `config.json`, `model.safetensors`
(float32, torch's names and shapes) and the run's tokenizer (`tokenizer.json` of the
`tokenizers` library, or a SentencePiece `tokenizer.model`). µP's output multiplier is folded
into the parameters the logits are linear in, so that transformers' forward pass, which knows no
multiplier, gives our logits; attention is scaled by 1/√head_dim in both. Reading such a
directory back gives a ModelConfig and our parameter tree: bit for bit what was exported (a µP
model comes back as the standard-parametrisation model with the same logits).

npz: `params.npz`, our parameter tree flattened to `/`-joined paths, as trained (nothing
folded), beside our own config.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import safetensors.numpy

from scaling import tokenizer
from scaling.config import ModelConfig
from scaling.families import get_family
from scaling.families.hf import MODEL_TYPES, layer_rows, to_ours, to_theirs
from scaling.families.layers import mup_ratio
from scaling.model import init_params
from scaling.typed import ConfigError, build

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"  # a checkpoint split over several files
TOKENIZER_JSON, TOKENIZER_MODEL = "tokenizer.json", "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
NPZ = "params.npz"
IDS_SET_BY = ("added_tokens", "normalizer", "pre_tokenizer", "model")  # of a tokenizer.json
RUN_RECORD = "scaling_run.json"  # the run an export came from: its config, step, tokens, loss


def _paths(tree) -> dict:
    """{`block_0/attn/qkv/kernel`: leaf} of a parameter tree."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(k.key for k in path): x for path, x in leaves}


def flatten(params) -> dict[str, np.ndarray]:
    """{`block_0/attn/qkv/kernel`: array} of a parameter tree."""
    return {path: np.asarray(x) for path, x in _paths(params).items()}


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """The parameter tree of flatten's paths."""
    tree: dict = {}
    for path, x in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = x
    return tree


def hf_family(m: ModelConfig):
    """The family module of m, refused when it has no Hugging Face layout."""
    family = get_family(m.family)
    if family.HF_EXPORT is None:
        raise ConfigError(
            "--format",
            f"family {m.family} has no exact Hugging Face layout (its capacity drops tokens, "
            "which transformers' Mixtral never does)",
            "export it with --format npz",
        )
    return family


def same_model(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether two configs describe the same Hugging Face model (a llama's d_ff, for one, is
    only known up to its SwiGLU width)."""
    return a.family == b.family and hf_family(a).hf_config(a) == hf_family(b).hf_config(b)


def to_hf(params, m: ModelConfig, tok: tokenizer.Tokenizer) -> tuple[dict, dict]:
    """(transformers config.json, {tensor name: float32 array}) of a model."""
    family = hf_family(m)
    ours, ratio = flatten(params), np.float32(mup_ratio(m))
    tensors = {}
    for path, name, transform in layer_rows(family.HF_EXPORT, m.n_layer):
        x = ours.pop(path).astype(np.float32)
        if path in family.HF_OUTPUT and ratio != 1:
            x = x * ratio  # µP's output multiplier
        tensors[name] = np.ascontiguousarray(to_theirs(x, transform))
    assert not ours, f"parameters without a Hugging Face name: {sorted(ours)}"
    config = family.hf_config(m) | {
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "dtype": "float32",
        "torch_dtype": "float32",  # dtype's name before transformers 4.56
    }
    return config, tensors


def from_hf(config: dict, tensors: dict, where: str, seq_len: int = 0) -> tuple[ModelConfig, dict]:
    """(ModelConfig, our parameter tree) of a transformers config.json and its tensors, read
    from the checkpoint directory `where` (named in errors); a context of seq_len (0: the
    checkpoint's own) when a shorter one is wanted."""
    where, weights = f"{where}/{CONFIG}", f"{where}/{WEIGHTS}"
    kind = config.get("model_type")
    if kind not in MODEL_TYPES:
        raise ConfigError(
            f"{where}: model_type", f"{kind!r} is not a layout we compute", f"use {MODEL_TYPES}"
        )
    family = get_family(MODEL_TYPES[kind])
    fields = family.model_fields(config, where)
    if seq_len:
        if family.HF_POSITIONS and seq_len > fields["seq_len"]:
            raise ConfigError(
                "--seq-len",
                f"{seq_len} > the {fields['seq_len']} learned positions of {where}",
                f"use at most {fields['seq_len']}",
            )
        fields["seq_len"] = seq_len
    m = build(ModelConfig, fields)
    m.validate(f"{where}: model")
    tensors = _their_names(dict(tensors), family, config)
    shapes = {k: x.shape for k, x in _paths(jax.eval_shape(lambda: init_params(m, 0))).items()}
    params = {}
    for path, name, transform in layer_rows(family.HF_EXPORT, m.n_layer):
        if name not in tensors:
            raise ConfigError(weights, f"no tensor {name}", "save the model whole")
        y = tensors.pop(name)
        if name == family.HF_POSITIONS:
            y = y[: m.seq_len]
        want = to_theirs(np.zeros(shapes[path], np.int8), transform).shape
        if y.shape != want:
            raise ConfigError(
                f"{weights}: {name}",
                f"shape {y.shape}, config.json says {want}",
                "save the weights and config.json together",
            )
        params[path] = to_ours(np.asarray(y, np.float32), transform, shapes[path])
    extra = sorted(k for k in tensors if not re.search(family.HF_IGNORED, k))
    if extra:
        raise ConfigError(
            weights,
            f"tensor {extra[0]} is not part of a {kind} model ({len(extra)} unknown)",
            "import a checkpoint of the plain architecture",
        )
    return m, unflatten(params)


def _their_names(tensors: dict, family, config: dict) -> dict:
    """The tensors under the causal-LM class's names: the base-model prefix added where a
    checkpoint of the base class left it out, a tied head given its embedding."""
    if not any(k.startswith(family.HF_PREFIX) for k in tensors):
        prefix = family.HF_PREFIX
        tensors = {k if k.startswith("lm_head.") else prefix + k: v for k, v in tensors.items()}
    if config.get("tie_word_embeddings"):
        for head, embedding in family.HF_TIED.items():
            if embedding in tensors:
                tensors[head] = tensors[embedding]
    return tensors


# ---------------------------------------------------------------------------------------------
# Files


def write_hf(out: Path, params, m: ModelConfig, tok: tokenizer.Tokenizer) -> list[str]:
    """Write the Hugging Face checkpoint of a model and its tokenizer into `out`; the names of
    the files written."""
    config, tensors = to_hf(params, m, tok)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / CONFIG, config)
    safetensors.numpy.save_file(tensors, out / WEIGHTS, metadata={"format": "pt"})
    os.chmod(out / WEIGHTS, (out / CONFIG).stat().st_mode)  # safetensors writes it private
    return [CONFIG, WEIGHTS, *write_tokenizer(out, tok, m.seq_len)]


def write_tokenizer(out: Path, tok: tokenizer.Tokenizer, context: int) -> list[str]:
    """The tokenizer's files for transformers: the byte tokenizer built as a tokenizer.json
    (tokenizer.byte_tokenizers_object), a tokenizers file copied as it is, a SentencePiece model
    copied as tokenizer.model. Special tokens are the run's; none is added when encoding."""
    if isinstance(tok, tokenizer.SentencePieceTokenizer):
        shutil.copyfile(tok.spec, out / TOKENIZER_MODEL)
        return [TOKENIZER_MODEL]
    if isinstance(tok, tokenizer.HFTokenizer):
        shutil.copyfile(tok.spec, out / TOKENIZER_JSON)
        name = tok.inner.id_to_token
    else:
        tokenizer.byte_tokenizers_object().save(str(out / TOKENIZER_JSON))
        name = str  # the byte tokenizer has no special tokens: both ids are None
    special = {
        f"{kind}_token": None if i is None else name(i)
        for kind, i in (("bos", tok.bos_id), ("eos", tok.eos_id))
    }
    _write_json(
        out / TOKENIZER_CONFIG,
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": context,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
        }
        | special,
    )
    return [TOKENIZER_JSON, TOKENIZER_CONFIG]


def write_npz(out: Path, params, run_config: dict) -> list[str]:
    """Our parameters as trained, flattened, beside our run config."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / NPZ, **flatten(params))
    _write_json(out / CONFIG, run_config)
    return [CONFIG, NPZ]


@dataclass(frozen=True)
class HFCheckpoint:
    config: dict  # transformers' config.json
    tensors: dict[str, np.ndarray]
    tokenizer: str  # `bytes` (our byte tokenizer's export), or the tokenizer file to copy
    run: dict | None  # RUN_RECORD of a checkpoint this project exported, else None


def read_hf(directory: Path) -> HFCheckpoint:
    """A local transformers checkpoint directory: config.json, model.safetensors (or shards
    listed in model.safetensors.index.json) and tokenizer.json or tokenizer.model."""
    if not directory.is_dir():
        raise ConfigError("HF_DIR", f"not a directory: {directory}", "give a checkpoint folder")
    config = _read_json(directory / CONFIG, "a transformers config.json")
    if not isinstance(config, dict):
        raise ConfigError(str(directory / CONFIG), "not a JSON object", "give transformers' one")
    tensors = {}
    for path in _weight_files(directory):
        try:
            tensors |= safetensors.numpy.load_file(path)
        except Exception as e:  # SafetensorError, OSError: a truncated or foreign file
            first = (str(e).splitlines() or [type(e).__name__])[0]
            problem = f"not a safetensors file ({first})"
            raise ConfigError(str(path), problem, "re-save it") from None
    record = directory / RUN_RECORD
    run = _read_json(record, "the run record of an export") if record.is_file() else None
    return HFCheckpoint(config, tensors, tokenizer_of(directory), run)


def _weight_files(directory: Path) -> list[Path]:
    if (directory / WEIGHTS).is_file():
        return [directory / WEIGHTS]
    if (directory / WEIGHTS_INDEX).is_file():
        index = _read_json(directory / WEIGHTS_INDEX, "a safetensors index")
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise ConfigError(str(directory / WEIGHTS_INDEX), "no weight_map", "re-save it")
        return [directory / f for f in sorted(set(index["weight_map"].values()))]
    found = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    raise ConfigError(
        str(directory),
        f"no {WEIGHTS} (found {found})",
        "save the model with safe_serialization=True (transformers' default)",
    )


def tokenizer_of(directory: Path) -> str:
    """`bytes` for our byte tokenizer's tokenizer.json (what sets its ids as ours, whatever a
    library that re-saved it added, such as a post-processor), else the tokenizer file's path."""
    path = directory / TOKENIZER_JSON
    if path.is_file():
        theirs = _read_json(path, "a tokenizers file")
        ours = json.loads(tokenizer.byte_tokenizers_object().to_str())
        same = isinstance(theirs, dict) and all(theirs.get(k) == ours[k] for k in IDS_SET_BY)
        return tokenizer.BYTES if same else str(path)
    if (directory / TOKENIZER_MODEL).is_file():
        return str(directory / TOKENIZER_MODEL)
    raise ConfigError(
        str(directory),
        f"no {TOKENIZER_JSON} or {TOKENIZER_MODEL}",
        "save the tokenizer beside the model (a fast tokenizer writes tokenizer.json)",
    )


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise ConfigError(str(path), "missing", f"give {what}")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(str(path), f"not JSON ({e})", f"give {what}") from None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
