"""The data pipeline of issue 16: prepare throughput, loader throughput against what a train step
consumes, and peak host memory while training from a large corpus against a small one.

    python bench/corpus.py [--workdir /tmp/scaling-corpus-bench] [--large-gb 5] [--small-mb 200]
                           [--text-mb 24] [--steps 200] [--repeats 3] [--peak-tflops 989]
                           [--mfu 0.4]

- prepare: synthetic text (scaling.data.synthetic_text) written as .jsonl, prepared with the byte
  tokenizer and with a 4,096-id BPE trained on 4 MB of it, on 1 and 2 worker processes; MB/s
  of input text per process. TOKENIZERS_PARALLELISM=false, so one process is one core.
- loader: data.train_batch on a shard directory of `--large-gb` GB of uint16 ids (random ids
  written straight into shards, no tokenizing: the loader only slices memory maps), random and
  epoch sampling, at the 125m shape (B16, T1024) and the tiny CPU shape (B8, T64); cold (a
  fresh reader on shards evicted from this VM's page cache with posix_fadvise DONTNEED; its host
  may still cache the disk) and warm (the same reader again, best of 3); with the reader's
  hints to the kernel (MADV_RANDOM, the next batch prefetched with MADV_WILLNEED) and without
  them (a plain memory map).
- consumption: the 125m train step on one accelerator, FLOPs per token (scaling/flops.py,
  detailed) at `--mfu` of `--peak-tflops` (H100 SXM bf16 dense: 989); and the tiny train step
  measured here on the CPU in the same run.
- memory: peak RSS (ru_maxrss of the child, os.wait4) of `scaling.train.train` for `--steps`
  steps of the tiny shape from the large and from a `--small-mb` MB corpus, in subprocesses.
The generated shards are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from train_step import CONFIGS  # noqa: E402  (bench/: the 125m shape)

from scaling import data, shards  # noqa: E402
from scaling.config import ModelConfig, run_config  # noqa: E402
from scaling.flops import flops_per_token  # noqa: E402

TINY = {"n_layer": 2, "d_model": 32, "n_head": 2, "d_ff": 64, "seq_len": 64}  # tests/conftest
BLOCK = 1 << 26  # ids generated and written at a time


def random_shards(directory: Path, train_tokens: int, val_tokens: int = 1 << 20) -> Path:
    """A shard directory of random byte ids (bytes tokenizer), written without tokenizing."""
    directory.mkdir(parents=True, exist_ok=True)
    rng, dtype = np.random.default_rng(0), shards.token_dtype(256)
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "plan": "bench",
        "dtype": dtype.str,
        "tokenizer": {"name": "bytes", "file": "", "sha256": "bytes", "vocab_size": 256},
        "splits": {},
    }
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        writer = shards.ShardWriter(directory, split, dtype, 1 << 28)
        for start in range(0, n, BLOCK):
            writer.write(rng.integers(0, 256, min(BLOCK, n - start), dtype=np.uint16))
        counts = {"documents": 1, "tokens": n, "text_tokens": n, "bytes": n}
        manifest["splits"][split] = {"shards": writer.close(), **counts, "bytes_per_token": 1.0}
    (directory / shards.MANIFEST).write_text(json.dumps(manifest))
    return directory


def drop_from_page_cache(directory: Path) -> None:
    """Evict the shards from the page cache (written back first: dirty pages stay). Pages still
    mapped by a live reader stay too, so a cold measurement opens a fresh reader after this."""
    for path in directory.glob("*.bin"):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


class WithoutHints:
    """A reader as a plain memmap would be: the kernel's default readahead, no prefetch."""

    def __init__(self, reader: shards.SplitReader):
        self.reader = reader
        for mapped in reader.maps:
            mapped.madvise(mmap.MADV_NORMAL)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key):
        return self.reader[key]


def loader_tokens_per_s(reader, batch: int, seq_len: int, sampling: str, n: int = 300):
    """(tokens/s over batches 1..n, seconds of batch 0: an epoch's permutation is made there)."""
    data.epoch_order.cache_clear()
    start = time.perf_counter()
    data.train_batch(reader, 0, 0, batch, seq_len, sampling=sampling)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for step in range(1, n + 1):
        data.train_batch(reader, 0, step, batch, seq_len, sampling=sampling)
    return n * batch * seq_len / (time.perf_counter() - start), first


def bench_loader(directory: Path) -> list[dict]:
    """Cold (a fresh reader on an evicted corpus) and warm (the best of 3 more passes) tokens/s:
    the machine is shared, and the least disturbed pass is the loader's own speed."""
    shapes = {"125m": (16, 1024), "tiny": (8, 64)}
    rows = []
    for hints in (True, False):
        for shape, (batch, seq_len) in shapes.items():
            for sampling in ("random", "epochs"):
                drop_from_page_cache(directory)
                reader = shards.SplitReader(directory, "train")
                reader = reader if hints else WithoutHints(reader)
                cold, first = loader_tokens_per_s(reader, batch, seq_len, sampling)
                warm = max(loader_tokens_per_s(reader, batch, seq_len, sampling)[0] for _ in "abc")
                rows.append(
                    {"shape": shape, "sampling": sampling, "hints": hints}
                    | {"cold": cold, "warm": warm, "first_batch_s": first}
                )
    return rows


def accelerator_consumption(peak_tflops: float, mfu: float) -> float:
    """Tokens/s the 125m train step takes on one accelerator at `mfu` of its peak."""
    _, fields, _ = CONFIGS["125m"]
    return peak_tflops * 1e12 * mfu / flops_per_token(ModelConfig(**fields)).detailed


