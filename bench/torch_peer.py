"""The PyTorch peer of bench/train_step.py: the same GPT and the same AdamW step in eager PyTorch.

    python bench/torch_peer.py '{"model": {...}, "batch_size": 8, "steps": 10, ...}'

prints one JSON line: tokens/s of every timed window, the parameter count, the first loss.

The model is scaling.model.GPT written the nanoGPT way: pre-LayerNorm blocks (eps 1e-5),
causal multi-head attention with biases (Q, K, V as one fused projection, nanoGPT's c_attn:
the same parameters and FLOPs as three), GELU (tanh approximation, as flax's nn.gelu), learned
positions, the output layer tied to the token embedding, float32. The step is the project's
(scaling.train): mean next-token cross-entropy, gradients clipped to global norm `grad_clip`,
AdamW (betas, eps 1e-8, decoupled weight decay on matrices and embeddings only, as
scaling.train.optimizer), a fixed learning rate. The batches are scaling.data.train_batch's.
Weights are initialised like the Flax model (normal 0.02, residual projections 0.02/sqrt(2L),
positions 0.01); the random values differ.

PyTorch is a benchmark peer only (`pip install torch==2.13.0`), never a project dependency.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from scaling import data
from scaling.config import ModelConfig, run_config


class Block(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        d, self.n_head = m.d_model, m.n_head
        self.ln_attn = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln_mlp = nn.LayerNorm(d, eps=1e-5)
        self.fc = nn.Linear(d, m.d_ff)
        self.proj = nn.Linear(m.d_ff, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        h = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(h.transpose(1, 2).reshape(b, t, d))
        return x + self.proj(F.gelu(self.fc(self.ln_mlp(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        self.wte = nn.Embedding(m.vocab_size, m.d_model)
        self.wpe = nn.Parameter(torch.empty(m.seq_len, m.d_model))
        self.blocks = nn.ModuleList(Block(m) for _ in range(m.n_layer))
        self.ln_f = nn.LayerNorm(m.d_model, eps=1e-5)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = (
                    0.02 / math.sqrt(2 * m.n_layer)
                    if name.endswith(("out.weight", "proj.weight"))
                    else 0.02
                )
                nn.init.normal_(p, std=0.01 if name == "wpe" else std)

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied output embedding


def optimizer(model: nn.Module, lr: float, beta1: float, beta2: float, weight_decay: float):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay}]
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=0.0)


def run(spec: dict) -> dict:
    """Time spec["repeats"] windows of spec["steps"] train steps after spec["warmup"] steps."""
    torch.manual_seed(0)
    torch.set_num_threads(spec.get("threads", 2))
    cfg = run_config(
        {
            "model": spec["model"],
            "train": {"batch_size": spec["batch_size"]},
            "data": {"synthetic_chars": spec.get("synthetic_chars", 200_000)},
        }
    )
    m, t = cfg.model, cfg.train
    corpus = data.load_corpus(cfg.data)
    batches = [
        data.train_batch(corpus.train, t.seed, i, t.batch_size, m.seq_len)
        for i in range(spec["steps"] + 1)
    ]
    model = GPT(m)
    opt = optimizer(model, spec.get("lr", 1e-3), t.beta1, t.beta2, t.weight_decay)
    params = list(model.parameters())

    def step(batch) -> float:
        tokens = torch.from_numpy(batch).long()
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        return loss

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
