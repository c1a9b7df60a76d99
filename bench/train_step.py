"""Train-step throughput on device meshes: tokens/s, achieved GFLOP/s and MFU, against PyTorch.

    python bench/train_step.py [--mesh 1 dp2 fsdp2 tp2 dp4] [--steps 10] [--repeats 5]
                               [--rounds 2] [--xla-flags "..."] [--no-torch]
    python bench/train_step.py --config 125m 350m --mesh 1 --dtype bfloat16 --no-torch \
                               --peak-tflops 989          # one H100 SXM: GPT-2 small, medium
    python bench/train_step.py --config 125m 350m --family gpt2 llama ...   # both families

Every mesh layout runs the project's real sharded step (scaling.mesh: make_mesh from a
MeshConfig, the batch placed by batch_sharding; scaling.sharding: state_shardings of
param_shardings, shard_train_step(train.train_step)) in a subprocess of its own, because the
number of simulated host devices (XLA_FLAGS=--xla_force_host_platform_device_count) is fixed
when jax starts; on CPU the devices share the machine's cores. Layouts: `1` (one device),
`dp2`, `fsdp2`, `tp2`, `dp2xtp2`, `dp2xfsdp2`, ... (dp = mesh axis data, fsdp = fsdp, tp =
tensor); `--devices N` starts N devices for every layout instead of exactly as many as it uses.

`--family` runs every config in each model family named (scaling.families): the same rung,
each family's own architecture (llama: SwiGLU at 2/3 of d_ff, RoPE, RMSNorm, untied output).

The PyTorch peer (bench/torch_peer.py, `--no-torch` to skip; families with a Hugging Face layout:
gpt2, llama) is the same model, built from the family's export (scaling.export.to_hf) and
started from the JAX worker's initial weights, with the same AdamW step, in eager float32
PyTorch with 2 threads, on the same batches. Its first loss must equal the JAX worker's to
LOSS_TOL: the report prints both, and a row that differs is marked. Both sides time
`--repeats` windows of `--steps` steps after `--warmup` steps (compilation included there)
and keep the best window; `--rounds` runs the whole set again, interleaved, keeping the best
per row: on a shared machine the best is the least disturbed. Since the machine's speed drifts
between rounds (by up to 2× on a contended VM), each round also gives a paired ratio (its best
JAX row over its own PyTorch run, measured minutes apart), as median [min, max] over rounds.

FLOP conventions (scaling/flops.py): the detailed count of Hoffmann et al. 2022 (Chinchilla),
App. F, and Kaplan's 6N beside it. MFU is the detailed GFLOP/s over a matmul peak measured by
this script: the best float32 (or --dtype) rate of a jitted --peak-size² matmul on one JAX
device, so it says how much of what the hardware does for the simplest kernel the whole train
step achieves; `--peak-tflops` takes a datasheet peak instead (the usual MFU on accelerators).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, workers included

from scaling import zoo  # noqa: E402  (no jax import: the workers set XLA_FLAGS first)
from scaling.config import run_config  # noqa: E402
from scaling.families import FIELDS  # noqa: E402
from scaling.families.hf import MODEL_TYPES  # noqa: E402
from scaling.flops import flops_per_token, param_counts  # noqa: E402

GPT2 = {"seq_len": 1024, "vocab_size": 50304}  # GPT-2's vocabulary, padded to a multiple of 64
CONFIGS = {  # key: (label, model fields, batch size)
    # CPU: a demo-sized model, and the largest demo rung at a longer context
    "s4": ("s4 (L2 d64, T128, B8)", {**zoo.shape("s4"), "seq_len": 128}, 8),
    "s6": ("s6 (L4 d128, T256, B16)", {**zoo.shape("s6"), "seq_len": 256}, 16),
    # accelerators: GPT-2 small and medium (Radford et al. 2019), 124M and 354M parameters
    "125m": (
        "125m (L12 d768, T1024, B16)",
        {"n_layer": 12, "d_model": 768, "n_head": 12, "d_ff": 3072, **GPT2},
        16,
    ),
    "350m": (
        "350m (L24 d1024, T1024, B8)",
        {"n_layer": 24, "d_model": 1024, "n_head": 16, "d_ff": 4096, **GPT2},
        8,
    ),
}
DEFAULT_MESHES = ["1", "dp2", "fsdp2", "tp2", "dp4"]
LOSS_TOL = 1e-4  # PyTorch's first loss against JAX's: same weights, same batch, float32
AXES = {"dp": "data", "fsdp": "fsdp", "tp": "tensor"}


def cases(configs: list[str], families: list[str]) -> dict[str, tuple[str, dict, int]]:
    """Every config in every family, as CONFIGS: key `125m` in gpt2, `125m-llama` in llama."""
    out = {}
    for key in configs:
        name, model, batch_size = CONFIGS[key]
        for family in families:
            if family == "gpt2":
                out[key] = CONFIGS[key]
            else:
                out[f"{key}-{family}"] = (
                    f"{family} {name}",
                    {**model, "family": family},
                    batch_size,
                )
    return out


def parse_mesh(layout: str) -> dict[str, int]:
    """'dp2xtp2' -> {'data': 2, 'fsdp': 1, 'tensor': 2}; '1' is one device."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    if layout == "1":
        return sizes
    for part in layout.split("x"):
        match = re.fullmatch(r"(dp|fsdp|tp)(\d+)", part)
        if not match or int(match[2]) < 1:
            raise argparse.ArgumentTypeError(
                f"bad mesh {layout!r}: use 1 or parts like dp2, fsdp2, tp2 joined by x (dp2xtp2)"
            )
        sizes[AXES[match[1]]] *= int(match[2])
    return sizes


