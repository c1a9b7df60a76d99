"""A small corpus written in every format `scaling prepare` reads, and a BPE trained on it."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from scaling import tokenizer
from scaling.data import synthetic_text
from scaling.shards import DOC_SEPARATOR

TEXT = synthetic_text(120_000, 0.5, seed=5)
DOCS = TEXT.split(DOC_SEPARATOR)


def write_bpe(directory: Path, vocab_size: int = 384) -> str:
    return str(tokenizer.train_bpe(DOCS, vocab_size, directory / "bpe" / "tokenizer.json"))


def _jsonl(docs: list[str]) -> bytes:
    return "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)).encode()


def write_saved_dataset(directory: Path, docs: list[str]) -> Path:
    """The layout of `datasets.Dataset.save_to_disk`: Arrow stream files named in state.json."""
    directory.mkdir(parents=True)
    table = pa.table({"text": docs, "id": list(range(len(docs)))})
    half = len(docs) // 2
    names = ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]
    for name, part in zip(names, (table.slice(0, half), table.slice(half))):
        with pa.ipc.new_stream(directory / name, part.schema) as writer:
            for batch in part.to_batches(max_chunksize=50):
                writer.write_batch(batch)
    state = {"_data_files": [{"filename": n} for n in names], "_split": "train"}
    (directory / "state.json").write_text(json.dumps(state))
    (directory / "dataset_info.json").write_text(json.dumps({"features": {}}))
    return directory


def write_every_format(directory: Path, docs: list[str] = DOCS) -> dict[str, Path]:
    """{format: path} of the same documents in each format."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "txt": directory / "corpus.txt",
        "jsonl": directory / "corpus.jsonl",
        "jsonl.gz": directory / "corpus.jsonl.gz",
        "jsonl.zst": directory / "corpus.jsonl.zst",
        "parquet": directory / "corpus.parquet",
    }
    paths["txt"].write_text(DOC_SEPARATOR.join(docs) + "\n")
    paths["jsonl"].write_bytes(_jsonl(docs))
    paths["jsonl.gz"].write_bytes(gzip.compress(_jsonl(docs), mtime=0))
    paths["jsonl.zst"].write_bytes(zstandard.ZstdCompressor().compress(_jsonl(docs)))
    pq.write_table(pa.table({"text": docs}), paths["parquet"], row_group_size=100)
    paths["arrow"] = write_saved_dataset(directory / "saved_dataset", docs)
    return paths
