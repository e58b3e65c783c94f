"""The silver dataset: descriptions flattened to one row per (class, description)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from gloss_gen.data import wordnet
from gloss_gen.data.descriptions import DescriptionError, latest_by_class, read_jsonl

SILVER_FEATURES = {
    "class_id": "string",
    "label": "string",
    "synset": "string",
    "definition": "string",
    "text": "string",
    "method": "string",
    "llm_model": "string",
    "prompt_version": "string",
    "created_at": "string",
}
# The dataset card's types: ``datasets``' JSON reader parses ISO 8601 strings into timestamps anyway
# (and a ``string`` declaration would then print them without their "T" and offset), so the card
# declares what the column is: an instant in UTC.
HF_FEATURES = {**SILVER_FEATURES, "created_at": "timestamp[us, tz=UTC]"}


def _require_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DescriptionError(f"description file {path} does not exist")
    return path


def silver_rows(path: Path, include_failed: bool = False) -> Iterator[dict]:

    records = list(latest_by_class(read_jsonl(path)).values())
    if not records:
        raise DescriptionError(f"{path} holds no description lines")
    records.sort(key=lambda r: (r.index is None, r.index or 0))
    for record in records:
        definition = None
        if record.synset:
            try:
                definition = wordnet.get_synset(record.synset).definition()
            except KeyError:
                definition = None
        base = {
            "class_id": record.class_id,
            "label": record.name,
            "synset": record.synset,
            "definition": definition,
            "method": record.method,
            "llm_model": record.provenance.get("llm_model"),
            "prompt_version": record.provenance.get("prompt_version"),
            "created_at": record.provenance.get("created_at"),
        }
        texts = record.descriptions if record.ok else []
        if not texts and include_failed:
            yield {**base, "text": None}
        for text in texts:
            yield {**base, "text": text}


def _write_rows(rows: Iterator[dict], out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps({k: row[k] for k in SILVER_FEATURES}, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def export_jsonl(path: Path, out: Path, include_failed: bool = False) -> int:
    return _write_rows(silver_rows(_require_file(path), include_failed), Path(out))


def export_hf(path: Path, out_dir: Path, include_failed: bool = False) -> int:
    """A folder ``datasets.load_dataset(out_dir)`` reads: data/train.jsonl and a dataset card."""
    out_dir = Path(out_dir)
    rows = list(silver_rows(_require_file(path), include_failed))  # every input error before out_dir exists
    data_file = out_dir / "data" / "train.jsonl"
    count = _write_rows(iter(rows), data_file)
    features = "\n".join(
        f"  - name: {name}\n    dtype: {dtype}" for name, dtype in HF_FEATURES.items()
    )
    card = f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train.jsonl
dataset_info:
  features:
{features}
  splits:
  - name: train
    num_bytes: {data_file.stat().st_size}
    num_examples: {count}
task_categories:
- zero-shot-image-classification
- text-generation
---

# Silver class descriptions from vgloss

Visual class descriptions exported by `vgloss export` from `{Path(path).name}`: one row per
(class, description), with the class's WordNet 3.0 synset and definition and the provenance of the
text (method, LLM model, prompt version, time). Machine-written ("silver") data: review before
using it as ground truth.
"""
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    return count
