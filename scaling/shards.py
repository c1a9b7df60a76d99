"""Token shards on disk: what `scaling prepare` writes and `data: {corpus: tokens}` trains from.

A shard directory holds
    manifest.json          format version, tokenizer, sources, prepare settings, and per split
                           its shards (name, tokens, sha256), documents, tokens, bytes, bytes/token
    tokenizer.json | tokenizer.model   the tokenizer the ids came from (none for bytes), so that
                           training and evaluation use exactly that vocabulary
    train-00000.bin ...    flat little-endian uint16 ids (a vocabulary of at most 65,536), else
    val-00000.bin ...      uint32; no header, so any tool can read them with one memmap

Within a split, documents follow each other in source order, each ended by the tokenizer's EOS
(bytes, which have none: by a blank line). `SplitReader` memory-maps every shard of a split and
serves any slice by global offset, a window crossing a shard boundary included; nothing reads a
shard whole, so a run's host memory does not grow with the corpus.

The reader is a few numpy calls on memory maps rather than a loader library (grain, a
`datasets` pipeline): a training window is one slice of one map, which bench/corpus.py measures
at tens of millions of tokens/s, far above what a train step consumes (bench/RESULTS.md), and
batch order stays the pure function of (seed, step) that exact resume relies on (scaling.data).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path

import numpy as np

from scaling import tokenizer
from scaling.typed import ConfigError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
# Between two documents when the tokenizer has no EOS (bytes): a blank line.
DOC_SEPARATOR = "\n\n"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def document_end(tok) -> np.ndarray:
    """The ids that end every document of a stream, hence precede every document's first token:
    EOS, or for a tokenizer without one (bytes) the blank line that separates documents."""
    return np.asarray([tok.eos_id] if tok.eos_id is not None else tok.encode(DOC_SEPARATOR))


def document_stream(ids: list[np.ndarray], end: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The documents' ids as one stream, each followed by `end` (EOS, or for the byte tokenizer
    the ids of the blank line that separates documents)."""
    parts = [part for doc in ids for part in (doc, end)]
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def write_atomic(path: Path, content: bytes) -> None:
    """Write through a temporary file and a rename: a kill leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def read_manifest(directory: str | Path, where: str = "data.path") -> dict:
    """The manifest of a shard directory; a missing or foreign one is a one-line error."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ConfigError(
            where, f"no {MANIFEST} in {directory}", "give a directory written by `scaling prepare`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(where, f"{path} is not JSON ({e})", "re-run `scaling prepare`") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            where,
            f"{path} has format version {manifest.get('format_version')}, not {FORMAT_VERSION}",
            "re-run `scaling prepare` with this version",
        )
    return manifest


def tokenizer_spec(directory: str | Path, manifest: dict) -> str:
    """What tokenizer.load needs for the shards' own tokenizer: `bytes` or the copied file."""
    name = manifest["tokenizer"]["file"]
    return str(Path(directory) / name) if name else tokenizer.BYTES


def load_tokenizer(directory: str | Path, where: str = "data.path") -> tokenizer.Tokenizer:
    return tokenizer.load(tokenizer_spec(directory, read_manifest(directory, where)), where)


def check_tokenizer(directory: str | Path, spec: str, where: str = "data") -> None:
    """`data.tokenizer` left at `bytes` means the shards' own; any other must be that one."""
    manifest = read_manifest(directory, f"{where}.path")
    if spec == tokenizer.BYTES:
        return
    given, theirs = tokenizer.load(spec, f"{where}.tokenizer"), manifest["tokenizer"]
    if given.sha256 != theirs["sha256"]:
        raise ConfigError(
            f"{where}.tokenizer",
            f"{spec} is not the tokenizer {directory} was prepared with ({theirs['name']})",
            "leave data.tokenizer unset: the shards carry their own",
        )


