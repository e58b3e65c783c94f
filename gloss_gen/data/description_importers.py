"""Importing published description files: CuPL (``{classname: [sentences]}``) and DCLIP
(``{classname: [descriptors]}``) JSON, their keys matched to a class set's classes."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from gloss_gen.data import wordnet
from gloss_gen.data.classsets import ClassSet, ClassSpec
from gloss_gen.data.descriptions import DescriptionError, DescriptionRecord, DescriptionSet, provenance

log = logging.getLogger(__name__)


def _norm_key(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


@dataclass
class ImportReport:
    matched: int = 0
    collisions: dict[str, list[str]] = field(default_factory=dict)  # file key -> class ids
    unmatched_keys: list[str] = field(default_factory=list)
    classes_without: list[str] = field(default_factory=list)
    by_position: bool = False
    renamed: dict[str, str] = field(default_factory=dict)  # class id -> file key, where they differ

    def lines(self) -> list[str]:
        out = [f"imported descriptions for {self.matched} classes"]
        if self.by_position:
            out.append(
                f"the file lists the class set's {self.matched} classes in its order: mapped by position"
            )
        if self.renamed:
            shown = [f"{cid} as {key!r}" for cid, key in list(self.renamed.items())[:10]]
            out.append(
                f"{len(self.renamed)} classes are named in prompts as the file names them: "
                + ", ".join(shown) + (" ..." if len(self.renamed) > 10 else "")
            )
        for key, ids in self.collisions.items():
            out.append(
                f"name collision: file key {key!r} matches {len(ids)} classes ({', '.join(ids)}); "
                "none of them receives it"
            )
        if self.unmatched_keys:
            out.append(f"{len(self.unmatched_keys)} file keys match no class: "
                       + ", ".join(map(repr, self.unmatched_keys[:10]))
                       + (" ..." if len(self.unmatched_keys) > 10 else ""))
        if self.classes_without:
            out.append(f"{len(self.classes_without)} classes have no imported descriptions "
                       "and fall back to class-name prompts: " + ", ".join(self.classes_without[:10])
                       + (" ..." if len(self.classes_without) > 10 else ""))
        return out


def detect_import_format(data: dict, path: Path | None = None) -> str:
    """``cupl`` for full sentences, ``dclip`` for descriptor phrases."""
    stem = path.name.lower() if path else ""
    if "cupl" in stem:
        return "cupl"
    if "dclip" in stem or "descriptor" in stem:
        return "dclip"
    texts = [t for v in list(data.values())[:50] for t in v[:5] if isinstance(t, str)]
    if not texts:
        return "dclip"
    sentence_like = sum(1 for t in texts if t[:1].isupper() and t.rstrip().endswith("."))
    return "cupl" if sentence_like > len(texts) / 2 else "dclip"


def read_import_file(path: Path) -> dict[str, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise DescriptionError(f"import file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DescriptionError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        raise DescriptionError(f"{path}: expected {{class name: [text, ...]}} (CuPL or DCLIP JSON)")
    return data


def _key_names_class(key: str, spec: ClassSpec, lemma_index) -> bool:
    """Whether ``key`` could name ``spec``: its id, name, normalised name or a synset lemma."""
    if key == spec.id or key == spec.name or _norm_key(key) == _norm_key(spec.name):
        return True
    return spec.id in lemma_index().get(_norm_key(key), [])


def _positional_assignment(class_set: ClassSet, keys: list[str]) -> dict[str, str] | None:
    """Class id -> key when the file lists exactly the class set's classes in its order (every
    key could name the class at its position), as the authors' code reads its own file."""
    if len(keys) != len(class_set):
        return None
    index: dict[str, list[str]] | None = None

    def lemma_index() -> dict[str, list[str]]:
        nonlocal index
        if index is None:
            index = _lemma_index(class_set)
        return index

    if all(_key_names_class(key, spec, lemma_index) for key, spec in zip(keys, class_set.classes)):
        return {spec.id: key for key, spec in zip(keys, class_set.classes)}
    return None


