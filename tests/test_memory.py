"""Memory planning: per-device bytes checked against numbers worked out by hand, and a run
that cannot fit fails before compiling, with a layout or a batch size that would."""

import dataclasses
import re

import jax
import pytest

from scaling import memory
from scaling.config import ConfigError, MeshConfig, ModelConfig, RunConfig, TrainConfig

SMALL = RunConfig(
    model=ModelConfig(n_layer=1, d_model=64, n_head=4, d_ff=256, vocab_size=256, seq_len=32),
    train=TrainConfig(batch_size=8),
)
# wte 256·64 + wpe 32·64 + ln_f 2·64, and one block: q, k, v, out kernels 4·64·64 and biases
# 4·64; fc 64·256 + 256, proj 256·64 + 64; two LayerNorms 4·64.
BLOCK = 4 * 64 * 64 + 4 * 64 + 64 * 256 + 256 + 256 * 64 + 64 + 4 * 64
PARAMS = 256 * 64 + 32 * 64 + 2 * 64 + BLOCK


def test_one_device_by_hand():
    p = memory.plan(SMALL, {"data": 1})
    assert BLOCK == 49_984 and PARAMS == 68_544
    assert (p.params, p.grads, p.optimizer, p.gathered) == (4 * PARAMS, 4 * PARAMS, 8 * PARAMS, 0)
    s, b, h, f, a, v = 32, 8, 64, 256, 4, 256
    layer = s * b * (34 * h - 16 * h + 4 * f + 5 * a * s)  # Korthikanti's 34sbh with d_ff=f
    assert layer == s * b * h * (34 + 5 * a * s / h)  # ... which is theirs at d_ff = 4h
    float32 = 2 * (layer + 2 * s * b * h)  # + the embedding output; 4-byte elements
    assert p.activations == float32 + 8 * s * b * v  # + float32 logits and their softmax


def test_fsdp_splits_parameters_and_gathers_a_block():
    p = memory.plan(SMALL, {"fsdp": 4})
    unsplit = 3 * 64 + 256  # q/k/v biases (heads, kv) and the MLP bias (mlp): no embed axis
    assert p.params == 4 * ((PARAMS - unsplit) // 4 + unsplit)
    assert p.gathered == 2 * 4 * BLOCK  # one block's weights and gradients, whole
    assert p.activations == memory.plan(SMALL, {"data": 4}).activations


def test_tensor_parallelism_splits_the_attention_and_mlp_activations():
    p = memory.plan(SMALL, {"data": 2, "tensor": 2})
    s, b, h, f, a, v = 32, 4, 64, 256, 4, 256
    layer = s * b * (10 * h + (8 * h + 5 * a * s) / 2 + 4 * f / 2)  # Korthikanti eq. 2, t=2
    assert p.activations == 2 * (layer + 2 * s * b * h) + 8 * s * b * v / 2


PARAM_BOUND = RunConfig(
    model=ModelConfig(n_layer=4, d_model=1024, n_head=8, d_ff=4096, seq_len=128),
    train=TrainConfig(batch_size=8),
)
ACTIVATION_BOUND = RunConfig(
    model=ModelConfig(n_layer=2, d_model=64, n_head=4, d_ff=256, seq_len=1024),
    train=TrainConfig(batch_size=64),
)


def _apply(cfg: RunConfig, fix: str):
    """The config with the `mesh.x=N` and `train.batch_size=N` settings a fix names."""
    mesh = {k: int(v) for k, v in re.findall(r"mesh\.(\w+)=(\d+)", fix)}
    batch = re.search(r"batch_size to (\d+)", fix)
    train = dataclasses.replace(cfg.train, batch_size=int(batch[1])) if batch else cfg.train
    return dataclasses.replace(cfg, train=train), mesh


def test_a_model_too_big_for_data_parallelism_is_told_to_shard_more():
    with pytest.raises(ConfigError) as e:
        memory.check_fits(PARAM_BOUND, {"data": 8}, 0.6e9)
    assert e.value.field == "mesh" and "needs 0.85 GB per device" in e.value.problem
    assert "mesh.fsdp=4" in e.value.fix  # the least sharding that fits
    cfg, mesh = _apply(PARAM_BOUND, e.value.fix)
    memory.check_fits(cfg, mesh, 0.6e9)


def test_activations_too_big_for_any_layout_are_told_to_lower_the_batch():
    with pytest.raises(ConfigError) as e:
        memory.check_fits(ACTIVATION_BOUND, {"data": 8}, 0.5e9)
    assert e.value.field == "train.batch_size"
    cfg, mesh = _apply(ACTIVATION_BOUND, e.value.fix)
    assert cfg.train.batch_size < 64
    memory.check_fits(cfg, mesh, 0.5e9)


def test_a_model_that_fits_nowhere_asks_for_devices():
    with pytest.raises(ConfigError, match="add devices"):
        memory.check_fits(PARAM_BOUND, {"data": 8}, 0.01e9)


def test_the_declared_memory_is_used_else_cpu_devices_share_the_host_ram():
    declared = RunConfig(model=PARAM_BOUND.model, mesh=MeshConfig(device_memory_gb=0.5))
    with pytest.raises(ConfigError):
        memory.check_fits(declared, {"data": 8})
    cpus = len(jax.local_devices(backend="cpu"))
    assert memory.device_memory(PARAM_BOUND) == memory.host_memory() / cpus
    assert memory.check_fits(PARAM_BOUND, {"data": 8}).total > 0.5e9  # fits the host
    wide = dataclasses.replace(PARAM_BOUND.model, d_model=2**20, n_head=4)  # 35 TB of weights
    with pytest.raises(ConfigError, match="GB per device .* but 90% of"):
        memory.check_fits(dataclasses.replace(PARAM_BOUND, model=wide), {"data": 1})


def test_host_memory_is_the_containers_limit_when_lower(tmp_path, monkeypatch):
    (tmp_path / "v2").write_text("max\n")  # cgroup v2 without a limit
    (tmp_path / "v1").write_text("1000000\n")
    monkeypatch.setattr(memory, "CGROUP_LIMITS", (str(tmp_path / "v2"), str(tmp_path / "v1")))
    assert memory.host_memory() == 1_000_000
    monkeypatch.setattr(memory, "CGROUP_LIMITS", (str(tmp_path / "absent"),))
    assert memory.host_memory() > 1_000_000


def test_report_is_a_printable_row():
    row = memory.memory_report(SMALL, {"data": 1}, device_memory_bytes=1e9)
    assert row["mesh"] == "data=1 × fsdp=1 × tensor=1" and row["fits"]
    assert row["params_gb"] == round(4 * PARAMS / 1e9, 3)
    assert set(row) >= {"grads_gb", "optimizer_gb", "activations_gb", "total_gb", "device_gb"}