class SplitReader:
    """One split's shards as one read-only sequence of token ids: len() and slices by global
    offset, each slice a view of a memory map (a copy where it crosses a shard boundary).

    Windows are read at random places, so the maps tell the kernel so (MADV_RANDOM: no 128 KiB
    readahead around each 2 KiB window: bench/RESULTS.md), and
    `prefetch` asks it to start reading windows that will be needed (MADV_WILLNEED), so that a
    batch's reads overlap the train step before it."""

    def __init__(self, directory: str | Path, split: str, manifest: dict | None = None):
        manifest = manifest or read_manifest(directory)
        self.dtype = np.dtype(manifest["dtype"])
        records = manifest["splits"][split]["shards"]
        self.maps = [_map(Path(directory) / r["name"]) for r in records]
        self.arrays = [np.frombuffer(m, self.dtype) for m in self.maps]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("token shards serve contiguous slices only")
            pieces = [self.arrays[i][a:b] for i, a, b in self._pieces(start, stop)]
            if len(pieces) == 1:
                return pieces[0]  # a read-only view of the map: the caller copies what it keeps
            return np.concatenate(pieces) if pieces else np.zeros(0, self.dtype)
        index = int(key) + (len(self) if key < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"token {key} of {len(self)}")
        return self[index : index + 1][0]

    def prefetch(self, starts, length: int) -> None:
        """Start reading the windows [s, s + length) of `starts` in the background."""
        size = self.dtype.itemsize
        for s in starts:
            for i, a, b in self._pieces(int(s), int(s) + length):
                first = a * size // mmap.PAGESIZE * mmap.PAGESIZE
                self.maps[i].madvise(mmap.MADV_WILLNEED, first, b * size - first)

    def _pieces(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """(shard, first, end) of each shard's part of the tokens [start, stop), in order."""
        pieces = []
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop and shard < len(self.arrays):
            offset, end = int(self.starts[shard]), min(stop, int(self.starts[shard + 1]))
            pieces.append((shard, start - offset, end - offset))
            start, shard = end, shard + 1
        return pieces


def _map(path: Path) -> mmap.mmap:
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mapped.madvise(mmap.MADV_RANDOM)
    return mapped


class ShardWriter:
    """Writes one split's token stream as shards of `shard_tokens` ids, hashing each as it goes.
    A shard lands under its final name only once whole (written as .tmp, then renamed)."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.directory, self.split, self.dtype = directory, split, dtype
        self.shard_tokens = shard_tokens
        self.shards: list[dict] = []
        self._file, self._hash, self._count = None, None, 0

    def write(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=self.dtype)
        while len(ids):
            if self._file is None:
                self._open()
            take = ids[: self.shard_tokens - self._count]
            blob = take.tobytes()
            self._file.write(blob)
            self._hash.update(blob)
            self._count += len(take)
            ids = ids[len(take) :]
            if self._count == self.shard_tokens:
                self._close_shard()

    def close(self) -> list[dict]:
        """The written shards' records (name, tokens, sha256), in order."""
        if self._file is not None:
            self._close_shard()
        return self.shards

    def _name(self) -> str:
        return f"{self.split}-{len(self.shards):05d}.bin"

    def _open(self) -> None:
        self._file = open(self.directory / (self._name() + ".tmp"), "wb")  # noqa: SIM115
        self._hash, self._count = hashlib.sha256(), 0

    def _close_shard(self) -> None:
        self._file.close()
        name = self._name()
        os.replace(self.directory / (name + ".tmp"), self.directory / name)
        self.shards.append({"name": name, "tokens": self._count, "sha256": self._hash.hexdigest()})
        self._file = None


def shards_present(directory: Path, manifest: dict) -> bool:
    """Every shard the manifest lists is there with its size (a cheap check: no re-hashing)."""
    size = np.dtype(manifest["dtype"]).itemsize
    return all(
        (directory / s["name"]).is_file()
        and (directory / s["name"]).stat().st_size == s["tokens"] * size
        for split in manifest["splits"].values()
        for s in split["shards"]
    )


def remove_stale_shards(directory: Path, keep: set[str]) -> None:
    """Shards of an earlier, longer preparation that this one does not list."""
    for split in SPLITS:
        for path in directory.glob(f"{split}-*.bin"):
            if path.name not in keep:
                path.unlink()
