"""Data formats: how a dataset file holds samples, checked at push time, decoded for training.

`okai data push` inspects every file (`inspect`): it checks that the file is
what its format says, counts its samples, and notes where samples start, so
the manifest can record `format` and `samples` per file (every rank then knows
the epoch length without fetching anything) and, per shard, the first sample
that starts in it. A file that fails is a DocumentError naming it, before
anything is stored. Training decodes the verified bytes of a file (`decode`)
into samples; safetensors files are decoded by the loader (torch), the rest here.

| format | file | a sample |
|---|---|---|
| safetensors | tensors `x` (samples along dim 0) and `y` (integer labels) | a row of x and its label |
| jsonl | one JSON object per line; blank lines are skipped | the object |
| text | UTF-8; blank lines are skipped | `{"text": line}` (without the line break) |
| parquet | a Parquet table | `{column: value}` of a row |
| webdataset | a tar whose members are grouped by key (path up to the first dot of the name) | `{"__key__": key, ext: bytes, ...}` |
| file | any other file: the whole file | `{"path", "label" (its folder's name), "data"}` |

Torch-free, and pyarrow is imported only for Parquet files.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, get_args

from okai.errors import DocumentError, UsageError
from okai.manifest import DataFormat

FORMATS: tuple[DataFormat, ...] = get_args(DataFormat)
SUFFIXES: dict[str, DataFormat] = {
    ".safetensors": "safetensors",
    ".jsonl": "jsonl",
    ".txt": "text",
    ".parquet": "parquet",
    ".tar": "webdataset",
}
SPANNING: frozenset[DataFormat] = frozenset({"jsonl", "text", "webdataset"})
"""Formats whose samples can cross a byte-shard boundary: shards record `first_sample`."""
MAX_SAFETENSORS_HEADER = 100 << 20
"""safetensors' own limit on the JSON header."""

Sample = dict[str, Any]


def detect(path: str) -> DataFormat:
    """The format a file's name implies; anything unrecognised is a plain `file`."""
    return SUFFIXES.get(PurePosixPath(path).suffix.lower(), "file")


