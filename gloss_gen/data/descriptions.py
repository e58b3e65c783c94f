"""Description sets: per class, a list of short texts plus provenance.

The on-disk form is JSON Lines, one line per class (see DESIGN.md)::

    {"class_id", "name", "synset", "method", "descriptions": [...], "provenance": {...}}

or the same keys with ``"error"`` and no descriptions for a class that failed. Lines also carry
``class_set`` and ``index`` (the class's position) so a file can be embedded in class-set order
whatever order the job finished in.

This module holds the offline methods (``classname``, ``wordnet``, ``import``; ``waffle`` is in
:mod:`gloss_gen.data.waffle_descriptors`); the LLM-backed
``vgloss`` method lives in :mod:`gloss_gen.describe.llm` and :mod:`gloss_gen.describe.describe_job`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gloss_gen.core.errors import InputError
from gloss_gen.data import wordnet
from gloss_gen.data.classsets import BUILTIN_CLASS_SETS, ClassSet, ClassSpec, builtin_class_set

log = logging.getLogger(__name__)

# The prompt style each method's descriptions are embedded with (see gloss_gen.core.prompts); a vgloss
# file records its own ("phrases" or "gloss", by its vgloss style).
DEFAULT_PROMPT_STYLE = {"classname": "templates", "wordnet": "gloss", "vgloss": "phrases", "waffle": "sentence"}
# The vgloss method's styles (gloss_gen.describe.llm) -> the prompt style their texts are embedded with.
VGLOSS_STYLES = {"phrases": "phrases", "gloss": "gloss"}


class DescriptionError(InputError):
    """Bad description input (unknown method, unreadable file); the message says why."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class DescriptionRecord:
    class_id: str
    name: str
    synset: str | None
    method: str
    descriptions: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    error: str | None = None
    class_set: str | None = None
    index: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def prompt_name(self) -> str:
        """The class name description prompts use: the source's own (an imported file's key, as
        its authors wrote it into their prompts), else the class set's name."""
        return str(self.provenance.get("prompt_name") or self.name)

    def to_json(self) -> dict:
        data = {
            "class_id": self.class_id,
            "name": self.name,
            "synset": self.synset,
            "method": self.method,
        }
        if self.error is None:
            data["descriptions"] = list(self.descriptions)
        data["provenance"] = dict(self.provenance)
        if self.error is not None:
            data["error"] = self.error
        if self.class_set is not None:
            data["class_set"] = self.class_set
        if self.index is not None:
            data["index"] = self.index
        return data

    @classmethod
    def from_json(cls, data: dict) -> DescriptionRecord:
        missing = [k for k in ("class_id", "name", "method") if k not in data]
        if missing:
            raise DescriptionError(f"description line lacks {', '.join(missing)}")
        descriptions = data.get("descriptions") or []
        if not isinstance(descriptions, list) or not all(isinstance(d, str) for d in descriptions):
            raise DescriptionError(f"class {data['class_id']}: 'descriptions' must be a list of strings")
        return cls(
            class_id=str(data["class_id"]),
            name=str(data["name"]),
            synset=data.get("synset"),
            method=str(data["method"]),
            descriptions=list(descriptions),
            provenance=dict(data.get("provenance") or {}),
            error=data.get("error"),
            class_set=data.get("class_set"),
            index=data.get("index"),
        )

    @classmethod
    def for_class(cls, spec: ClassSpec, class_set: ClassSet, index: int, method: str) -> DescriptionRecord:
        return cls(
            class_id=spec.id,
            name=spec.name,
            synset=spec.synset,
            method=method,
            class_set=class_set.name,
            index=index,
        )


