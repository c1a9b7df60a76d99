"""Tokenizers: bytes, a locally trained BPE (tokenizers) and SentencePiece behind one interface."""

import io
import math
from pathlib import Path

import numpy as np
import pytest
import sentencepiece

from scaling import tokenizer
from scaling.data import synthetic_text
from scaling.typed import ConfigError

TEXT = synthetic_text(60_000, 0.5, seed=0)
LINES = TEXT.split("\n\n")


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES),
        model_writer=model,
        vocab_size=400,
        byte_fallback=True,
        minloglevel=2,
    )
    path = tmp_path_factory.mktemp("sp") / "sp.model"
    path.write_bytes(model.getvalue())
    return tokenizer.load(str(path))


def test_bytes_is_utf8():
    tok = tokenizer.load("bytes")
    ids = tok.encode("héllo")
    assert ids.tolist() == list("héllo".encode()) and tok.decode(ids) == "héllo"
    assert (tok.vocab_size, tok.eos_id, tok.sha256) == (256, None, "bytes")
    assert tokenizer.bytes_per_token(tok, ["héllo"]) == 1.0


def test_bpe_round_trips_and_compresses(bpe):
    assert bpe.vocab_size == 512 and bpe.name == "bpe-512"
    assert bpe.eos_id == bpe.inner.token_to_id("<|endoftext|>")
    for line in LINES[:50]:
        ids = bpe.encode(line)
        assert ids.max() < bpe.vocab_size and bpe.decode(ids) == line
    assert [a.tolist() for a in bpe.encode_batch(LINES[:3])] == [
        bpe.encode(t).tolist() for t in LINES[:3]
    ]
    assert tokenizer.bytes_per_token(bpe, LINES) > 1.5  # a 512-id BPE merges common words


def test_sentencepiece_round_trips(sentencepiece_model):
    sp = sentencepiece_model
    assert sp.vocab_size == 400 and sp.eos_id == 2 and sp.bos_id == 1
    assert sp.decode(sp.encode(LINES[0])) == LINES[0]


def test_load_is_keyed_by_content(tmp_path, bpe):
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(Path(bpe.spec).read_bytes())
    assert tokenizer.load(str(copy)).sha256 == bpe.sha256


@pytest.mark.parametrize("content", [b"", b"{not json", b"\x00\xff\xfe"])
def test_malformed_files_are_one_line_errors(tmp_path, content):
    for name in ("tokenizer.json", "sp.model"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ConfigError) as e:
            tokenizer.load(str(path))
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no tokenizer file"):
        tokenizer.load(str(tmp_path / "missing.json"))


def test_vocab_padding_and_check(bpe):
    assert tokenizer.padded_vocab(50257) == 50304 and tokenizer.padded_vocab(512) == 512
    tokenizer.check_vocab(512, bpe)
    with pytest.raises(ConfigError, match="use 512"):
        tokenizer.check_vocab(256, bpe)


def test_bits_per_byte():
    assert tokenizer.bits_per_byte(math.log(2)) == 1.0
    assert np.isclose(tokenizer.bits_per_byte(math.log(2) * 4, tokens_per_byte=0.25), 1.0)


def test_corpus_with_a_subword_tokenizer(bpe):
    from scaling import data
    from scaling.config import run_config

    cfg = run_config(
        {"data": {"tokenizer": bpe.spec, "synthetic_chars": 20_000}, "model": {"vocab_size": 512}}
    )
    corpus = data.load_corpus(cfg.data)
    assert corpus.tokenizer.sha256 == bpe.sha256
    assert corpus.train[-1] == corpus.heldout[-1] == bpe.eos_id  # every document ends in EOS
    assert 0.3 < corpus.heldout_tokens_per_byte < 0.7
    assert corpus.bits_per_byte(math.log(2)) == corpus.heldout_tokens_per_byte
    with pytest.raises(ConfigError, match="model.vocab_size: 256 < the 512 ids"):
        run_config({"data": {"tokenizer": bpe.spec}})