def run_config_for(model: dict, batch_size: int, dtype: str = "float32"):
    return run_config(
        {
            "model": {**model, "dtype": dtype},
            "train": {"batch_size": batch_size},
            "data": {"synthetic_chars": 200_000},
        }
    )


# ---------------------------------------------------------------------------------------------
# Workers (one process each)


def jax_worker(spec: dict) -> dict:
    """Time the sharded train step of spec["model"] on spec["mesh"]; jax is imported here, after
    the parent set XLA_FLAGS in this process's environment."""
    import jax
    import jax.numpy as jnp

    from scaling import data, train
    from scaling.config import MeshConfig
    from scaling.distributed import global_array
    from scaling.mesh import batch_sharding, check_batch, make_mesh
    from scaling.sharding import (
        init_sharded,
        param_shardings,
        shard_train_step,
        state_shardings,
    )

    cfg = run_config_for(spec["model"], spec["batch_size"], spec["dtype"])
    m, t = cfg.model, cfg.train
    sizes = spec["mesh"]
    mesh = make_mesh(MeshConfig(**sizes), jax.devices()[: math.prod(sizes.values())])
    check_batch(cfg, mesh)
    init = lambda: train.initial_state(cfg)
    state_sh = state_shardings(jax.eval_shape(init), param_shardings(m, mesh))
    state = init_sharded(init, state_sh)
    step = shard_train_step(train.train_step, mesh, state_sh)
    opt, lr = train.optimizer_args(t), jnp.float32(1e-3)
    corpus = data.load_corpus(cfg.data)
    batches = [
        data.train_batch(corpus.train, t.seed, i, t.batch_size, m.seq_len)
        for i in range(spec["steps"] + 1)
    ]
    batch_sh = batch_sharding(mesh)

    state, stats = step(state, global_array(batches[0], batch_sh), lr, m, opt)  # compiles
    first_loss = float(stats["loss"])
    for i in range(spec["warmup"] - 1):
        state, stats = step(
            state, global_array(batches[1 + i % spec["steps"]], batch_sh), lr, m, opt
        )
    jax.block_until_ready(state)
    tokens_per_s = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        for batch in batches[1:]:
            state, stats = step(state, global_array(batch, batch_sh), lr, m, opt)
        jax.block_until_ready(state)
        tokens_per_s.append(
            spec["steps"] * t.batch_size * m.seq_len / (time.perf_counter() - start)
        )
    return {
        "params": param_counts(m).total,
        "first_loss": first_loss,
        "tokens_per_s": tokens_per_s,
        "devices": jax.device_count(),
        "jax": jax.__version__,
    }


