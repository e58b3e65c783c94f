"""Which pairs of classes the FuDD describe job writes texts for: those that can meet in a top-k.

- Confusables (always): for each class its ``K`` nearest classes (Wu-Palmer over WordNet, name
  similarity for classes WordNet does not know; :func:`~gloss_gen.describe.llm.find_confusables`,
  the ``vgloss`` method's ``--confusables K``), unordered and de-duplicated: between ``C·K/2``
  pairs (every neighbour mutual) and ``C·K`` (none mutual), never more than ``C·(C-1)/2``
  (cifar10: 29 pairs at K=5, all 45 at K=9).
- ``--pairs-from PATH`` (optional): the pairs that met in predictions already made —

  * a ``vgloss label`` output (the folder of ``part-*.parquet`` and ``_manifest.json``, or one
    part): every two classes in one row's ``top_k`` column;
  * a ``vgloss eval`` output (the folder or its ``results.json``): each method's
    ``top_confusions`` (the true class and the top-1 prediction that took its place);
  * per-image rows as JSON lines with a ``top_k`` list (of ``{"class_id": ...}`` or class ids),
    given as a file or lying in the eval folder: every two classes in one row's list.

  ``max_pairs`` keeps the most frequent of them (ties in class-set order).

File names here are those :mod:`gloss_gen.labelling.shards` and
:mod:`gloss_gen.evaluation.eval_report` write (this layer sits below both, so they are spelled out;
a test checks they agree).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionError
from gloss_gen.data.pair_descriptions import Pair
from gloss_gen.describe.llm import find_confusables

LABEL_MANIFEST = "_manifest.json"  # gloss_gen.labelling.shards.MANIFEST_NAME
LABEL_PARTS = "part-*.parquet"  # gloss_gen.labelling.shards.PART_PATTERN
EVAL_RESULTS = "results.json"  # gloss_gen.evaluation.eval_report.RESULTS_FILE
READS = "a vgloss label output (folder or .parquet part), a vgloss eval output (folder or results.json) " \
        "or JSON lines with a top_k list"


@dataclass
class PairSelection:
    """The pairs to describe, in class-set order, and where they came from."""

    pairs: list[Pair]
    confusable: set[Pair] = field(default_factory=set)
    met: set[Pair] = field(default_factory=set)  # the pairs --pairs-from added (after max_pairs)
    from_confusables: int = 0
    from_results: int = 0  # pairs --pairs-from added (after max_pairs), confusables included
    results_seen: int = 0  # distinct pairs met in --pairs-from before max_pairs
    sources: list[str] = field(default_factory=list)

    def line(self) -> str:
        where = f"; {self.from_results} of {self.results_seen} pairs met in {', '.join(self.sources)}" \
            if self.sources else ""
        return f"{len(self.pairs)} pairs: {self.from_confusables} from confusables{where}"


def confusable_pairs(class_set: ClassSet, k: int) -> set[Pair]:
    """Each class with its ``k`` nearest, unordered: ``(i, j)`` with ``i < j``."""
    return {(min(i, j), max(i, j)) for i, near in enumerate(find_confusables(class_set, k)) for j in near if i != j}


def select_pairs(class_set: ClassSet, k: int, pairs_from: str | Path | None = None,
                 max_pairs: int | None = None) -> PairSelection:
    """The confusable pairs plus, with ``pairs_from``, the pairs met in those predictions."""
    pairs = confusable_pairs(class_set, k)
    selection = PairSelection(pairs=[], confusable=set(pairs), from_confusables=len(pairs))
    if pairs_from is not None:
        counts, sources = count_pairs_from(Path(pairs_from), class_set)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = [pair for pair, _ in (ordered if max_pairs is None else ordered[:max(0, max_pairs)])]
        selection.results_seen = len(counts)
        selection.from_results = len(kept)
        selection.sources = sources
        selection.met = set(kept)
        pairs |= selection.met
    selection.pairs = sorted(pairs)
    return selection


class _Resolver:
    """Class ids (or names) of a prediction file → class indices of ``class_set``."""

    def __init__(self, class_set: ClassSet, path: Path):
        self.class_set, self.path = class_set, path
        self.by_id = {spec.id: i for i, spec in enumerate(class_set.classes)}
        self.by_name = {spec.name: i for i, spec in enumerate(class_set.classes)}

    def index(self, value: Any) -> int:
        if isinstance(value, dict):
            value = value.get("class_id", value.get("label"))
        key = str(value)
        found = self.by_id.get(key, self.by_name.get(key))
        if found is None:
            raise DescriptionError(f"--pairs-from {self.path}: class {key!r} is not in class set {self.class_set.name}")
        return found

    def check_set(self, name: Any) -> None:
        if isinstance(name, str) and name and name != self.class_set.name:
            raise DescriptionError(
                f"--pairs-from {self.path} was made for class set {name}, not {self.class_set.name}")


def _row_pairs(top_k: Iterable[Any], resolve: _Resolver) -> Iterator[Pair]:
    indices = sorted({resolve.index(item) for item in top_k if item is not None})
    return itertools.combinations(indices, 2)


def _count_parquet(files: list[Path], resolve: _Resolver, counts: Counter) -> None:
    import pyarrow.parquet as pq

    for file in files:
        try:
            parquet = pq.ParquetFile(file)
            if "top_k" not in parquet.schema_arrow.names:
                raise DescriptionError(f"--pairs-from {file}: no top_k column (not a vgloss label part)")
            for batch in parquet.iter_batches(columns=["top_k"]):
                for top_k in batch.column(0).to_pylist():
                    counts.update(_row_pairs(top_k or [], resolve))
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DescriptionError(f"--pairs-from {file}: cannot read it as Parquet: {exc}") from None


def _is_rows_file(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "")
        row = json.loads(first) if first else None
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(row, dict) and isinstance(row.get("top_k"), list)


def _count_rows(path: Path, resolve: _Resolver, counts: Counter) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptionError(f"--pairs-from {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DescriptionError(f"--pairs-from {path}:{number}: not a JSON line") from None
        if not (isinstance(row, dict) and isinstance(row.get("top_k"), list)):
            raise DescriptionError(f"--pairs-from {path}:{number}: a row needs a top_k list")
        counts.update(_row_pairs(row["top_k"], resolve))


def _count_eval(path: Path, resolve: _Resolver, counts: Counter) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        resolve.check_set((data.get("class_set") or {}).get("name"))
        methods = data["methods"].values()
        for method in methods:
            for confusion in method.get("top_confusions") or []:
                i, j = resolve.index(confusion["true"]), resolve.index(confusion["predicted"])
                if i != j:
                    counts[(min(i, j), max(i, j))] += int(confusion.get("count", 1))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DescriptionError(f"--pairs-from {path}: not a vgloss eval results.json ({exc})") from None


def count_pairs_from(path: Path, class_set: ClassSet) -> tuple[Counter, list[str]]:
    """How often each pair met in the predictions at ``path`` (see the module docstring), and a
    name for each source read."""
    resolve = _Resolver(class_set, path)
    counts: Counter = Counter()
    if path.is_dir():
        parts = sorted(path.glob(LABEL_PARTS))
        if parts or (path / LABEL_MANIFEST).is_file():
            manifest = path / LABEL_MANIFEST
            if manifest.is_file():
                try:
                    resolve.check_set(json.loads(manifest.read_text(encoding="utf-8"))["settings"]["class_set"])
                except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                    raise DescriptionError(f"--pairs-from {manifest}: not a vgloss label manifest") from None
            _count_parquet(parts, resolve, counts)
            return counts, [f"{path} ({len(parts)} label parts)"]
        rows = sorted(p for p in path.glob("*.jsonl") if _is_rows_file(p))
        if (path / EVAL_RESULTS).is_file() or rows:
            sources = []
            if (path / EVAL_RESULTS).is_file():
                _count_eval(path / EVAL_RESULTS, resolve, counts)
                sources.append(str(path / EVAL_RESULTS))
            for file in rows:
                _count_rows(file, resolve, counts)
                sources.append(str(file))
            return counts, sources
    elif path.is_file():
        if path.suffix == ".parquet":
            _count_parquet([path], resolve, counts)
            return counts, [str(path)]
        if path.suffix == ".json":
            _count_eval(path, resolve, counts)
            return counts, [str(path)]
        if _is_rows_file(path):
            _count_rows(path, resolve, counts)
            return counts, [str(path)]
    elif not path.exists():
        raise DescriptionError(f"--pairs-from {path}: no such file or folder")
    raise DescriptionError(f"--pairs-from {path}: not {READS}")
