"""Tokenizers behind one small interface: bytes, a Hugging Face `tokenizers` file, SentencePiece.

A tokenizer is named in a config by one string (`data.tokenizer`):
- `bytes` (the default): UTF-8 bytes, vocabulary 256, no special tokens. Loss in nats per token
  divided by ln 2 is then bits per byte directly.
- a path to a `tokenizer.json` of the Hugging Face `tokenizers` library (GPT-2, LLaMA-3, a BPE
  trained with `train_bpe`), loaded from the local file and never downloaded;
- a path to a SentencePiece `.model` file.

Each one carries a content hash (`sha256`), so shards, checkpoints and results name exactly the
vocabulary they were made with, and its end-of-document token (`eos_id`; None for bytes, whose
documents are separated by a blank line as before). `bits_per_byte` turns nats per token into the
tokenizer-independent companion with the measured bytes per token of the text it was scored on.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from scaling.typed import ConfigError

BYTES = "bytes"
# End-of-document names used by the field's tokenizers, searched in this order.
EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "[EOS]", "<|eos|>")
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "[BOS]")
# Accelerators want the embedding's vocabulary dimension to be a multiple of this (GPT-2's 50257
# becomes 50304 in nanoGPT); the padded rows are never a target and only cost a little memory.
VOCAB_MULTIPLE = 128


class Tokenizer(Protocol):
    name: str  # short label for axes and tables: "bytes", "bpe-4096", "sp-8000"
    spec: str  # what the config said (`bytes` or the file's path)
    vocab_size: int  # ids are < vocab_size
    eos_id: int | None
    bos_id: int | None
    sha256: str

    def encode(self, text: str) -> np.ndarray: ...

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]: ...

    def decode(self, ids) -> str: ...


@dataclass(frozen=True)
class ByteTokenizer:
    name: str = BYTES
    spec: str = BYTES
    vocab_size: int = 256
    eos_id: int | None = None
    bos_id: int | None = None
    sha256: str = BYTES

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _FileTokenizer:
    """A tokenizer library's object (`inner`) loaded from the file `spec`, and its facts."""

    spec: str
    sha256: str
    inner: object = field(repr=False, compare=False)
    name: str = ""
    vocab_size: int = 0
    eos_id: int | None = None
    bos_id: int | None = None


class HFTokenizer(_FileTokenizer):
    """A `tokenizers` file. Special tokens are never added by encode (no post-processor BOS):
    documents get their EOS from the data pipeline, prompts get exactly their text."""

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.inner.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        out = self.inner.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in out]

    def decode(self, ids) -> str:
        return self.inner.decode([int(i) for i in ids], skip_special_tokens=False)


class SentencePieceTokenizer(_FileTokenizer):
    """A SentencePiece `.model` file."""

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.inner.encode(text), dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int64) for ids in self.inner.encode(texts)]

    def decode(self, ids) -> str:
        return self.inner.decode([int(i) for i in ids])


def load(spec: str, where: str = "data.tokenizer") -> Tokenizer:
    """The tokenizer a config names (cached per file content)."""
    if spec == BYTES:
        return ByteTokenizer()
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            where,
            f"no tokenizer file {spec!r}",
            "give 'bytes', a tokenizer.json path or a SentencePiece .model path",
        )
    blob = path.read_bytes()
    return _load(str(path), hashlib.sha256(blob).hexdigest(), where)


@functools.lru_cache(maxsize=8)
def _load(path: str, sha256: str, where: str) -> Tokenizer:
    if path.endswith(".model"):
        return _sentencepiece(path, sha256, where)
    return _hugging_face(path, sha256, where)


def _hugging_face(path: str, sha256: str, where: str) -> HFTokenizer:
    from tokenizers import Tokenizer as Inner

    try:
        inner = Inner.from_file(path)
    except Exception as e:  # the library raises a bare Exception for a malformed file
        raise ConfigError(
            where, f"{path} is not a tokenizers file ({_first_line(e)})", "give a tokenizer.json"
        ) from None
    vocab = inner.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    model = type(inner.model).__name__.lower()
    return HFTokenizer(
        spec=path,
        sha256=sha256,
        inner=inner,
        name=f"{model}-{size}",
        vocab_size=size,
        eos_id=_first_id(vocab, EOS_NAMES),
        bos_id=_first_id(vocab, BOS_NAMES),
    )


def _sentencepiece(path: str, sha256: str, where: str) -> SentencePieceTokenizer:
    import sentencepiece

    try:
        inner = sentencepiece.SentencePieceProcessor(model_file=path)
    except (OSError, RuntimeError) as e:
        raise ConfigError(
            where, f"{path} is not a SentencePiece model ({_first_line(e)})", "give a .model file"
        ) from None
    size = inner.get_piece_size()
    return SentencePieceTokenizer(
        spec=path,
        sha256=sha256,
        inner=inner,
        name=f"sp-{size}",
        vocab_size=size,
        eos_id=_valid_id(inner.eos_id()),
        bos_id=_valid_id(inner.bos_id()),
    )


def _first_id(vocab: dict[str, int], names: tuple[str, ...]) -> int | None:
    return next((vocab[n] for n in names if n in vocab), None)


def _valid_id(i: int) -> int | None:
    return i if i >= 0 else None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def padded_vocab(size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """The model vocabulary for a tokenizer of `size` ids: rounded up to `multiple`."""
    return -(-size // multiple) * multiple


def check_vocab(model_vocab: int, tok: Tokenizer, where: str = "model.vocab_size") -> None:
    """The model's embedding must hold every id of the tokenizer."""
    if model_vocab < tok.vocab_size:
        raise ConfigError(
            where,
            f"{model_vocab} < the {tok.vocab_size} ids of tokenizer {tok.name}",
            f"use {padded_vocab(tok.vocab_size)} (padded to a multiple of {VOCAB_MULTIPLE})",
        )


def bytes_per_token(tok: Tokenizer, texts: Iterable[str]) -> float:
    """UTF-8 bytes per token over `texts` (1.0 for bytes)."""
    texts = list(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    return n_bytes / n_tokens if n_tokens else 1.0


def bits_per_byte(nats_per_token: float, tokens_per_byte: float = 1.0) -> float:
    """bits/byte = nats/token ÷ ln 2 × tokens/byte: comparable across tokenizers."""
    return nats_per_token / math.log(2) * tokens_per_byte


def train_bpe(texts: Iterable[str], vocab_size: int, path: str | Path) -> Path:
    """Train a byte-level BPE (GPT-2's pre-tokenizer, `<|endoftext|>` as EOS) on local text and
    save it as a tokenizer.json: the offline way to a subword vocabulary for a study or a test."""
    from tokenizers import Tokenizer as Inner
    from tokenizers import decoders, models, pre_tokenizers, trainers

    inner = Inner(models.BPE())
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_NAMES[0]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    inner.train_from_iterator(texts, trainer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner.save(str(path))
    return path


def byte_tokenizers_object():
    """The byte tokenizer as a `tokenizers` object, for a Hugging Face export: ids are the UTF-8
    byte values, as ByteTokenizer's. A BPE with no merges whose vocabulary is the 256 byte
    tokens `<0x00>`..`<0xFF>` (LLaMA's byte-fallback names): every character falls back to its
    bytes; no pre-tokenizer or normalizer, so spaces and newlines are bytes like any other."""
    from tokenizers import Tokenizer as Inner
    from tokenizers import decoders, models

    vocab = {f"<0x{b:02X}>": b for b in range(256)}
    inner = Inner(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    inner.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return inner