def cpu_step_tokens_per_s(steps: int = 30) -> float:
    """The tiny shape's jitted train step on this CPU (B8, T64), after compiling."""
    import jax
    import jax.numpy as jnp

    from scaling.train import initial_state, optimizer_args, train_step

    cfg = run_config({"model": TINY, "train": {"batch_size": 8}})
    tokens = np.random.default_rng(0).integers(0, 256, 1 << 20).astype(np.uint16)
    batches = [data.train_batch(tokens, 0, i, 8, 64) for i in range(steps + 1)]
    state, opt = initial_state(cfg), optimizer_args(cfg.train)
    state, _ = train_step(state, batches[0], jnp.float32(1e-3), cfg.model, opt)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for batch in batches[1:]:
        state, _ = train_step(state, batch, jnp.float32(1e-3), cfg.model, opt)
    jax.block_until_ready(state)
    return steps * 8 * 64 / (time.perf_counter() - start)


def train_child(directory: str, sampling: str, steps: int, run_dir: str) -> None:
    """In the child: train the tiny shape from the shards (no evaluation)."""
    from scaling.train import train

    run = {
        "model": TINY,
        "data": {"corpus": "tokens", "path": directory, "sampling": sampling},
        "train": {"tokens": steps * 8 * 64, "batch_size": 8, "checkpoint_every": steps},
    }
    train(run_config(run), Path(run_dir))


# A child's ru_maxrss starts at what its parent held when it forked (Linux keeps the high-water
# mark across exec): this bench process holds JAX and GBs of page-mapped shards, so each training
# child is started by a bare Python launcher, which reports the child's peak.
RSS_LAUNCHER = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:]); "
    "_, status, usage = os.wait4(child.pid, 0); print(usage.ru_maxrss if status == 0 else -1)"
)


def peak_rss_mb(directory: Path, sampling: str, steps: int, work: Path) -> float:
    run_dir = work / f"run-{directory.name}-{sampling}"
    shutil.rmtree(run_dir, ignore_errors=True)
    child = [sys.executable, __file__, "--train-child", str(directory), sampling, str(steps)]
    launched = subprocess.run(
        [sys.executable, "-c", RSS_LAUNCHER, *child, str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_kib = int(launched.stdout.split()[-1])
    if peak_kib < 0:
        raise RuntimeError(f"training child failed: {launched.stderr[-2000:]}")
    return peak_kib / 1024


def bench_prepare(work: Path, text_mb: int) -> list[dict]:
    """MB/s of input text per process: the tokenizer's encode_batch alone, in this process, and
    `prepare` (reading, tokenizing, writing, assembling) on 1 and 2 worker processes."""
    from scaling import tokenizer
    from scaling.prepare import Settings, prepare

    docs = data.synthetic_text(text_mb << 20, 0.5, seed=1).split(shards.DOC_SEPARATOR)
    source = work / "text.jsonl"
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    sample = docs[: len(docs) * 4 // text_mb]
    bpe = tokenizer.train_bpe(sample, 4096, work / "bpe" / "tokenizer.json")
    megabytes = sum(len(d.encode()) for d in docs) / 1e6
    settings = Settings(val_fraction=0.01, chunk_bytes=1 << 20)
    rows = []
    for name, spec in (("bytes", "bytes"), ("bpe-4096", str(bpe))):
        start = time.perf_counter()
        tokenizer.load(spec).encode_batch(docs)
        alone = megabytes / (time.perf_counter() - start)
        rows.append({"tokenizer": name, "what": "encode_batch alone", "MB/s/process": alone})
        for workers in (1, 2):
            out = work / f"prepared-{name}-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            prepare([str(source)], out, spec, settings=settings, workers=workers)
            seconds = time.perf_counter() - start
            rows.append(
                {"tokenizer": name, "what": f"prepare, {workers} worker(s)", "seconds": seconds}
                | {"MB": megabytes, "MB/s/process": megabytes / seconds / workers}
            )
            shutil.rmtree(out)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/scaling-corpus-bench")
    p.add_argument("--large-gb", type=float, default=5.0)
    p.add_argument("--small-mb", type=float, default=200.0)
    p.add_argument("--text-mb", type=int, default=24)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3, help="of each peak-memory child")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--mfu", type=float, default=0.4)
    p.add_argument("--train-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.train_child:
        directory, sampling, steps, run_dir = args.train_child
        return train_child(directory, sampling, int(steps), run_dir)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    report = {"prepare": bench_prepare(work, args.text_mb)}
    print(json.dumps(report["prepare"], indent=1), flush=True)
    corpora = {}
    try:
        for name, size in (("small", args.small_mb * 1e6), ("large", args.large_gb * 1e9)):
            corpora[name] = random_shards(work / name, int(size) // 2)  # 2 bytes a token
        report["loader"] = bench_loader(corpora["large"])
        report["consumption"] = {
            "125m_accelerator": accelerator_consumption(args.peak_tflops, args.mfu),
            "tiny_cpu": cpu_step_tokens_per_s(),
        }
        print(json.dumps(report["loader"] + [report["consumption"]], indent=1), flush=True)
        peaks = {}  # interleaved repeats: the machine's other load moves a child's peak too
        for _ in range(args.repeats):
            for sampling in ("random", "epochs"):
                for name, path in corpora.items():
                    peak = peak_rss_mb(path, sampling, args.steps, work)
                    peaks.setdefault(f"{name}-{sampling}", []).append(peak)
        report["peak_rss_mb"] = peaks
    finally:
        for path in corpora.values():
            shutil.rmtree(path)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
