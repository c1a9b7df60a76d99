"""`scaling prepare`: every input format, the same shards for any worker count, resumption after
kill -9, and one-line errors with exit code 2."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from corpus_files import DOCS, write_bpe, write_every_format

from experiments.cli import main
from scaling import shards, sources, tokenizer
from scaling.prepare import CRASH_AFTER_ENV, WORK_DIR, Settings, prepare

SMALL_CHUNKS = Settings(val_fraction=0.1, chunk_bytes=20_000)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return {"bpe": write_bpe(root), **write_every_format(root / "files")}


def hashes(manifest: dict) -> dict:
    return {
        s["name"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]
    }


def documents_of(ids: np.ndarray, tok) -> list[str]:
    cuts = np.flatnonzero(ids == tok.eos_id)
    return [tok.decode(part[:-1]) for part in np.split(ids, cuts + 1)[:-1]]


@pytest.mark.parametrize("kind", ["txt", "jsonl", "jsonl.gz", "jsonl.zst", "parquet", "arrow"])
def test_every_format_reads_the_same_documents(corpus, kind):
    assert list(sources.documents(sources.source(str(corpus[kind])))) == DOCS


def test_shards_hold_every_document_once_ending_in_eos(corpus, tmp_path):
    manifest = prepare([str(corpus["jsonl"])], tmp_path, corpus["bpe"], settings=SMALL_CHUNKS)
    tok = shards.load_tokenizer(tmp_path)
    assert tok.sha256 == tokenizer.load(corpus["bpe"]).sha256  # the copy in the directory
    train, val = (documents_of(shards.SplitReader(tmp_path, s)[:], tok) for s in shards.SPLITS)
    assert sorted(train + val) == sorted(DOCS) and not set(train) & set(val)
    held_out_at = sorted(DOCS.index(d) for d in val)
    assert held_out_at[0] < len(DOCS) / 4 and held_out_at[-1] > len(DOCS) * 3 / 4  # spread out
    assert 0.05 < len(val) / len(DOCS) < 0.15
    split = manifest["splits"]["val"]
    assert split["documents"] == len(val) and manifest["dtype"] == "<u2"
    assert split["bytes"] == sum(len(d.encode()) for d in val)
    assert np.isclose(split["bytes_per_token"], tokenizer.bytes_per_token(tok, val))
    assert (
        manifest["sources"]["train"][0]["sha256"]
        == sources.fingerprint(sources.source(str(corpus["jsonl"])))["sha256"]
    )


def test_same_shards_for_any_worker_count_and_a_rerun_does_nothing(corpus, tmp_path):
    files = [str(corpus[k]) for k in ("txt", "jsonl.zst", "parquet", "arrow")]
    settings = Settings(val_fraction=0.1, chunk_bytes=20_000, shard_tokens=20_000)
    one = prepare(files, tmp_path / "one", corpus["bpe"], settings=settings, workers=1)
    two = prepare(files, tmp_path / "two", corpus["bpe"], settings=settings, workers=2)
    assert one == two and len(one["splits"]["train"]["shards"]) > 2
    assert (tmp_path / "one" / "manifest.json").read_bytes() == (
        tmp_path / "two" / "manifest.json"
    ).read_bytes()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "one").iterdir()}
    assert prepare(files, tmp_path / "one", corpus["bpe"], settings=settings) == one
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "one").iterdir()}


def test_separate_validation_files_and_byte_shards(corpus, tmp_path):
    manifest = prepare([str(corpus["txt"])], tmp_path, val=[str(corpus["jsonl.gz"])])
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert train["documents"] == val["documents"] == len(DOCS)
    stream = shards.SplitReader(tmp_path, "val")[:].astype(np.uint8).tobytes().decode()
    assert stream == "".join(d + "\n\n" for d in DOCS)  # bytes: documents end in a blank line
    assert val["bytes_per_token"] == 1.0 and manifest["tokenizer"]["file"] == ""


def run_prepare(out, corpus, crash_after: str = ""):
    """`scaling prepare` in a process of its own (2 workers, 20 kB chunks, 30k-token shards)."""
    cmd = [sys.executable, "-m", "experiments", "prepare", str(corpus["jsonl"])]
    cmd += [str(corpus["parquet"]), "--out", str(out), "--tokenizer", corpus["bpe"]]
    cmd += ["--val-fraction", "0.1", "--workers", "2", "--chunk-bytes", "20000"]
    cmd += ["--shard-tokens", "30000"]
    env = os.environ | {CRASH_AFTER_ENV: crash_after, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_kill_9_then_rerun_gives_identical_shards(corpus, tmp_path):
    assert run_prepare(tmp_path / "killed", corpus, crash_after="3").returncode == -signal.SIGKILL
    work = tmp_path / "killed" / WORK_DIR
    assert len(list(work.glob("chunk-*.json"))) >= 3
    assert not (tmp_path / "killed" / shards.MANIFEST).exists()
    resumed = run_prepare(tmp_path / "killed", corpus)
    assert resumed.returncode == 0, resumed.stderr
    assert not work.exists()
    assert run_prepare(tmp_path / "clean", corpus).returncode == 0
    killed, clean = (shards.read_manifest(tmp_path / d) for d in ("killed", "clean"))
    assert hashes(killed) == hashes(clean) and len(hashes(clean)) > 2


def test_a_trained_tokenizer_travels_with_the_shards(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["prepare", str(corpus["txt"]), "--out", str(out), "--train-tokenizer", "300"]
    assert main([*args, "--workers", "1"]) == 0
    manifest = shards.read_manifest(out)
    assert manifest["tokenizer"]["spec"] == "train_bpe(300)"
    assert shards.load_tokenizer(out).vocab_size == 300
    assert "bytes/token" in capsys.readouterr().out


def bad_input_cases(tmp_path, bpe):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    (tmp_path / "field.jsonl").write_text('{"text": "a"}\n\n{"body": "b"}\n')
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    (tmp_path / "corpus.csv").write_text("text\nhello\n")
    (tmp_path / "ok.txt").write_text("hello world\n")
    from tokenizers import Tokenizer, models

    no_eos = tmp_path / "no_eos.json"
    Tokenizer(models.WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(no_eos))
    return [
        (["bad.jsonl"], f"{tmp_path / 'bad.jsonl'}:2: not UTF-8 (byte 0xe9 at column 14)"),
        (["field.jsonl"], f"{tmp_path / 'field.jsonl'}:3: no field 'text' (has ['body'])"),
        (["empty.jsonl"], "SOURCES: no documents in"),
        (["corpus.csv"], "unknown format '.csv'"),
        (["missing.txt"], "missing.txt: no such file"),
        (["ok.txt", "--tokenizer", str(no_eos)], "has no end-of-document token"),
        (["ok.txt", "--val", "ok.txt", "--val-fraction", "0.1"], "--val-fraction: given with"),
    ]


def test_bad_input_is_one_line_naming_the_file_and_line_exit_2(corpus, tmp_path, capsys):
    for args, message in bad_input_cases(tmp_path, corpus["bpe"]):
        paths = [str(tmp_path / a) if a.endswith((".jsonl", ".txt", ".csv")) else a for a in args]
        assert main(["prepare", *paths, "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and "fix:" in err, (args, err)
