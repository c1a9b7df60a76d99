"""`scaling prepare`: tokenize a corpus once into token shards and a manifest (scaling.shards).

How it is parallel, resumable and idempotent:
- This process reads the documents in order, as a stream (scaling.sources), and cuts them into
  chunks of about `chunk_bytes` characters that never span two sources: chunk k holds the same
  documents whatever the number of workers.
- Each chunk is tokenized by a worker process ('spawn': the caller may have imported JAX, which
  does not survive a fork) into its own files in OUT/.partial/: chunk-k.train.bin,
  chunk-k.val.bin and, last, chunk-k.json with its counts, each written through a rename. A chunk
  whose json is there is finished: a run killed at any point (kill -9) and started again skips
  those chunks and tokenizes the rest.
- The shards are assembled from the chunk files in chunk order, so their bytes and hashes depend
  on the inputs and settings only, never on the worker count or on interruptions. The manifest is
  written last, then .partial/ is removed. A run whose manifest records the same plan (the
  sources' hashes, the tokenizer's, the settings) and whose shards are present does nothing.

The pool is concurrent.futures' with at most 2 chunks per worker in flight (multiprocessing's
imap reads its whole input ahead), and the readers are scaling.sources' over pyarrow and the
standard library (Hugging Face `datasets` is not a dependency).

Validation documents come from `val_sources` (`--val`) or, with `val_fraction`, are whole
documents drawn in every chunk by default_rng([val_seed, chunk]): spread over the corpus, never
the tail of the token stream. The worker count does not change the output, so it is not part of
the plan.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling import shards, sources, tokenizer
from scaling.typed import ConfigError

WORK_DIR = ".partial"
DEFAULT_VAL_FRACTION = 0.01
# Tests of resumption set this to N: the process kills itself (SIGKILL) after N finished chunks.
CRASH_AFTER_ENV = "SCALING_PREPARE_CRASH_AFTER"
COUNTS = ("documents", "tokens", "text_tokens", "bytes")


@dataclass(frozen=True)
class Settings:
    """What the shards depend on besides the sources and the tokenizer (all in the manifest)."""

    field: str = "text"  # .jsonl: the document's field
    column: str = "text"  # parquet, save_to_disk datasets: the document's column
    val_fraction: float = 0.0  # share of documents held out (when no validation sources)
    val_seed: int = 0
    chunk_bytes: int = 4 << 20  # characters of text per chunk of work
    shard_tokens: int = 1 << 28  # tokens per shard file (512 MiB of uint16)
    train_tokenizer: int = 0  # vocabulary of a byte-level BPE trained on the train documents


@dataclass(frozen=True)
class Chunk:
    index: int
    documents: list[str]
    is_val: np.ndarray  # one bool per document


def prepare(
    train: list[str],
    out_dir: str | Path,
    tokenizer_spec: str = tokenizer.BYTES,
    val: list[str] = (),
    settings: Settings = Settings(),
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Tokenize the `train` sources (and `val` sources, if any) into shards in out_dir; returns
    the manifest. Bad input raises a one-line ConfigError naming the file and line."""
    out = Path(out_dir)
    groups = {"train": [sources.source(p) for p in train], "val": [sources.source(p) for p in val]}
    _check(settings, bool(groups["val"]), tokenizer_spec, workers)
    fingerprints = {
        split: [sources.fingerprint(s) for s in group] for split, group in groups.items()
    }
    given = None if settings.train_tokenizer else tokenizer.load(tokenizer_spec, "--tokenizer")
    if given is not None:
        _check_eos(given)
    plan = _plan_id(fingerprints, settings, given)
    if _up_to_date(out, plan):
        return shards.read_manifest(out)
    work = _work_dir(out, plan)
    chunks = functools.partial(_chunks, groups, settings)
    spec = _tokenizer_in(work, given, settings.train_tokenizer, chunks)
    tok = tokenizer.load(spec, "--tokenizer")
    n_chunks = _tokenize_chunks(work, chunks(), spec, workers, progress)
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "plan": plan,
        "dtype": shards.token_dtype(tok.vocab_size).str,
        "tokenizer": _tokenizer_record(tok, tokenizer_spec, settings, Path(spec).name),
        "sources": fingerprints,
        "settings": dataclasses.asdict(settings),
    }
    _assemble(out, work, n_chunks, manifest)
    shutil.rmtree(work)
    return manifest


