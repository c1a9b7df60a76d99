"""Corpus files read as streams of documents, for `scaling prepare`.

Formats, by name:
- `.txt` (`.txt.gz`, `.txt.zst`): documents separated by a blank line (a file without one is one
  document), as the synthetic corpus and the byte-level stream join them;
- `.jsonl` (`.jsonl.gz`, `.jsonl.zst`): one JSON object a line, the document in a field (`text`);
- `.parquet`: the document in a string column (`text`), read one row group batch at a time;
- a directory written by Hugging Face `datasets`' `save_to_disk` (`state.json` naming its Arrow
  stream files): the document in a string column, read one record batch at a time.

Nothing holds more than one document (one record batch) of a file in memory. Empty documents and
null cells are skipped. Bad input is a one-line `ConfigError` naming the file and line: bytes that
are not UTF-8, a line that is not JSON, a missing field or column, an unknown format.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scaling.typed import ConfigError

FORMATS = ".txt, .jsonl (either also .gz or .zst), .parquet, or a save_to_disk dataset directory"
ARROW_BATCH_ROWS = 1024  # parquet rows per batch read


@dataclass(frozen=True)
class Source:
    path: str
    kind: str  # "text" | "jsonl" | "parquet" | "arrow"


def source(path: str) -> Source:
    """The source at `path`, its kind told by its name; a missing or unknown one is refused."""
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_dict.json").is_file():
            raise ConfigError(path, "is a DatasetDict", f"give one split's folder, e.g. {p}/train")
        if not (p / "state.json").is_file():
            raise ConfigError(path, "a directory without state.json", f"give {FORMATS}")
        return Source(path, "arrow")
    if not p.is_file():
        raise ConfigError(path, "no such file", "give an existing corpus file")
    name = p.name.removesuffix(".gz").removesuffix(".zst")
    for suffix, kind in ((".txt", "text"), (".jsonl", "jsonl")):
        if name.endswith(suffix):
            return Source(path, kind)
    if p.name.endswith(".parquet"):
        return Source(path, "parquet")
    raise ConfigError(path, f"unknown format {''.join(p.suffixes) or p.name!r}", f"give {FORMATS}")


def data_files(src: Source) -> list[Path]:
    """The files whose bytes make up the source (a dataset directory: its Arrow files)."""
    if src.kind != "arrow":
        return [Path(src.path)]
    state = json.loads((Path(src.path) / "state.json").read_text())
    return [Path(src.path) / f["filename"] for f in state["_data_files"]]


def fingerprint(src: Source) -> dict:
    """{path, size, sha256} of the source's bytes, read in blocks."""
    digest, size = hashlib.sha256(), 0
    for path in data_files(src):
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
                size += len(block)
    return {"path": src.path, "size": size, "sha256": digest.hexdigest()}


def documents(src: Source, field: str = "text", column: str = "text") -> Iterator[str]:
    """The source's non-empty documents, in file order."""
    if src.kind == "text":
        yield from _text_documents(src.path)
    elif src.kind == "jsonl":
        yield from _jsonl_documents(src.path, field)
    else:
        yield from _arrow_documents(src, column)


def _open(path: str):
    """A binary stream of the file's bytes, decompressed by its suffix."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 (closed with the reader)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")  # noqa: SIM115


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) with its newline; bytes that are not UTF-8 name the line."""
    try:
        with _open(path) as f:
            for number, raw in enumerate(f, 1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ConfigError(
                        f"{path}:{number}",
                        f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                        "re-encode the file as UTF-8",
                    ) from None
    except (OSError, EOFError) as e:  # a damaged .gz; zstandard's errors derive from these too
        raise ConfigError(path, f"unreadable ({e})", "check or recompress the file") from None


def _text_documents(path: str) -> Iterator[str]:
    lines: list[str] = []
    for _, line in _lines(path):
        if line.strip("\r\n"):
            lines.append(line)
        elif lines:
            yield "".join(lines).rstrip("\r\n")
            lines = []
    if lines:
        yield "".join(lines).rstrip("\r\n")


def _jsonl_documents(path: str, field: str) -> Iterator[str]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{number}", f"not JSON ({e.msg})", "fix the line") from None
        if not isinstance(row, dict) or field not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ConfigError(
                f"{path}:{number}", f"no field {field!r} (has {keys})", "name the field: --field"
            )
        value = row[field]
        if not isinstance(value, str | None):
            raise ConfigError(
                f"{path}:{number}",
                f"field {field!r} holds {type(value).__name__}, not text",
                "name a text field: --field",
            )
        if value:
            yield value


def _arrow_documents(src: Source, column: str) -> Iterator[str]:
    import pyarrow as pa

    for path in data_files(src):
        try:
            batches, schema = _batches(src.kind, path, column)
            if column not in schema.names:
                raise ConfigError(
                    str(path), f"no column {column!r} (has {schema.names})", "name it: --column"
                )
            kind = schema.field(column).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise ConfigError(
                    str(path), f"column {column!r} holds {kind}, not text", "name it: --column"
                )
            for batch in batches:
                yield from (t for t in batch.column(column).to_pylist() if t)
        except (pa.ArrowInvalid, OSError) as e:
            reason = str(e).strip().partition("\n")[0] or type(e).__name__
            raise ConfigError(str(path), f"unreadable ({reason})", f"give {FORMATS}") from None


def _batches(kind: str, path: Path, column: str):
    """(record batches, schema) of a parquet file or an Arrow stream file, read lazily."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "parquet":
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        wanted = [column] if column in schema.names else []
        return parquet.iter_batches(batch_size=ARROW_BATCH_ROWS, columns=wanted), schema
    reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    return reader, reader.schema