@dataclass
class DescriptionSet:
    """Descriptions for every class of a class set, in class-set order."""

    class_set: ClassSet
    method: str
    records: list[DescriptionRecord]
    prompt_style: str

    def __post_init__(self):
        if len(self.records) != len(self.class_set):
            raise DescriptionError(
                f"{len(self.records)} description records for {len(self.class_set)} classes"
            )

    @property
    def id(self) -> str:
        """Content hash: classes, method, prompt style, every description text (and the name
        prompts use where it is not the class's own)."""
        payload = json.dumps(
            [self.class_set.content_hash(), self.method, self.prompt_style]
            + [
                [r.class_id, r.descriptions] + ([r.prompt_name] if r.prompt_name != r.name else [])
                for r in self.records
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def failed(self) -> list[DescriptionRecord]:
        return [r for r in self.records if not r.ok]

    def texts(self) -> list[list[str]]:
        return [r.descriptions if r.ok else [] for r in self.records]


# --------------------------------------------------------------------------- JSONL


def read_jsonl(path: Path) -> list[DescriptionRecord]:
    path = Path(path)
    if not path.is_file():
        raise DescriptionError(f"description file {path} does not exist")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                # A crash mid-write leaves at most a torn last line; resume redoes that class.
                log.warning("%s:%d: skipping a line that is not JSON", path, lineno)
                continue
            records.append(DescriptionRecord.from_json(data))
    return records


class JsonlWriter:
    """Appends one record per line and flushes + fsyncs it, so a crash loses at most the line
    being written (which :func:`read_jsonl` skips)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._fh = self.path.open("a", encoding="utf-8")

    def _repair_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")

    def write(self, record: DescriptionRecord) -> None:
        self._fh.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_jsonl(path: Path, records: Iterable[DescriptionRecord]) -> None:
    """Write the records to ``path`` atomically: through a temporary file of this writer's own
    beside it (two writers of the same path never share one), renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def latest_by_class(records: Iterable[DescriptionRecord]) -> dict[str, DescriptionRecord]:
    """The last line per class wins (a re-run appends a success after an earlier error)."""
    latest: dict[str, DescriptionRecord] = {}
    for record in records:
        latest[record.class_id] = record
    return latest


def assemble(class_set: ClassSet, records: Iterable[DescriptionRecord], method: str | None = None,
             prompt_style: str | None = None) -> DescriptionSet:
    """Order records by the class set; classes with no record become error records."""
    by_id = latest_by_class(records)
    ordered = []
    for index, spec in enumerate(class_set.classes):
        record = by_id.get(spec.id)
        if record is None:
            record = DescriptionRecord.for_class(spec, class_set, index, method or "unknown")
            record.error = "no description line for this class"
        ordered.append(record)
    methods = {r.method for r in ordered if r.ok}
    method = method or (methods.pop() if len(methods) == 1 else "mixed")
    styles = {_recorded_style(r) for r in ordered if r.ok} - {None}
    if prompt_style is None:
        prompt_style = styles.pop() if len(styles) == 1 else DEFAULT_PROMPT_STYLE.get(method, "dclip")
    return DescriptionSet(class_set=class_set, method=method, records=ordered, prompt_style=prompt_style)


def _recorded_style(record: DescriptionRecord) -> str | None:
    """The prompt style a line was written for. vgloss-v1 lines say "dclip", which then meant
    "a photo of a {class}, which ..." (now "dclip-photo"; "dclip" is DCLIP's own prompt)."""
    style = record.provenance.get("prompt_style")
    if style == "dclip" and record.method == "vgloss" and record.provenance.get("prompt_version") == "vgloss-v1":
        return "dclip-photo"
    return style


def class_set_from_records(records: list[DescriptionRecord]) -> ClassSet:
    """Rebuild the class set a description file was made for (built-in sets by name)."""

    names = {r.class_set for r in records if r.class_set}
    if len(names) == 1:
        name = names.pop()
        if name in BUILTIN_CLASS_SETS:
            builtin = builtin_class_set(name)
            if {r.class_id for r in records} <= set(builtin.ids):
                return builtin
    else:
        name = "custom"
    unique = latest_by_class(records).values()
    ordered = sorted(unique, key=lambda r: (r.index is None, r.index if r.index is not None else 0))
    return ClassSet(
        name=name or "custom",
        classes=[ClassSpec(id=r.class_id, name=r.name, synset=r.synset) for r in ordered],
    )


def load_description_set(path: Path, class_set: ClassSet | None = None) -> DescriptionSet:
    records = read_jsonl(path)
    if not records:
        raise DescriptionError(f"{path} holds no description lines")
    class_set = class_set or class_set_from_records(records)
    return assemble(class_set, records)


# --------------------------------------------------------------------------- offline methods


def provenance(method: str, **extra) -> dict:
    return {"method": method, "created_at": utc_now(), **extra}


def describe_classname(class_set: ClassSet) -> DescriptionSet:
    """No descriptions: the class name goes through the prompt templates (the CLIP baseline)."""
    records = []
    for index, spec in enumerate(class_set.classes):
        record = DescriptionRecord.for_class(spec, class_set, index, "classname")
        record.provenance = provenance("classname", prompt_style="templates")
        records.append(record)
    return DescriptionSet(class_set, "classname", records, "templates")


def describe_wordnet(class_set: ClassSet) -> DescriptionSet:
    """The synset's WordNet definition (the "WN gloss" baseline); no synset → class-name prompts."""

    records = []
    for index, spec in enumerate(class_set.classes):
        record = DescriptionRecord.for_class(spec, class_set, index, "wordnet")
        extra = {"prompt_style": "gloss", "wordnet": "3.0"}
        if spec.synset:
            record.descriptions = [wordnet.get_synset(spec.synset).definition()]
        else:
            extra["fallback"] = "templates (WordNet does not know this label)"
        record.provenance = provenance("wordnet", **extra)
        records.append(record)
    return DescriptionSet(class_set, "wordnet", records, "gloss")


def iter_records(description_set: DescriptionSet) -> Iterator[DescriptionRecord]:
    yield from description_set.records