def _check(settings: Settings, has_val_sources: bool, tokenizer_spec: str, workers: int) -> None:
    if has_val_sources and settings.val_fraction:
        raise ConfigError("--val-fraction", "given with --val", "hold out by one of them only")
    if not has_val_sources and not 0 < settings.val_fraction < 0.5:
        raise ConfigError(
            "--val-fraction",
            f"{settings.val_fraction} not in (0, 0.5) and no --val files",
            f"give --val FILES or e.g. --val-fraction {DEFAULT_VAL_FRACTION}",
        )
    if settings.train_tokenizer and tokenizer_spec != tokenizer.BYTES:
        raise ConfigError("--train-tokenizer", "given with --tokenizer", "give one of them")
    if settings.train_tokenizer and settings.train_tokenizer < 258:
        raise ConfigError(
            "--train-tokenizer",
            f"{settings.train_tokenizer} ids are too few",
            "give at least 258: the 256 bytes, <|endoftext|> and one merge",
        )
    positive = {
        "--workers": workers,
        "--shard-tokens": settings.shard_tokens,
        "--chunk-bytes": settings.chunk_bytes,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(name, f"must be >= 1, got {value}", "use a positive integer")


def _check_eos(tok: tokenizer.Tokenizer) -> None:
    """Documents of a subword corpus are delimited by EOS; bytes use a blank line instead."""
    if tok.eos_id is None and tok.sha256 != tokenizer.BYTES:
        raise ConfigError(
            "--tokenizer",
            f"{tok.spec} has no end-of-document token (none of {', '.join(tokenizer.EOS_NAMES)})",
            "give a tokenizer with an EOS token, or --train-tokenizer VOCAB",
        )


def _plan_id(fingerprints: dict, settings: Settings, given: tokenizer.Tokenizer | None) -> str:
    plan = {
        "format_version": shards.FORMAT_VERSION,
        "sources": fingerprints,
        "settings": dataclasses.asdict(settings),
        "tokenizer": given.sha256 if given else None,
    }
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def _up_to_date(out: Path, plan: str) -> bool:
    """The shards in `out` were made from this plan and are all there: nothing to do."""
    try:
        manifest = shards.read_manifest(out)
    except ConfigError:
        return False
    if manifest["plan"] != plan or not shards.shards_present(out, manifest):
        return False
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)  # left by a kill after the manifest
    return True


def _work_dir(out: Path, plan: str) -> Path:
    """OUT/.partial for this plan: kept from an interrupted run of the same plan, else fresh."""
    work = out / WORK_DIR
    marker = work / "plan.json"
    if work.is_dir() and (not marker.is_file() or json.loads(marker.read_text()) != plan):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    shards.write_atomic(marker, json.dumps(plan).encode())
    return work


def _tokenizer_in(work: Path, given, train_vocab: int, chunks) -> str:
    """The tokenizer's spec for the workers: `bytes`, or its file copied (or trained) into
    the work directory, so that the shards carry exactly the vocabulary they were made with."""
    if given is not None and given.sha256 == tokenizer.BYTES:
        return tokenizer.BYTES
    name = "tokenizer.model" if given is not None and given.spec.endswith(".model") else None
    path = work / (name or "tokenizer.json")
    if given is not None:
        shards.write_atomic(path, Path(given.spec).read_bytes())
    elif not path.is_file():  # trained once per plan, then kept across interruptions
        texts = (d for c in chunks() for d, v in zip(c.documents, c.is_val) if not v)
        tmp = tokenizer.train_bpe(texts, train_vocab, work / "tokenizer.trained.json")
        os.replace(tmp, path)
    return str(path)


def _tokenizer_record(tok, spec: str, settings: Settings, file: str) -> dict:
    return {
        "name": tok.name,
        "spec": f"train_bpe({settings.train_tokenizer})" if settings.train_tokenizer else spec,
        "file": "" if tok.sha256 == tokenizer.BYTES else file,
        "sha256": tok.sha256,
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
    }


def _chunks(groups: dict, settings: Settings):
    """The corpus as Chunks, in order: documents of one source, about chunk_bytes characters."""
    index = 0
    for split, group in groups.items():
        for src in group:
            docs, size = [], 0
            for doc in sources.documents(src, settings.field, settings.column):
                docs.append(doc)
                size += len(doc)
                if size >= settings.chunk_bytes:
                    yield _chunk(index, docs, split == "val", settings)
                    index, docs, size = index + 1, [], 0
            if docs:
                yield _chunk(index, docs, split == "val", settings)
                index += 1


def _chunk(index: int, docs: list[str], held_out: bool, settings: Settings) -> Chunk:
    if held_out:
        return Chunk(index, docs, np.ones(len(docs), bool))
    draws = np.random.default_rng([settings.val_seed, index]).random(len(docs))
    return Chunk(index, docs, draws < settings.val_fraction)


def _chunk_path(work: Path, index: int, suffix: str) -> Path:
    return work / f"chunk-{index:06d}.{suffix}"


