"""Class sets: named, ordered lists of classes, built in or loaded from a user's file.

Built-in sets (``imagenet1k``, ``cifar10``, ``stl10``) ship as package data. A custom set is a
``.txt`` file (one label per line) or a ``.json``/``.yaml`` list of ``{name, synset?, id?}``
(a top-level ``{"name": ..., "classes": [...]}`` object is accepted too). Labels without an
explicit synset are resolved through WordNet (:func:`gloss_gen.wordnet.resolve_label`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .errors import InputError
from .names import NAME_RULE, is_valid_name

log = logging.getLogger(__name__)

BUILTIN_CLASS_SETS = ("imagenet1k", "cifar10", "stl10")
CUSTOM_SUFFIXES = (".txt", ".json", ".yaml", ".yml")


class ClassSetError(InputError):
    """A class set that cannot be found or is malformed; the message says which and why."""

    code = "invalid_class_set"


@dataclass
class ClassSpec:
    id: str
    name: str
    synset: str | None = None
    ambiguous: bool = False
    alternatives: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        if not self.alternatives:
            data.pop("alternatives")
        if not self.ambiguous:
            data.pop("ambiguous")
        return data


@dataclass
class ClassSet:
    name: str
    classes: list[ClassSpec]
    description: str = ""

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def index_of(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.classes)}

    def content_hash(self) -> str:
        """Stable hash of what the classes are (ids, names, synsets, order)."""
        payload = json.dumps([[c.id, c.name, c.synset] for c in self.classes], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "classes": [c.to_dict() for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassSet:
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            classes=[ClassSpec(**c) for c in data["classes"]],
        )


def slugify(label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", label.strip().lower()).strip("-")
    return slug or "class"


def validate_class_set_name(name: str) -> str:
    """``name`` if it matches the one name pattern (:mod:`gloss_gen.names`), else ClassSetError."""
    if not is_valid_name(name):
        shown = repr(name[:40] + "...") if isinstance(name, str) and len(name) > 40 else repr(name)
        raise ClassSetError(f"invalid class set name {shown}: use {NAME_RULE}")
    return name


def builtin_class_set(name: str) -> ClassSet:
    if name not in BUILTIN_CLASS_SETS:
        raise ClassSetError(
            f"unknown class set {name!r}; built in: {', '.join(BUILTIN_CLASS_SETS)}, "
            "or give a .txt/.json/.yaml file"
        )
    text = resources.files("gloss_gen.data").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return ClassSet.from_dict(json.loads(text))


def build_class_set(name: str, entries: Sequence[str | dict], description: str = "") -> ClassSet:
    """A class set from labels or ``{name, synset?, id?}`` dicts, resolving synsets via WordNet.

    An explicit synset always wins; otherwise the most common noun sense is chosen and the other
    senses are recorded with ``ambiguous=True``. A label WordNet does not know keeps no synset
    (methods fall back to class-name prompts) and logs a warning.
    """
    from . import wordnet

    if not entries:
        raise ClassSetError(f"class set {name!r} has no classes")
    classes: list[ClassSpec] = []
    seen_ids: set[str] = set()
    for position, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise ClassSetError(f"class #{position} of {name!r} needs a non-empty 'name'")
        label = str(entry["name"]).strip()
        explicit = entry.get("synset")
        try:
            resolution = wordnet.resolve_label(label, explicit)
        except KeyError as exc:
            raise ClassSetError(f"class {label!r}: {exc.args[0]}") from None
        if resolution.synset is None:
            log.warning("WordNet does not know %r; it will use class-name prompts only", label)
        elif resolution.ambiguous:
            log.info(
                "%r is ambiguous in WordNet; chose %s (pin a 'synset' to choose another)",
                label,
                resolution.synset,
            )
        class_id = str(entry.get("id") or "").strip() or slugify(label)
        base, n = class_id, 2
        while class_id in seen_ids:
            class_id = f"{base}-{n}"
            n += 1
        seen_ids.add(class_id)
        classes.append(
            ClassSpec(
                id=class_id,
                name=label,
                synset=resolution.synset,
                ambiguous=resolution.ambiguous,
                alternatives=resolution.alternatives,
            )
        )
    return ClassSet(name=name, classes=classes, description=description)


def _read_entries(path: Path) -> tuple[list, str]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".txt":
        lines = [line.strip() for line in text.splitlines()]
        return [line for line in lines if line and not line.startswith("#")], ""
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise ClassSetError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    description = ""
    if isinstance(data, dict):
        description = str(data.get("description", ""))
        data = data.get("classes")
    if not isinstance(data, list):
        raise ClassSetError(f"{path}: expected a list of classes or {{'classes': [...]}}")
    return data, description


def load_class_set(ref: str | Path) -> ClassSet:
    """A class set by built-in name or file path (``.txt``, ``.json``, ``.yaml``)."""
    ref_str = str(ref)
    if ref_str in BUILTIN_CLASS_SETS:
        return builtin_class_set(ref_str)
    path = Path(ref_str)
    if path.suffix.lower() in CUSTOM_SUFFIXES:
        if not path.is_file():
            raise ClassSetError(f"class set file {path} does not exist")
        if not is_valid_name(path.stem):
            raise ClassSetError(f"{path.name}: the file name names the class set; use {NAME_RULE} before the suffix")
        entries, description = _read_entries(path)
        return build_class_set(path.stem, entries, description)
    return builtin_class_set(ref_str)  # raises the "unknown class set" error


def iter_builtin() -> Iterable[ClassSet]:
    for name in BUILTIN_CLASS_SETS:
        yield builtin_class_set(name)
