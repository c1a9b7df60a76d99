import json

import numpy as np
import pytest

from scaling import data
from scaling.config import ConfigError, DataConfig
from scaling.tokenizer import ByteTokenizer


def test_synthetic_corpus_is_deterministic_and_mixes_tasks():
    a = data.synthetic_text(20_000, 0.5, seed=3)
    assert a == data.synthetic_text(20_000, 0.5, seed=3)
    assert a != data.synthetic_text(20_000, 0.5, seed=4)
    assert len(a) == 20_000
    assert "=" in a and "reverse " in a and ". " in a  # task lines and prose
    assert "=" not in data.synthetic_text(20_000, 0.0, seed=3)


def test_batch_i_is_a_pure_function_of_seed_and_step():
    tokens = ByteTokenizer().encode(data.synthetic_text(50_000, 0.5, seed=0))
    b = data.train_batch(tokens, seed=7, step=11, batch_size=4, seq_len=32)
    assert b.shape == (4, 33) and b.dtype == np.int32
    np.testing.assert_array_equal(b, data.train_batch(tokens, 7, 11, 4, 32))
    assert not np.array_equal(b, data.train_batch(tokens, 7, 12, 4, 32))
    assert not np.array_equal(b, data.train_batch(tokens, 8, 11, 4, 32))


def test_heldout_split_is_disjoint_and_fixed():
    corpus = data.load_corpus(DataConfig(synthetic_chars=100_000, heldout_fraction=0.1))
    assert len(corpus.train) == 90_000 and len(corpus.heldout) == 10_000
    a = data.heldout_batches(corpus.heldout, 4, 32, 3)
    assert a.shape == (3, 4, 33)
    np.testing.assert_array_equal(a, data.heldout_batches(corpus.heldout, 4, 32, 3))


def test_user_text_and_jsonl_files(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "second"}) + "\n\n" + json.dumps({"text": "third"}) + "\n"
    )
    cfg = DataConfig(corpus="files", paths=(str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")))
    assert data.read_documents(cfg.paths, "text") == ["first document", "second", "third"]
    corpus = data.load_corpus(cfg)
    assert len(corpus.train) + len(corpus.heldout) == len("first document\n\nsecond\n\nthird")


def test_file_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"data.paths\[0\]: file not found"):
        data.read_documents((str(tmp_path / "missing.txt"),), "text")
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(ConfigError, match="data.jsonl_field.*'body'"):
        data.read_documents((str(tmp_path / "c.jsonl"),), "text")


def test_seq_len_longer_than_the_data_is_refused():
    corpus = data.Corpus(train=np.zeros(1000, np.uint8), heldout=np.zeros(50, np.uint8))
    with pytest.raises(ConfigError, match="model.seq_len: 64 needs 65 tokens but the heldout"):
        data.check_fits(corpus, 64)