def tokenize_chunk(work: str, chunk: Chunk, spec: str) -> int:
    """Worker: the chunk's documents, each ended by EOS (bytes: a blank line), as one train and
    one val file of ids, then its counts; returns the chunk's characters (for the progress)."""
    tok = tokenizer.load(spec)
    dtype = shards.token_dtype(tok.vocab_size)
    has_eos = tok.eos_id is not None
    end = shards.document_end(tok).astype(dtype)
    # Bytes per token are counted as tokenizer.bytes_per_token counts them: EOS is no text; the
    # byte tokenizer's blank line is text (a byte a token).
    end_text = 0 if has_eos else len(end)
    ids = tok.encode_batch(chunk.documents)
    counts = {}
    for split, keep in (("train", ~chunk.is_val), ("val", chunk.is_val)):
        chosen = np.flatnonzero(keep)
        blob = shards.document_stream([ids[k] for k in chosen], end, dtype).tobytes()
        shards.write_atomic(_chunk_path(Path(work), chunk.index, f"{split}.bin"), blob)
        counts[split] = {
            "documents": len(chosen),
            "tokens": len(blob) // dtype.itemsize,
            "text_tokens": sum(len(ids[k]) for k in chosen) + end_text * len(chosen),
            "bytes": sum(len(chunk.documents[k].encode()) for k in chosen) + end_text * len(chosen),
        }
    shards.write_atomic(_chunk_path(Path(work), chunk.index, "json"), json.dumps(counts).encode())
    return sum(len(d) for d in chunk.documents)


class _InProcess:
    """The pool's interface for one worker: tokenize here, no process to start."""

    def submit(self, fn, *args) -> Future:
        future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _start_worker() -> None:
    # one process a core: the tokenizers library's own threads would oversubscribe them
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # A pool's workers outlive a parent killed -9 (they hold their task pipe's both ends):
    # leave when it is gone.
    parent = multiprocessing.parent_process()
    threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def _tokenize_chunks(work: Path, chunks, spec: str, workers: int, progress: bool) -> int:
    """Tokenize every unfinished chunk, at most 2 per worker in flight (the reading waits for
    the workers, so memory stays bounded); returns the number of chunks."""
    from tqdm.auto import tqdm

    pool = _InProcess()
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
    # on a terminal only (disable=None): a log gets the summary, not a bar
    bar = tqdm(desc="prepare", unit="B", unit_scale=True, disable=None if progress else True)
    finished, pending, n_chunks = 0, set(), 0
    with pool, bar:
        for chunk in chunks:
            n_chunks += 1
            if _chunk_path(work, chunk.index, "json").is_file():
                bar.update(sum(len(d) for d in chunk.documents))
                continue
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                finished = _collect(done, finished, bar)
            pending.add(pool.submit(tokenize_chunk, str(work), chunk, spec))
        _collect(wait(pending).done, finished, bar)
    return n_chunks


def _collect(done: set[Future], finished: int, bar) -> int:
    for future in done:
        bar.update(future.result())  # a worker's exception is raised here
        finished += 1
        if os.environ.get(CRASH_AFTER_ENV) == str(finished):
            os.kill(os.getpid(), signal.SIGKILL)
    return finished


def _assemble(out: Path, work: Path, n_chunks: int, manifest: dict) -> None:
    """Shards from the chunk files in chunk order, then the tokenizer file and the manifest."""
    counts = [json.loads(_chunk_path(work, k, "json").read_text()) for k in range(n_chunks)]
    totals = {s: {c: sum(k[s][c] for k in counts) for c in COUNTS} for s in shards.SPLITS}
    _check_not_empty(totals, manifest)
    (out / shards.MANIFEST).unlink(missing_ok=True)  # describes shards about to be replaced
    dtype = np.dtype(manifest["dtype"])
    manifest["splits"] = {}
    for split in shards.SPLITS:
        writer = shards.ShardWriter(out, split, dtype, manifest["settings"]["shard_tokens"])
        for k in range(n_chunks):
            writer.write(np.fromfile(_chunk_path(work, k, f"{split}.bin"), dtype))
        t = totals[split]
        manifest["splits"][split] = {
            "shards": writer.close(),
            **t,
            "bytes_per_token": t["bytes"] / t["text_tokens"],
        }
    kept = {s["name"] for split in manifest["splits"].values() for s in split["shards"]}
    shards.remove_stale_shards(out, kept)
    if file := manifest["tokenizer"]["file"]:
        shards.write_atomic(out / file, (work / file).read_bytes())
    text = json.dumps(manifest, indent=1) + "\n"
    shards.write_atomic(out / shards.MANIFEST, text.encode())


def _check_not_empty(totals: dict, manifest: dict) -> None:
    names = ", ".join(s["path"] for group in manifest["sources"].values() for s in group)
    if not totals["train"]["documents"]:
        raise ConfigError(
            "SOURCES", f"no documents in {names}", "check the files, --field, --column"
        )
    if not totals["val"]["documents"]:
        raise ConfigError(
            "--val-fraction",
            f"no document of {totals['train']['documents']} was held out",
            "raise --val-fraction or give --val FILES",
        )