def matmul_peak(size: int, dtype: str, repeats: int = 10) -> float:
    """Best observed FLOP/s of a jitted size×size matmul on one JAX device."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.dtype(dtype))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_worker(spec: dict) -> dict:
    import jax

    device = jax.devices()[0]
    return {
        "peak": matmul_peak(spec["size"], spec["dtype"]),
        "device": f"{device.platform} {device.device_kind}",
        "jax": jax.__version__,
    }


WORKERS = {"jax": jax_worker, "peak": peak_worker}


def spawn(kind: str, spec: dict, xla_flags: str = "", devices: int = 1) -> dict:
    """Run a worker in a fresh process and return its JSON answer."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        " ".join(f for f in (env.get("XLA_FLAGS", ""), xla_flags) if f)
        + f" --xla_force_host_platform_device_count={devices}"
    )
    if kind == "torch":
        cmd = [sys.executable, str(ROOT / "bench" / "torch_peer.py"), json.dumps(spec)]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    else:
        cmd = [sys.executable, __file__, "--worker", kind, json.dumps(spec)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Parent


def load() -> str:
    return "load average (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(WORKERS[sys.argv[2]](json.loads(sys.argv[3]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mesh", nargs="+", default=DEFAULT_MESHES, help="layouts, e.g. 1 dp2 tp2")
    p.add_argument("--devices", type=int, default=0, help="devices per process (0: the mesh's)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX workers")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=5, help="timed windows per process (best)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    p.add_argument("--rounds", type=int, default=1, help="run everything again, keep the best")
    p.add_argument(
        "--config",
        nargs="+",
        choices=list(CONFIGS),
        default=["s4", "s6"],
        help="which configs: s4 s6 (CPU), 125m 350m (GPU, TPU: with --dtype bfloat16 --no-torch)",
    )
    p.add_argument(
        "--family", nargs="+", choices=list(FIELDS), default=["gpt2"], help="model families"
    )
    p.add_argument("--peak-size", type=int, default=2048)
    p.add_argument(
        "--peak-tflops",
        type=float,
        help="MFU against this datasheet peak of the whole mesh (e.g. 989 for one H100 SXM in "
        "bf16, dense) instead of the measured matmul peak",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    args = p.parse_args()
    meshes = {layout: parse_mesh(layout) for layout in args.mesh}
    for layout, sizes in meshes.items():
        if args.devices and math.prod(sizes.values()) > args.devices:
            p.error(f"mesh {layout} needs {math.prod(sizes.values())} devices > --devices")

    print(f"cores: {os.cpu_count()}, {load()}")
    peaks = []
    info = {}
    timing = {"steps": args.steps, "repeats": args.repeats, "warmup": args.warmup}
    runs = cases(args.config, args.family)
    results: dict[str, dict[str, list[float]]] = {key: {} for key in runs}
    firsts: dict[str, dict[str, float]] = {key: {} for key in runs}
    per_round: dict[str, dict[str, list[float]]] = {key: {} for key in runs}
    for rnd in range(args.rounds):
        peak = spawn("peak", {"size": args.peak_size, "dtype": args.dtype}, args.xla_flags)
        peaks.append(peak["peak"])
        info.update(device=peak["device"], jax=peak["jax"])
        for key, (name, model, batch_size) in runs.items():
            common = {"model": model, "batch_size": batch_size, **timing}
            rows = {}
            for layout, sizes in meshes.items():
                n = args.devices or math.prod(sizes.values())
                spec = {**common, "mesh": sizes, "dtype": args.dtype}
                rows[f"jax {layout}"] = spawn("jax", spec, args.xla_flags, n)
            family = model.get("family", "gpt2")
            if not args.no_torch and args.dtype == "float32" and family in MODEL_TYPES.values():
                rows["pytorch eager"] = spawn("torch", {**common, "threads": 2})
                info["torch"] = rows["pytorch eager"]["torch"]
                want = param_counts(run_config_for(model, batch_size).model).total
                got = rows["pytorch eager"]["params"]
                if got != want:
                    raise SystemExit(f"{name}: PyTorch has {got:,} parameters, flops.py {want:,}")
            for row, r in rows.items():
                results[key].setdefault(row, []).extend(r["tokens_per_s"])
                per_round[key].setdefault(row, []).append(max(r["tokens_per_s"]))
                firsts[key][row] = r["first_loss"]
            print(f"round {rnd + 1}/{args.rounds} {name} done, {load()}", file=sys.stderr)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else max(peaks)
    report(args, runs, peak, info, results, firsts, per_round)


def paired_ratios(per_round: dict[str, list[float]]) -> list[float]:
    """Per round: the best JAX row's tokens/s over PyTorch's in the same round."""
    jax_rows = [v for row, v in per_round.items() if row.startswith("jax")]
    return [max(r[i] for r in jax_rows) / t for i, t in enumerate(per_round["pytorch eager"])]


def loss_gap(firsts: dict[str, float]) -> float:
    """The largest gap between PyTorch's first loss and a JAX row's."""
    return max(
        abs(v - firsts["pytorch eager"]) for row, v in firsts.items() if row != "pytorch eager"
    )


def first_losses(firsts: dict[str, float]) -> str:
    gap = loss_gap(firsts)
    verdict = "agree" if gap <= LOSS_TOL else f"DIFFER (> {LOSS_TOL:g}: not the same model)"
    rows = ", ".join(f"{row} {v:.6f}" for row, v in firsts.items())
    return f"first loss (same weights, same batch): {rows}; max gap {gap:.1e}, {verdict}"


def report(args, runs: dict, peak: float, info: dict, results, firsts, per_round) -> None:
    peak_g = peak / 1e9
    print(f"device: {info['device']}, jax {info['jax']}, torch {info.get('torch', '-')}")
    if args.peak_tflops:
        print(f"peak (datasheet, --peak-tflops): {peak_g:.1f} GFLOP/s")
    else:
        print(
            f"{args.dtype} matmul peak ({args.peak_size}², one JAX device, best of "
            f"{10 * args.rounds}): {peak_g:.1f} GFLOP/s"
        )
    print(
        "FLOPs: detailed = Chinchilla App. F (Hoffmann et al. 2022); 6N = Kaplan 2020, N non-emb."
    )
    print(
        f"timing: best of {args.repeats}×{args.rounds} windows of {args.steps} steps, after "
        f"{args.warmup} warm-up steps; XLA_FLAGS extra: {args.xla_flags or '-'}; {load()}"
    )
    out = {"peak_gflops": peak_g, **info, "configs": {}}
    for key in results:
        name, model, batch_size = runs[key]
        m = run_config_for(model, batch_size).model
        per_token = flops_per_token(m)
        best = {row: max(v) for row, v in results[key].items()}
        ref = best.get("pytorch eager")
        print(
            f"\n{name}: {param_counts(m).total:,} params, "
            f"{per_token.detailed / 1e6:.3f} MFLOP/token detailed, "
            f"{per_token.six_n / 1e6:.3f} MFLOP/token 6N"
        )
        print(
            f"| {'run':<16} | {'tokens/s':>9} | {'GFLOP/s':>7} | {'6N GFLOP/s':>10} "
            f"| {'MFU':>6} | {'vs PyTorch':>10} | {'loss@1':>6} |"
        )
        print(
            f"| {'-' * 16} | {'-' * 8}: | {'-' * 6}: | {'-' * 9}: | {'-' * 5}: "
            f"| {'-' * 9}: | {'-' * 5}: |"
        )
        for row, tps in best.items():
            gflops = tps * per_token.detailed / 1e9
            ratio = f"{tps / ref:.2f}×" if ref else "-"
            differs = row == "pytorch eager" and loss_gap(firsts[key]) > LOSS_TOL
            print(
                f"| {row + (' ≠loss' if differs else ''):<16} | {tps:>9,.0f} | {gflops:>7.1f} | "
                f"{tps * per_token.six_n / 1e9:>10.1f} | {gflops / peak_g:>6.1%} | {ratio:>10} "
                f"| {firsts[key][row]:>6.3f} |"
            )
        jax_rows = {row: v for row, v in best.items() if row.startswith("jax")}
        top = max(jax_rows, key=jax_rows.get)
        if ref:
            print(first_losses(firsts[key]))
        verdict = ""
        if ref:
            ok = jax_rows[top] >= ref
            verdict = (
                f", {jax_rows[top] / ref:.2f}× PyTorch: target ≥ PyTorch "
                f"{'MET' if ok else 'NOT met'}"
            )
        print(f"best mesh: {top.removeprefix('jax ')} ({jax_rows[top]:,.0f} tokens/s){verdict}")
        paired = paired_ratios(per_round[key]) if ref else []
        if paired:
            print(
                f"paired rounds (best JAX mesh / PyTorch, each round): median "
                f"{statistics.median(paired):.3f}× [{min(paired):.3f}×, {max(paired):.3f}×] "
                f"over {len(paired)}: " + " ".join(f"{r:.3f}" for r in paired)
            )
        out["configs"][name] = {
            "best_tokens_per_s": best,
            "all": results[key],
            "per_round_best": per_round[key],
            "paired_ratios": paired,
        }
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