def match_import_keys(class_set: ClassSet, data: dict[str, list[str]]) -> tuple[dict[str, str], ImportReport]:
    """Map file keys to class ids.

    A file that lists exactly the class set's classes in its order (same length, every key a
    possible name of the class at its position) is mapped by position, as DCLIP's and CuPL's code
    read their own files; repeated names (DCLIP's two "missile" classes) then stay apart.
    Otherwise keys are matched by name, first hit wins per key: class id, exact name, normalised
    name, then a lemma of the class's synset; a key that names several classes goes to none.
    """
    report = ImportReport()
    positional = _positional_assignment(class_set, list(data))
    if positional is not None:
        report.by_position = True
        report.matched = len(positional)
        report.renamed = {spec.id: key for key, spec in zip(data, class_set.classes) if key != spec.name}
        return positional, report
    by_id = {c.id: c for c in class_set.classes}
    by_name: dict[str, list[str]] = {}
    by_norm: dict[str, list[str]] = {}
    for c in class_set.classes:
        by_name.setdefault(c.name, []).append(c.id)
        by_norm.setdefault(_norm_key(c.name), []).append(c.id)
    by_lemma: dict[str, list[str]] | None = None

    assignment: dict[str, str] = {}  # class id -> file key
    for key in data:
        candidates: list[str] = []
        if key in by_id:
            candidates = [key]
        elif key in by_name:
            candidates = by_name[key]
        elif _norm_key(key) in by_norm:
            candidates = by_norm[_norm_key(key)]
        else:
            if by_lemma is None:
                by_lemma = _lemma_index(class_set)
            candidates = by_lemma.get(_norm_key(key), [])
        if len(candidates) == 1 and candidates[0] not in assignment:
            assignment[candidates[0]] = key
        elif len(candidates) > 1:
            report.collisions[key] = candidates
        elif candidates:
            report.collisions[key] = [candidates[0], f"(already given key {assignment[candidates[0]]!r})"]
        else:
            report.unmatched_keys.append(key)
    report.matched = len(assignment)
    report.classes_without = [c.id for c in class_set.classes if c.id not in assignment]
    names = {c.id: c.name for c in class_set.classes}
    report.renamed = {cid: key for cid, key in assignment.items() if key != names[cid]}
    return assignment, report


def _lemma_index(class_set: ClassSet) -> dict[str, list[str]]:

    index: dict[str, list[str]] = {}
    for c in class_set.classes:
        if not c.synset:
            continue
        try:
            synset = wordnet.get_synset(c.synset)
        except (KeyError, wordnet.WordNetMissingError):
            continue
        for lemma in synset.lemma_names():
            index.setdefault(_norm_key(lemma), []).append(c.id)
    return index


def describe_import(
    class_set: ClassSet, path: Path, fmt: str = "auto", dedupe: bool = False
) -> tuple[DescriptionSet, ImportReport]:
    """Import a CuPL (sentences) or DCLIP (descriptor phrases) JSON file onto a class set, as its
    authors' code uses it: every text of a class, repeats included (CuPL's and CLIP_benchmark's
    averages count a repeated sentence twice), embedded in the authors' prompt form (``sentence``
    for CuPL, ``dclip`` for DCLIP) with the file's own class name. Texts are stripped of
    surrounding whitespace, which CLIP's tokenizer drops anyway. ``dedupe=True`` keeps only the
    first copy of each text (not the published construction)."""
    path = Path(path)
    data = read_import_file(path)
    if fmt == "auto":
        fmt = detect_import_format(data, path)
    if fmt not in ("cupl", "dclip"):
        raise DescriptionError(f"unknown import format {fmt!r}; use cupl, dclip or auto")
    style = "sentence" if fmt == "cupl" else "dclip"
    assignment, report = match_import_keys(class_set, data)
    records = []
    for index, spec in enumerate(class_set.classes):
        record = DescriptionRecord.for_class(spec, class_set, index, "import")
        extra = {"prompt_style": style, "import_format": fmt, "source": path.name}
        key = assignment.get(spec.id)
        if key is not None:
            texts = [t.strip() for t in data[key]]
            if dedupe:
                kept = list(dict.fromkeys(t for t in texts if t))
                extra["repeats_dropped"] = len(texts) - len(kept)
                texts = kept
            record.descriptions = texts
            extra["source_key"] = key
            if key != spec.name:
                extra["prompt_name"] = key
        else:
            collided = [k for k, ids in report.collisions.items() if spec.id in ids]
            extra["fallback"] = "templates (" + (
                f"name collision on {collided[0]!r}" if collided else "no matching key in the file"
            ) + ")"
        record.provenance = provenance("import", **extra)
        records.append(record)
    return DescriptionSet(class_set, "import", records, style), report
