"""Pairwise differential descriptions (FuDD, Esfandiarpoor & Bach, ICLR 2024): for a pair of classes
that can meet in one image's top-k, texts written to tell exactly those two apart.

One JSON line per pair, in class-set order (``index[0] < index[1]``)::

    {"pair": ["n02085620", "n02086240"], "names": ["chihuahua", "shih-tzu"],
     "index": [151, 155], "class_set": "imagenet1k", "method": "fudd",
     "attributes": ["ear shape", ...],
     "descriptions": [["a photo of a chihuahua, with large, erect ears.", ...],
                      ["a photo of a shih-tzu, with long, drooping ears.", ...]],
     "provenance": {...}}

``descriptions[0][n]`` and ``descriptions[1][n]`` contrast the same attribute, ``attributes[n]``.
A pair that failed carries ``error`` instead of ``descriptions``; a re-run of the describe job
retries it (:class:`~gloss_gen.data.descriptions.JsonlWriter` writes the lines). The texts are whole prompts, embedded as written (FuDD's ``prompt_pair`` sentences).

:class:`PairDescriptionSet` is what the re-rank needs: per pair, each side's texts. A pair with no
line falls back, at re-rank time, to the class-name prompt ``a photo of a {name}.``
(:data:`FALLBACK_TEMPLATE`, FuDD's ``default_template``). FuDD's own published files
(``{"17_26": {"classes": [17, 26], "prompt_pairs": [{"attr_type": ..., "prompt_pair": [a, b]}]}}``)
load with :func:`read_fudd_json`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gloss_gen.data.classsets import ClassSet, load_class_set
from gloss_gen.data.descriptions import DescriptionError

PAIR_METHOD = "fudd"
FALLBACK_TEMPLATE = "a photo of a {}."
PAIR_FORMAT_VERSION = 1

Pair = tuple[int, int]


def fallback_prompt(name: str) -> str:
    return FALLBACK_TEMPLATE.format(name)


@dataclass
class PairRecord:
    """One pair's line: both classes, their contrasting texts (or the error that stopped them)."""

    class_ids: tuple[str, str]
    names: tuple[str, str]
    index: tuple[int, int]
    class_set: str | None = None
    method: str = PAIR_METHOD
    attributes: list[str] = field(default_factory=list)
    descriptions: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))
    provenance: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def pair(self) -> Pair:
        return self.index

    def to_json(self) -> dict:
        data = {
            "pair": list(self.class_ids),
            "names": list(self.names),
            "index": list(self.index),
            "class_set": self.class_set,
            "method": self.method,
        }
        if self.error is None:
            data["attributes"] = list(self.attributes)
            data["descriptions"] = [list(self.descriptions[0]), list(self.descriptions[1])]
        data["provenance"] = dict(self.provenance)
        if self.error is not None:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: dict) -> PairRecord:
        if not isinstance(data, dict):
            raise DescriptionError("a pair line must be a JSON object")
        missing = [k for k in ("pair", "names", "index") if k not in data]
        if missing:
            raise DescriptionError(f"pair line lacks {', '.join(missing)}")
        ids, names, index = data["pair"], data["names"], data["index"]
        if not (_pair_of(ids, str) and _pair_of(names, str) and _pair_of(index, int)):
            raise DescriptionError("a pair line's 'pair', 'names' and 'index' must each hold two values")
        if not index[0] < index[1]:
            raise DescriptionError(f"pair {ids[0]}/{ids[1]}: 'index' must be in class-set order")
        error = data.get("error")
        descriptions: tuple[list[str], list[str]] = ([], [])
        if error is None:
            raw = data.get("descriptions")
            if not (isinstance(raw, list) and len(raw) == 2
                    and all(isinstance(side, list) and side and all(isinstance(t, str) and t for t in side)
                            for side in raw)):
                raise DescriptionError(
                    f"pair {ids[0]}/{ids[1]}: 'descriptions' must be two non-empty lists of texts")
            descriptions = (list(raw[0]), list(raw[1]))
        attributes = data.get("attributes") or []
        if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
            raise DescriptionError(f"pair {ids[0]}/{ids[1]}: 'attributes' must be a list of strings")
        return cls(
            class_ids=(ids[0], ids[1]), names=(names[0], names[1]), index=(int(index[0]), int(index[1])),
            class_set=data.get("class_set"), method=str(data.get("method") or PAIR_METHOD),
            attributes=list(attributes), descriptions=descriptions,
            provenance=dict(data.get("provenance") or {}), error=None if error is None else str(error),
        )

    @classmethod
    def for_pair(cls, class_set: ClassSet, i: int, j: int) -> PairRecord:
        """An empty record of classes ``i`` and ``j`` (any order) of ``class_set``."""
        i, j = sorted((int(i), int(j)))
        a, b = class_set.classes[i], class_set.classes[j]
        return cls(class_ids=(a.id, b.id), names=(a.name, b.name), index=(i, j), class_set=class_set.name)


