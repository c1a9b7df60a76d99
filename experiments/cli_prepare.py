"""`scaling prepare`: a corpus tokenized once into token shards that runs memory-map.

    scaling prepare SOURCES... --out DIR [--tokenizer T | --train-tokenizer VOCAB]
                    [--val FILES... | --val-fraction F] [--field text] [--column text]
                    [--workers N] [--shard-tokens N] [--chunk-bytes N]

SOURCES: .txt, .jsonl (also .gz / .zst), .parquet files and `save_to_disk` dataset folders
(scaling/sources.py). Train from the result with `data: {corpus: tokens, path: DIR}`. The work is
in scaling/prepare.py: resumable after a kill, and the same inputs give the same shards.
"""

from __future__ import annotations

import os

from scaling.prepare import DEFAULT_VAL_FRACTION, Settings, prepare


def cmd_prepare(args) -> int:
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 0.0 if args.val else DEFAULT_VAL_FRACTION
    settings = Settings(
        field=args.field,
        column=args.column,
        val_fraction=val_fraction,
        val_seed=args.val_seed,
        shard_tokens=args.shard_tokens,
        chunk_bytes=args.chunk_bytes,
        train_tokenizer=args.train_tokenizer,
    )
    manifest = prepare(
        args.sources, args.out, args.tokenizer, args.val or (), settings, args.workers, True
    )
    tok = manifest["tokenizer"]
    print(f"{args.out}: tokenizer {tok['name']} ({tok['vocab_size']} ids, eos {tok['eos_id']})")
    for name, split in manifest["splits"].items():
        print(
            f"  {name}: {split['tokens']:,} tokens, {split['documents']:,} documents, "
            f"{split['bytes']:,} bytes ({split['bytes_per_token']:.3f} bytes/token), "
            f"{len(split['shards'])} shard(s)"
        )
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="tokenize a corpus once into memory-mapped shards")
    p.add_argument("sources", nargs="+", help=".txt/.jsonl[.gz|.zst]/.parquet files, dataset dirs")
    p.add_argument("--out", required=True, help="the shard directory to write")
    p.add_argument("--tokenizer", default="bytes", help="bytes, a tokenizer.json or a .model")
    p.add_argument(
        "--train-tokenizer",
        type=int,
        default=0,
        metavar="VOCAB",
        help="train a byte-level BPE of VOCAB ids on the train documents first (offline)",
    )
    p.add_argument("--val", nargs="+", metavar="FILE", help="validation sources")
    p.add_argument(
        "--val-fraction",
        type=float,
        help=f"share of documents held out when there is no --val (default {DEFAULT_VAL_FRACTION})",
    )
    p.add_argument("--val-seed", type=int, default=0, help="which documents are held out")
    p.add_argument("--field", default="text", help=".jsonl: the document's field")
    p.add_argument("--column", default="text", help="parquet / dataset: the document's column")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tokenizing processes")
    p.add_argument("--shard-tokens", type=int, default=Settings.shard_tokens, help="per shard file")
    p.add_argument(
        "--chunk-bytes",
        type=int,
        default=Settings.chunk_bytes,
        help="characters of text per unit of work (the unit a resumed run redoes at most)",
    )
    p.set_defaults(func=cmd_prepare)
