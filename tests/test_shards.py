"""Training from token shards: the memory-mapped reader, epoch sampling, the config checks, and a
run from shards that resumes after a crash to bit-identical parameters."""

import json

import numpy as np
import pytest
from conftest import TINY, tiny_run
from corpus_files import write_bpe, write_every_format
from test_train import Crash, _assert_same_params

from experiments.cli import main
from experiments.collect import collect
from scaling import data, shards
from scaling.config import ConfigError, run_config
from scaling.prepare import Settings, prepare
from scaling.train import read_metrics, train


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """{tokenizer: shard directory} of the same corpus, bytes and a 384-id BPE."""
    root = tmp_path_factory.mktemp("shards")
    files = write_every_format(root / "files")
    bpe = write_bpe(root)
    out = {}
    for name, spec in (("bytes", "bytes"), ("bpe", bpe)):
        settings = Settings(val_fraction=0.1, shard_tokens=10_000)
        prepare([str(files["jsonl"])], root / name, spec, settings=settings)
        out[name] = root / name
    return out


def test_a_split_reads_like_one_array_across_shard_boundaries(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 2**16, 1000).astype("<u2")
    writer = shards.ShardWriter(tmp_path, "train", tokens.dtype, shard_tokens=64)
    for part in np.array_split(tokens, 7):  # writes that do not line up with the shards
        writer.write(part)
    records = writer.close()
    assert [r["tokens"] for r in records] == [64] * 15 + [40]
    manifest = {"dtype": "<u2", "splits": {"train": {"shards": records}}}
    reader = shards.SplitReader(tmp_path, "train", manifest)
    assert len(reader) == 1000 and reader[-1] == tokens[-1] and reader[63] == tokens[63]
    for start, stop in [(0, 1000), (60, 70), (64, 128), (100, 400), (990, 2000), (5, 5)]:
        np.testing.assert_array_equal(reader[start:stop], tokens[start:stop])
    np.testing.assert_array_equal(
        data.train_batch(reader, 3, 7, 4, 32), data.train_batch(tokens, 3, 7, 4, 32)
    )


def test_epochs_visit_every_window_once_per_epoch():
    tokens = np.arange(1000, dtype=np.uint16)  # window k starts at token k·seq_len
    seq_len, batch, unique = 16, 6, 500  # 31 windows: 496 unique tokens
    n = data.epoch_windows(len(tokens), seq_len, unique)
    seen = [
        data.train_batch(tokens, 0, step, batch, seq_len, sampling="epochs", unique_tokens=unique)
        for step in range(20)
    ]
    starts = np.concatenate([b[:, 0] for b in seen]) // seq_len
    assert n == 31 and np.all(np.concatenate(seen)[:, 1:] < 496 + 1)
    for epoch in range(len(starts) // n):
        assert sorted(starts[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert not np.array_equal(starts[:n], starts[n : 2 * n])  # a fresh order every epoch
    trained = 20 * batch * seq_len
    count = data.unique_token_count(len(tokens), seq_len, "epochs", unique)
    assert count == 496 and count * (trained / count) == trained and trained / count == 120 / 31
    data.epoch_order.cache_clear()  # a resumed process has no cache: the same batches
    data.window_starts.cache_clear()
    again = data.train_batch(tokens, 0, 13, batch, seq_len, [1, 4], "epochs", unique)
    np.testing.assert_array_equal(again, seen[13][[1, 4]])


def token_run(path, **data_fields) -> dict:
    run = tiny_run(steps=30)
    run["data"] = {"corpus": "tokens", "path": str(path), **data_fields}
    return run


def test_the_config_names_what_is_wrong_with_the_shards(prepared, tmp_path):
    with pytest.raises(ConfigError, match="data.path: no manifest.json in"):
        run_config(token_run(tmp_path))
    with pytest.raises(ConfigError, match="data.path: empty while corpus is 'tokens'"):
        run_config(token_run(""))
    with pytest.raises(ConfigError, match="model.vocab_size: 256 < the 384 ids of tokenizer bpe"):
        run_config(token_run(prepared["bpe"]))
    with pytest.raises(ConfigError, match="data.tokenizer: .* is not the tokenizer"):
        other = write_bpe(tmp_path, 300)
        run_config(token_run(prepared["bytes"], tokenizer=other))
    with pytest.raises(ConfigError, match="data.sampling: unknown sampling 'shuffle'"):
        run_config(token_run(prepared["bytes"], sampling="shuffle"))
    cfg = run_config(token_run(prepared["bytes"], unique_tokens=10**9))
    corpus = data.load_corpus(cfg.data)
    with pytest.raises(ConfigError, match="data.unique_tokens: 1000000000 > the"):
        data.check_fits(corpus, 64, cfg.data.unique_tokens)
    manifest = shards.read_manifest(prepared["bytes"])
    assert len(corpus.train) == manifest["splits"]["train"]["tokens"]
    assert corpus.heldout_tokens_per_byte == 1.0


@pytest.mark.slow
def test_training_from_bpe_shards_in_epochs_resumes_bit_identical(prepared, tmp_path):
    """30 steps of 8×64 tokens over 6,400 unique tokens (2.4 epochs), crashed at step 25."""
    fields = {"sampling": "epochs", "unique_tokens": 6_400}
    cfg = run_config(token_run(prepared["bpe"], **fields) | {"model": TINY | {"vocab_size": 384}})
    whole = train(cfg, tmp_path / "whole")
    assert whole.unique_tokens == 6_400 and np.isfinite(whole.final_heldout_loss)

    def crash_at_25(step, params):
        if step == 25:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, tmp_path / "split", on_step=crash_at_25)
    data.epoch_order.cache_clear()  # as a new process would start
    data.window_starts.cache_clear()
    resumed = train(cfg, tmp_path / "split")
    assert resumed.resumed_from == 20
    _assert_same_params(whole.params, resumed.params)
    rows = read_metrics(tmp_path / "whole")
    manifest = shards.read_manifest(prepared["bpe"])
    bpb_per_nat = 1 / np.log(2) / manifest["splits"]["val"]["bytes_per_token"]
    assert np.isclose(rows[-1]["bpb"], rows[-1]["loss"] * bpb_per_nat)


@pytest.mark.slow
def test_scaling_train_from_shards_puts_unique_tokens_and_epochs_in_the_results(prepared, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(token_run(prepared["bytes"], unique_tokens=5_000)))
    runs = tmp_path / "runs"
    assert main(["train", str(config), "--runs-dir", str(runs), "--no-tensorboard"]) == 0
    results, _ = collect(runs / "single")
    assert set(results.unique_tokens) == {5_000} and set(results.epochs) == {30 * 8 * 64 / 5_000}
