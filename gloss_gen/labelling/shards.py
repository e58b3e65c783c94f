"""The output folder of ``vgloss label``: shard plan, manifest, Parquet schema, atomic part files.

``DIR/_manifest.json`` is written once, by the first run: the sources, the settings that decide
the labels (class set, classifier key, model, top-k, embeddings, adapter, shard size), and the
shard list. Shard ``i`` is items ``i*N .. i*N+N-1`` of the source listing (:mod:`.sources`), and
is done when ``DIR/part-{i:05d}.parquet`` exists: parts are written under a hidden temporary
name, flushed to disk and renamed, so a part either exists whole or not at all. A re-run with the
same settings labels only the shards without a part; one with other settings, or over a listing
that has changed since, is refused (the labels in DIR would otherwise mix two runs).

The names start with ``_`` and ``.`` so that ``pyarrow.dataset`` / pandas read DIR as one table
(they skip such files); polars, DuckDB and ``datasets`` read ``DIR/part-*.parquet``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gloss_gen.core.errors import InputError
from gloss_gen.data.descriptions import utc_now
from gloss_gen.labelling.sources import SourceItem

MANIFEST_NAME = "_manifest.json"
LOCK_NAME = ".lock"
MANIFEST_FORMAT = 1
PART_PATTERN = "part-{:05d}.parquet"
TEMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<pid>-<random>.tmp"
# Settings a second run into the same DIR must share with the first (the rest is recorded only).
DECIDING_SETTINGS = ("class_set", "classifier_key", "model_id", "adapter_key", "top_k", "embeddings", "shard_size",
                     "open_set")


class LabelOutputError(InputError):
    """An output folder this run cannot write into; the message says why, in one line."""

    code = "label_output_conflict"


@dataclass(frozen=True)
class Shard:
    id: int
    items: tuple[SourceItem, ...]

    @property
    def file_name(self) -> str:
        return PART_PATTERN.format(self.id)


def plan_shards(items: Sequence[SourceItem], shard_size: int) -> list[Shard]:
    """Contiguous runs of ``shard_size`` items, numbered from 0: the same listing, the same shards."""
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, not {shard_size}")
    return [Shard(number, tuple(items[start : start + shard_size]))
            for number, start in enumerate(range(0, len(items), shard_size))]


def listing_digest(items: Sequence[SourceItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.archive, item.path]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def label_schema(embedding_dtype: str | None, open_set: bool = False):
    """The columns of every part (one schema, so all parts read as one table); with open-set
    scoring, ``ood_score`` (higher = more in-set) and ``unknown``."""
    import pyarrow as pa

    prediction = pa.struct([("class_id", pa.string()), ("label", pa.string()), ("score", pa.float64())])
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("archive", pa.string()),  # the tar shard a member came from; null for files
        pa.field("class_id", pa.string()),
        pa.field("label", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("similarity", pa.float64()),
        pa.field("top_k", pa.list_(prediction)),
        pa.field("error", pa.struct([("code", pa.string()), ("message", pa.string())])),
    ]
    if open_set:
        fields += [pa.field("ood_score", pa.float64()), pa.field("unknown", pa.bool_())]
    if embedding_dtype is not None:
        value = pa.float16() if embedding_dtype == "float16" else pa.float32()
        fields.append(pa.field("embedding", pa.list_(value)))
    return pa.schema(fields)


def build_manifest(sources: Sequence[str], items: Sequence[SourceItem], shards: Sequence[Shard],
                   settings: dict, recorded: dict) -> dict:
    """``settings``: the :data:`DECIDING_SETTINGS`; ``recorded``: what else is worth knowing
    (model name, inference path, class count, method) but may differ between runs."""
    missing = [key for key in DECIDING_SETTINGS if key not in settings]
    if missing:
        raise ValueError(f"manifest settings lack {missing}")
    return {
        "format": MANIFEST_FORMAT,
        "created_at": utc_now(),
        "sources": list(sources),
        "settings": {key: settings[key] for key in DECIDING_SETTINGS},
        "recorded": recorded,
        "items": len(items),
        "listing_sha256": listing_digest(items),
        "shards": [
            {"id": shard.id, "file": shard.file_name, "items": len(shard.items),
             "first": shard.items[0].path, "last": shard.items[-1].path}
            for shard in shards
        ],
    }


def _differences(old: dict, new: dict) -> list[str]:
    changed = []
    for key in DECIDING_SETTINGS:
        before, after = old.get("settings", {}).get(key), new["settings"][key]
        if before != after:
            changed.append(f"{key} {'none' if before is None else before} -> {'none' if after is None else after}")
    if old.get("sources") != new["sources"]:
        changed.append(f"sources {' '.join(old.get('sources') or [])} -> {' '.join(new['sources'])}")
    elif old.get("listing_sha256") != new["listing_sha256"]:
        changed.append(f"the sources now list {new['items']} images, not the {old.get('items')} of the first run")
    return changed


def open_output(out: Path, manifest: dict) -> tuple[dict, set[int]]:
    """Create ``out`` with ``manifest``, or check it against the one there: (the manifest in
    force, ids of shards already written). Temporary files of killed runs are removed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabelOutputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabelOutputError(f"{path}: unreadable ({exc}); remove it or use another --out") from None
        changed = _differences(existing, manifest)
        if changed:
            raise LabelOutputError(
                f"{out} holds labels made with other settings ({'; '.join(changed)}): "
                "use another --out, or delete it to start over"
            )
        manifest = existing
    else:
        strays = sorted(p.name for p in out.glob("part-*.parquet"))
        if strays:
            raise LabelOutputError(f"{out} holds {len(strays)} part files but no {MANIFEST_NAME}: use an empty --out")
        write_atomically(path, json.dumps(manifest, indent=1).encode())
    for stale in out.glob(".*" + TEMP_SUFFIX):
        stale.unlink(missing_ok=True)
    done = {shard["id"] for shard in manifest["shards"] if (out / shard["file"]).is_file()}
    return manifest, done


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for a run: a second run into the same folder at the same time is
    refused (it would remove the first one's temporary files)."""
    import fcntl

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabelOutputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabelOutputError(f"{out}: another vgloss label run is writing into it") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomically(path: Path, data: bytes | None = None, table=None) -> None:
    """Write bytes, or a pyarrow table as Parquet, to ``path`` all at once: a hidden temporary
    name in the same folder, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as handle:
            if table is not None:
                import pyarrow.parquet as pq

                pq.write_table(table, handle, compression="zstd")
            else:
                handle.write(data or b"")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_part(out: Path, shard: Shard, table) -> Path:
    path = Path(out) / shard.file_name
    write_atomically(path, table=table)
    return path
