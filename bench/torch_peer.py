"""The PyTorch peer of bench/train_step.py: the run's model and AdamW step in eager PyTorch,
built from the family's own Hugging Face layout and started from the JAX model's weights.

    python bench/torch_peer.py '{"model": {...}, "batch_size": 8, "steps": 10, ...}'

prints one JSON line: tokens/s of every timed window, the parameter count, the first loss.

The model is not a second copy of the family: the worker initialises the JAX model as a run
does (scaling.model.init_params with the run's seed), converts it with scaling.export.to_hf to
transformers' config.json and tensors, and loads those tensors by name (strict) into a small
torch module of that layout: GPT2LMHeadModel's (Conv1D weights stored (in, out), fused c_attn,
tanh GELU, learned positions, head tied to wte) or LlamaForCausalLM's (RMSNorm, rotate-half
RoPE with rope_theta, grouped-query attention, SwiGLU, untied lm_head), eps and shapes read
from the config. Both sides thus start from identical weights, and on the same first batch the
first loss must agree to ~1e-4 (train_step.py checks it); tests/test_torch_peer.py checks the
logits. Written here rather than taken from transformers, which is not a dependency and whose
eager modules add masks, caches and hooks a training-speed peer should not pay for.

The step is the project's (scaling.train): mean next-token cross-entropy, gradients clipped to
global norm `grad_clip`, AdamW (betas, eps 1e-8, decoupled weight decay on exactly the
tensors scaling.train.optimizer decays: scaling.train.decayed, matrices not biases or gains), a
fixed learning rate; attention is F.scaled_dot_product_attention (PyTorch's fused CPU flash
attention), float32, the batches scaling.data.train_batch's.

PyTorch is a benchmark peer only (`pip install -e '.[bench]'`), never a project dependency.
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from scaling import data, export
from scaling.config import ModelConfig, run_config
from scaling.families.hf import layer_rows
from scaling.model import init_params
from scaling.train import decayed


class Conv1D(nn.Module):
    """transformers' GPT-2 linear layer: x @ weight + bias, weight stored (in, out)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        y = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return y.view(*x.shape[:-1], -1)


def attention(q, k, v, o_proj):
    """Causal attention of q (batch, time, heads, head_dim) over k, v (batch, time, kv_heads,
    head_dim), kv_heads dividing heads, through o_proj."""
    b, t, heads, _ = q.shape
    gqa = k.shape[2] != heads
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    h = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return o_proj(h.transpose(1, 2).reshape(b, t, -1))


class Gpt2Block(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, f, eps = c["n_embd"], c["n_inner"], c["layer_norm_epsilon"]
        self.n_head = c["n_head"]
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = nn.ModuleDict({"c_attn": Conv1D(d, 3 * d), "c_proj": Conv1D(d, d)})
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = nn.ModuleDict({"c_fc": Conv1D(d, f), "c_proj": Conv1D(f, d)})

    def forward(self, x):
        b, t, _ = x.shape
        qkv = self.attn["c_attn"](self.ln_1(x)).view(b, t, 3, self.n_head, -1)
        x = x + attention(*qkv.unbind(2), self.attn["c_proj"])
        h = F.gelu(self.mlp["c_fc"](self.ln_2(x)), approximate="tanh")
        return x + self.mlp["c_proj"](h)


class Gpt2(nn.Module):
    """GPT2LMHeadModel's layout: `transformer.*`, the head tied to `transformer.wte`."""

    def __init__(self, c: dict):
        super().__init__()
        assert c["activation_function"] in ("gelu_new", "gelu_pytorch_tanh"), c
        assert c["scale_attn_weights"] and not c["scale_attn_by_inverse_layer_idx"], c
        d = c["n_embd"]
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(c["vocab_size"], d),
                "wpe": nn.Embedding(c["n_positions"], d),
                "h": nn.ModuleList(Gpt2Block(c) for _ in range(c["n_layer"])),
                "ln_f": nn.LayerNorm(d, eps=c["layer_norm_epsilon"]),
            }
        )

    def forward(self, tokens):
        m = self.transformer
        x = m["wte"](tokens) + m["wpe"].weight[: tokens.shape[1]]
        for block in m["h"]:
            x = block(x)
        return F.linear(m["ln_f"](x), m["wte"].weight)