def _pair_of(value, kind) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, kind) and not isinstance(v, bool) for v in value))


@dataclass
class PairDescriptionSet:
    """The differential texts of a class set's pairs: ``pairs[(i, j)] = (texts of i, texts of j)``,
    ``i < j`` class indices."""

    class_set: ClassSet
    pairs: dict[Pair, tuple[list[str], list[str]]]
    method: str = PAIR_METHOD
    records: list[PairRecord] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Content hash of the class set and every pair's texts (the key of its embeddings)."""
        payload = json.dumps(
            [PAIR_FORMAT_VERSION, self.method, self.class_set.ids, self.class_set.names,
             [[i, j, list(a), list(b)] for (i, j), (a, b) in sorted(self.pairs.items())]],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    @property
    def failed(self) -> list[PairRecord]:
        return [r for r in self.records if not r.ok]

    def texts_of(self, cls: int, other: int) -> list[str] | None:
        """Texts of class ``cls`` written against ``other``; ``None`` when the pair has none."""
        pair = self.pairs.get((min(cls, other), max(cls, other)))
        if pair is None:
            return None
        return pair[0] if cls < other else pair[1]

    @classmethod
    def from_records(cls, class_set: ClassSet, records: Iterable[PairRecord]) -> PairDescriptionSet:
        """The latest line of each pair wins; a pair whose latest line failed has no texts."""
        records = list(records)
        latest: dict[Pair, PairRecord] = {}
        for record in records:
            i, j = record.index
            if j >= len(class_set) or (class_set.classes[i].id, class_set.classes[j].id) != record.class_ids:
                raise DescriptionError(
                    f"pair {record.class_ids[0]}/{record.class_ids[1]} is not a pair of class set {class_set.name} "
                    f"at indices {i}, {j}")
            latest[(i, j)] = record
        pairs = {p: (list(r.descriptions[0]), list(r.descriptions[1])) for p, r in latest.items() if r.ok}
        return cls(class_set, pairs, records=list(latest.values()))


def read_pair_jsonl(path: Path) -> list[PairRecord]:
    """Every readable line of a pair file. A torn line (a crash mid-write: an object cut short) is
    skipped, also once a resumed run has appended after it (JsonlWriter ends it with a newline)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptionError(f"cannot read pair file {path}: {exc}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            if number == len(lines) or line.lstrip().startswith("{"):
                continue
            raise DescriptionError(f"{path}:{number}: not a JSON line") from None
        try:
            records.append(PairRecord.from_json(data))
        except DescriptionError as exc:
            raise DescriptionError(f"{path}:{number}: {exc.message}") from None
    return records


def is_pair_file(path: Path) -> bool:
    """Whether ``path`` is a JSONL file of pair lines (its first line has a ``pair`` field)."""
    try:
        with Path(path).open("r", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    data = json.loads(line)
                    return isinstance(data, dict) and "pair" in data and "class_id" not in data
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return False


def load_pair_description_set(path: Path, class_set: ClassSet | None = None) -> PairDescriptionSet:
    """A pair file as a :class:`PairDescriptionSet`; the class set is the one its lines name
    (a built-in or a file beside them) unless given."""
    records = read_pair_jsonl(path)
    if not records:
        raise DescriptionError(f"pair file {path} holds no pair")
    if class_set is None:
        names = {r.class_set for r in records}
        if len(names) != 1 or None in names:
            raise DescriptionError(f"pair file {path} does not name one class set; pass the class set")
        class_set = load_class_set(next(iter(names)))
    return PairDescriptionSet.from_records(class_set, records)


def read_fudd_json(path: Path, class_set: ClassSet) -> PairDescriptionSet:
    """FuDD's published ``<dataset>_prompt_pairs.json`` (classes by index into ``class_set``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DescriptionError(f"cannot read FuDD pair file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DescriptionError(f"{path}: a FuDD pair file is an object of pairs")
    records = []
    for name, entry in data.items():
        try:
            a, b = (int(c) for c in entry["classes"])
            prompt_pairs = [p["prompt_pair"] for p in entry["prompt_pairs"]]
            attributes = [str(p.get("attr_type", "")) for p in entry["prompt_pairs"]]
        except (KeyError, TypeError, ValueError):
            raise DescriptionError(f"{path}: pair {name!r} is not a FuDD pair entry") from None
        if not (0 <= a < len(class_set) and 0 <= b < len(class_set)) or a == b:
            raise DescriptionError(f"{path}: pair {name!r} names a class outside {class_set.name}")
        record = PairRecord.for_pair(class_set, a, b)
        first, second = (0, 1) if a < b else (1, 0)
        record.descriptions = ([str(p[first]) for p in prompt_pairs], [str(p[second]) for p in prompt_pairs])
        record.attributes = attributes
        record.provenance = {"method": PAIR_METHOD, "source": Path(path).name}
        records.append(record)
    return PairDescriptionSet.from_records(class_set, records)
