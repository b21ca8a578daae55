"""Small datasets of every format okai reads, written as a user would have them on disk.

Not a test module: test_formats.py and test_train_formats.py build their data here.
Each dataset has training files and a `test/` part, and labels a model can learn
(class 1 samples are made of high bytes, class 0 of low ones).
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def payload(rng: random.Random, label: int, size: int = 64) -> bytes:
    low = 128 * label
    return bytes(rng.randrange(low, low + 128) for _ in range(size))


def jsonl_dataset(root: Path, files: int = 2, records: int = 40) -> Path:
    rng = random.Random(1)
    for index in range(files):
        write(root / "train" / f"part-{index}.jsonl", _jsonl(rng, records))
    write(root / "test" / "part.jsonl", _jsonl(rng, 10))
    return root


def _jsonl(rng: random.Random, count: int) -> bytes:
    lines = []
    for index in range(count):
        text = "".join(rng.choice("abc def\tghi()") for _ in range(rng.randrange(5, 40)))
        lines.append(json.dumps({"text": f"{index}: {text} é"}, ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode("utf-8")  # a blank line is no sample


def text_dataset(root: Path, files: int = 2, lines: int = 40) -> Path:
    rng = random.Random(2)
    for index in range(files + 1):
        text = "\n".join(
            "".join(rng.choice("xyz = (1 + 2)\n#"[:-2]) for _ in range(rng.randrange(3, 30)))
            for _ in range(lines)
        )
        name = f"train/lines-{index}.txt" if index < files else "test/lines.txt"
        write(root / name, text.encode())
    return root


def parquet_bytes(rng: random.Random, rows: int, row_group_size: int = 16) -> bytes:
    labels = [rng.randrange(2) for _ in range(rows)]
    features = [[b / 255 for b in payload(rng, label, 256)] for label in labels]
    table = pa.table({"features": features, "label": labels})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_size, write_page_checksum=True)
    return out.getvalue()


def parquet_dataset(root: Path, files: int = 2, rows: int = 40) -> Path:
    rng = random.Random(3)
    for index in range(files):
        write(root / "train" / f"rows-{index}.parquet", parquet_bytes(rng, rows))
    write(root / "test" / "rows.parquet", parquet_bytes(rng, 12))
    return root


def tar_bytes(rng: random.Random, samples: int, prefix: str = "s") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for index in range(samples):
            label = rng.randrange(2)
            for extension, data in (("bin", payload(rng, label)), ("cls", str(label).encode())):
                member = tarfile.TarInfo(f"{prefix}{index:05d}.{extension}")
                member.size = len(data)
                member.mtime = 0
                archive.addfile(member, io.BytesIO(data))
    return out.getvalue()


def webdataset_dataset(root: Path, files: int = 2, samples: int = 40) -> Path:
    rng = random.Random(4)
    for index in range(files):
        write(root / "train" / f"shard-{index:03d}.tar", tar_bytes(rng, samples))
    write(root / "test" / "shard.tar", tar_bytes(rng, 10))
    return root


def folder_dataset(root: Path, per_class: int = 12) -> Path:
    rng = random.Random(5)
    for label, name in enumerate(("cats", "dogs")):
        for index in range(per_class):
            write(root / "train" / name / f"{index:03d}.img", payload(rng, label))
        for index in range(3):
            write(root / "test" / name / f"{index:03d}.img", payload(rng, label))
    return root


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


DATASETS = {
    "jsonl": jsonl_dataset,
    "text": text_dataset,
    "parquet": parquet_dataset,
    "webdataset": webdataset_dataset,
    "file": folder_dataset,
}