def rope(x, cos, sin):
    """Rotate-half RoPE of x (batch, time, heads, head_dim) by cos, sin (time, 1, head_dim/2):
    dimension i pairs with i + head_dim/2, as in scaling.families.llama.rope."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, hd, w, eps = c["hidden_size"], c["head_dim"], c["intermediate_size"], c["rms_norm_eps"]
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        linear = lambda n_in, n_out: nn.Linear(n_in, n_out, bias=False)  # noqa: E731
        self.input_layernorm = nn.RMSNorm(d, eps=eps)
        self.self_attn = nn.ModuleDict(
            {
                "q_proj": linear(d, self.heads * hd),
                "k_proj": linear(d, self.kv_heads * hd),
                "v_proj": linear(d, self.kv_heads * hd),
                "o_proj": linear(self.heads * hd, d),
            }
        )
        self.post_attention_layernorm = nn.RMSNorm(d, eps=eps)
        self.mlp = nn.ModuleDict(
            {"gate_proj": linear(d, w), "up_proj": linear(d, w), "down_proj": linear(w, d)}
        )

    def forward(self, x, cos, sin):
        a, h = self.self_attn, self.input_layernorm(x)
        b, t, _ = x.shape
        q = rope(a["q_proj"](h).view(b, t, self.heads, -1), cos, sin)
        k = rope(a["k_proj"](h).view(b, t, self.kv_heads, -1), cos, sin)
        v = a["v_proj"](h).view(b, t, self.kv_heads, -1)
        x = x + attention(q, k, v, a["o_proj"])
        h = self.post_attention_layernorm(x)
        return x + self.mlp["down_proj"](F.silu(self.mlp["gate_proj"](h)) * self.mlp["up_proj"](h))


class Llama(nn.Module):
    """LlamaForCausalLM's layout: `model.*` and an untied `lm_head`. The rotary angles are
    computed once per forward pass, as transformers' rotary_emb does."""

    def __init__(self, c: dict):
        super().__init__()
        assert c["hidden_act"] == "silu" and c["rope_scaling"] is None, c
        assert not c["tie_word_embeddings"] and not c["attention_bias"], c
        d = c["hidden_size"]
        half = c["head_dim"] // 2
        self.model = nn.ModuleDict(
            {
                "embed_tokens": nn.Embedding(c["vocab_size"], d),
                "layers": nn.ModuleList(LlamaBlock(c) for _ in range(c["num_hidden_layers"])),
                "norm": nn.RMSNorm(d, eps=c["rms_norm_eps"]),
            }
        )
        self.lm_head = nn.Linear(d, c["vocab_size"], bias=False)
        inverse_freq = c["rope_theta"] ** (-torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("inverse_freq", inverse_freq, persistent=False)

    def forward(self, tokens):
        m = self.model
        angle = torch.arange(tokens.shape[1], dtype=torch.float32)[:, None] * self.inverse_freq
        cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # (time, 1: over heads, half)
        x = m["embed_tokens"](tokens)
        for layer in m["layers"]:
            x = layer(x, cos, sin)
        return self.lm_head(m["norm"](x))


MODELS = {"gpt2": Gpt2, "llama": Llama}  # transformers' model_type -> the module of its layout


def from_hf(config: dict, tensors: dict) -> nn.Module:
    """The torch module of a transformers config.json, its weights loaded by name (strict: a
    tensor without a parameter, or a parameter without a tensor, is an error)."""
    model = MODELS[config["model_type"]](config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return model


def from_ours(params, m: ModelConfig, tok) -> tuple[nn.Module, set[str]]:
    """(torch module of our parameters, the names of its tensors that weight decay applies to:
    those scaling.train.decayed names)."""
    config, tensors = export.to_hf(params, m, tok)
    rows = layer_rows(export.hf_family(m).HF_EXPORT, m.n_layer)
    return from_hf(config, tensors), {name for path, name, _ in rows if decayed(path)}


def optimizer(model: nn.Module, decay: set[str], lr: float, t) -> torch.optim.Optimizer:
    named = dict(model.named_parameters())
    groups = [
        {"params": [p for k, p in named.items() if k in decay], "weight_decay": t.weight_decay},
        {"params": [p for k, p in named.items() if k not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(t.beta1, t.beta2), eps=1e-8)


def run(spec: dict) -> dict:
    """Time spec["repeats"] windows of spec["steps"] train steps after spec["warmup"] steps."""
    torch.set_num_threads(spec.get("threads", 2))
    cfg = run_config(
        {
            "model": spec["model"],
            "train": {"batch_size": spec["batch_size"]},
            "data": {"synthetic_chars": spec.get("synthetic_chars", 200_000)},
        }
    )
    m, t = cfg.model, cfg.train
    if m.mup_base_width:  # to_hf folds µP's output multiplier in, which training must not do
        raise SystemExit("torch_peer: µP models are not supported (set mup_base_width: 0)")
    corpus = data.load_corpus(cfg.data)
    batches = [
        data.train_batch(corpus.train, t.seed, i, t.batch_size, m.seq_len)
        for i in range(spec["steps"] + 1)
    ]
    model, decay = from_ours(init_params(m, t.seed), m, corpus.tokenizer)
    opt = optimizer(model, decay, spec.get("lr", 1e-3), t)
    params = list(model.parameters())

    def step(batch) -> torch.Tensor:
        tokens = torch.from_numpy(batch).long()
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        return loss.detach()

    first_loss = float(step(batches[0]))
    for i in range(spec["warmup"] - 1):
        step(batches[1 + i % spec["steps"]])
    tokens_per_s = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        for batch in batches[1:]:
            step(batch)
        tokens_per_s.append(
            spec["steps"] * t.batch_size * m.seq_len / (time.perf_counter() - start)
        )
    return {
        "params": sum(p.numel() for p in params),
        "first_loss": first_loss,
        "tokens_per_s": tokens_per_s,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