def parse_format(text: str) -> DataFormat | None:
    """A `--format` value: one of FORMATS, or `auto` (None: detect per file)."""
    if text == "auto":
        return None
    for known in FORMATS:
        if text == known:
            return known
    raise UsageError(f"unknown data format {text!r}; known: auto, {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Inspection:
    """What a push records about one file."""

    format: DataFormat
    samples: int
    first_samples: tuple[int, ...]
    """For each requested boundary offset: how many samples start before it."""


def inspect(
    fmt: DataFormat, stream: BinaryIO, where: str, *, boundaries: Sequence[int] = ()
) -> Inspection:
    """Check that `stream` holds a valid `fmt` file; count its samples and where they start."""
    if fmt in SPANNING:
        starts = list(_starts(fmt, stream, where))
        firsts = tuple(_count_below(starts, offset) for offset in boundaries)
        return Inspection(fmt, len(starts), firsts)
    if fmt == "safetensors":
        return Inspection(fmt, safetensors_samples(stream, where), ())
    if fmt == "parquet":
        return Inspection(fmt, _parquet_rows(stream, where), ())
    return Inspection(fmt, 1, ())


def _count_below(starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_left(starts, offset)


def _starts(fmt: DataFormat, stream: BinaryIO, where: str) -> Iterator[int]:
    if fmt == "webdataset":
        for start, _ in _tar_samples(stream, where, keep_data=False):
            yield start
        return
    offset = 0
    for number, line in enumerate(stream, start=1):
        if line.strip():
            _line_sample(fmt, line, where, number)
            yield offset
        offset += len(line)


def _line_sample(fmt: DataFormat, line: bytes, where: str, number: int) -> Sample:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(where, None, f"line {number} is not UTF-8 text: {exc}") from exc
    if fmt == "text":
        return {"text": text.rstrip("\r\n")}
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(where, None, f"line {number} is not JSON: {exc.msg}") from exc
    if not isinstance(record, dict):
        raise DocumentError(
            where, None, f"line {number} is a JSON {type(record).__name__}, not an object"
        )
    return record


def safetensors_samples(stream: BinaryIO, where: str) -> int:
    """Samples of a safetensors data file, read from its header (tensors are not loaded)."""
    prefix = stream.read(8)
    if len(prefix) < 8:
        raise DocumentError(where, None, "too short to be a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_SAFETENSORS_HEADER:
        raise DocumentError(where, None, f"safetensors header of {length} bytes is too large")
    raw = stream.read(length)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DocumentError(where, None, f"not a safetensors file: {exc}") from exc
    if not isinstance(header, dict) or len(raw) < length:
        raise DocumentError(where, None, "not a safetensors file: header is not an object")
    shapes = {}
    for name in ("x", "y"):
        entry = header.get(name)
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not shape:
            raise DocumentError(where, name, "missing: a data file holds tensors x and y")
        shapes[name] = shape
    if shapes["x"][0] != shapes["y"][0] or len(shapes["y"]) != 1:
        raise DocumentError(
            where, "y", f"shape {shapes['y']} is not one label per sample of x {shapes['x']}"
        )
    return int(shapes["x"][0])


def _parquet_rows(stream: BinaryIO, where: str) -> int:
    """Rows of a Parquet file. Every row group is read and page checksums, where the writer
    wrote them, are checked: damage that still decodes is caught only by a checksum."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(stream, page_checksum_verification=True)
        rows = 0
        for group in range(table.num_row_groups):
            rows += table.read_row_group(group).num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DocumentError(where, None, f"not a readable Parquet file: {exc}") from exc
    if rows != table.metadata.num_rows:
        raise DocumentError(
            where, None, f"row groups hold {rows} rows, the footer says {table.metadata.num_rows}"
        )
    return rows


def _tar_samples(stream: BinaryIO, where: str, *, keep_data: bool) -> Iterator[tuple[int, Sample]]:
    """(offset of its first member, sample) for each sample of a WebDataset tar shard."""
    current: Sample | None = None
    start = 0
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r:") as archive:
            for member in archive:
                if member.isdir():
                    continue
                name = member.name
                if not member.isfile():
                    raise DocumentError(where, None, f"member {name!r} is not a regular file")
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts or "." not in path.name:
                    raise DocumentError(
                        where, None, f"member {name!r} is not <key>.<extension> inside the tar"
                    )
                stem, _, extension = path.name.partition(".")
                key = str(path.parent / stem) if path.parent != PurePosixPath(".") else stem
                extracted = archive.extractfile(member)
                try:
                    data = extracted.read() if extracted is not None else b""
                except (tarfile.TarError, EOFError) as exc:
                    raise DocumentError(where, None, f"member {name!r} is truncated") from exc
                if len(data) != member.size:
                    raise DocumentError(where, None, f"member {name!r} is truncated")
                if current is None or current["__key__"] != key:
                    if current is not None:
                        yield start, current
                    if key in seen:
                        raise DocumentError(
                            where, None, f"sample {key!r} is split: its members are not adjacent"
                        )
                    seen.add(key)
                    current, start = {"__key__": key}, member.offset
                if extension in current:
                    raise DocumentError(where, None, f"sample {key!r} has two {extension!r}")
                current[extension] = data if keep_data else b""
            end = archive.offset
    except (tarfile.TarError, EOFError) as exc:
        raise DocumentError(where, None, f"not a complete tar file: {exc}") from exc
    problem = tar_end_problem(stream, end)
    if problem:
        raise DocumentError(where, None, problem)
    if current is not None:
        yield start, current


def tar_end_problem(stream: BinaryIO, end: int) -> str | None:
    """Why a tar whose last member ends at `end` is not whole, or None.

    tarfile reads a header cut short after the first member as the end of the
    archive; a whole tar ends with two zero blocks (and zero padding) instead.
    """
    stream.seek(end)
    rest = stream.read()
    if len(rest) < 1024 or rest.count(0) != len(rest):
        return "not a complete tar file: it is cut short, or has bytes after its last member"
    return None


def decode(fmt: DataFormat, data: bytes, path: str) -> list[Sample]:
    """The samples of a (verified) file in order; safetensors is the loader's."""
    where = f"data file {path}"
    if fmt == "jsonl" or fmt == "text":
        return [
            _line_sample(fmt, line, where, number)
            for number, line in enumerate(io.BytesIO(data), start=1)
            if line.strip()
        ]
    if fmt == "webdataset":
        return [sample for _, sample in _tar_samples(io.BytesIO(data), where, keep_data=True)]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows: list[Sample] = pq.read_table(
                io.BytesIO(data), page_checksum_verification=True
            ).to_pylist()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DocumentError(where, None, f"not a readable Parquet file: {exc}") from exc
        return rows
    if fmt == "file":
        return [{"path": path, "label": label_of(path), "data": data}]
    raise ValueError(f"{fmt} files are decoded by the loader")


def label_of(path: str) -> str:
    """The label of a plain file: the name of the folder it is in (`cats/001.jpg` -> `cats`)."""
    return PurePosixPath(path).parent.name
