"""``vgloss eval --ood``: how well each open-set method tells the class set's images from others.

Every readable image of DATA is in-set; every readable image under ``--ood`` is out-of-set. Each
(description method, open-set method) scores both with the scoring head
(:meth:`gloss_gen.classify.scoring.ScoringHead.open_set_scores`, the server's code) and reports, as
MCM's and NegLabel's ``get_measures`` do (:func:`gloss_gen.classify.open_set.open_set_measures`):

- ``auroc`` — the chance that an in-set image scores above an out-of-set one;
- ``fpr95`` — the share of out-of-set images kept in-set at the threshold that keeps 95 % of the
  in-set images (the closest operating point the scores allow: ``tpr`` says which);
- ``threshold`` — that threshold.

The per-image rows (:class:`OpenSetRow`) carry the very scores measured and ``unknown`` at that
threshold, so ``fpr95`` is the share of out-of-set rows not unknown and ``tpr`` that of in-set rows.
``default`` says where the method's default threshold (NegLabel's 0.5) would have put them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gloss_gen.classify.negative_embeddings import get_or_build_negatives
from gloss_gen.classify.open_set import (
    DEFAULT_THRESHOLDS,
    OPEN_SET_METHODS,
    OpenSetMeasures,
    OpenSetScorer,
    check_open_set_method,
    open_set_measures,
)
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.core.errors import EvalError
from gloss_gen.data.classifier import Classifier
from gloss_gen.evaluation.datasets import IMAGE_SUFFIXES, DatasetError, ImageFiles, LabelledImages, open_dataset

ROWS_FILE = "open_set_rows.jsonl"


def parse_open_set_methods(text: str | None) -> tuple[str, ...]:
    """A comma-separated ``--open-set`` value (default: every method), each once, in order."""
    if text is None:
        return OPEN_SET_METHODS
    methods = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not methods:
        raise EvalError("--open-set lists no method; use mcm, neglabel or both")
    for method in methods:
        if method not in OPEN_SET_METHODS:
            raise EvalError(f"unknown open-set method {method!r} in --open-set; use {', '.join(OPEN_SET_METHODS)}")
    if len(set(methods)) != len(methods):
        raise EvalError("--open-set lists the same method twice")
    return tuple(methods)


def open_ood_images(path: Path, layout: str = "auto") -> LabelledImages:
    """The out-of-set images: every image file under ``path`` (any depth, sorted, labels ignored), or
    a binary data set file or folder as ``vgloss eval`` reads DATA."""
    path = Path(path)
    if not path.exists():
        raise EvalError(f"--ood {path} does not exist")
    if layout == "auto" and path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if files:
            return ImageFiles("ood-files", path, path, files, [""] * len(files))
    try:
        return open_dataset(path, layout)
    except DatasetError as exc:
        raise EvalError(f"--ood: {exc}") from None


def item_path(dataset: LabelledImages, index: int) -> str:
    """Where image ``index`` is: its file's path as found, or ``file#record`` in a binary set."""
    return str(dataset.paths[index]) if isinstance(dataset, ImageFiles) else dataset.item_name(index)


@dataclass(frozen=True)
class OpenSetRow:
    """One image under one (description method, open-set method)."""

    method: str
    open_set: str
    path: str
    in_set: bool
    ood_score: float
    unknown: bool

    def to_dict(self) -> dict:
        return {"method": self.method, "open_set": self.open_set, "path": self.path, "in_set": self.in_set,
                "ood_score": self.ood_score, "unknown": self.unknown}


@dataclass
class OpenSetOutcome:
    """One open-set method's measures for one description method, with its rows."""

    open_set: str
    measures: OpenSetMeasures
    rows: list[OpenSetRow] = field(default_factory=list)
    negatives: int | None = None  # NegLabel's negative labels scored against
    default: dict | None = None  # {threshold, tpr, fpr} at the method's default threshold, if it has one

    def to_dict(self) -> dict:
        m = self.measures
        data = {"auroc": m.auroc, "fpr95": m.fpr_at_tpr, "threshold": m.threshold, "tpr": m.tpr,
                "tpr_target": m.tpr_target, "in_set": m.in_set, "out_of_set": m.out_of_set}
        if self.negatives is not None:
            data["negatives"] = self.negatives
        if self.default is not None:
            data["default"] = self.default
        return data


def score_open_set(
    classifier: Classifier,
    label: str,
    methods: Sequence[str],
    in_vectors: np.ndarray,
    in_names: Sequence[str],
    out_vectors: np.ndarray,
    out_names: Sequence[str],
    *,
    store=None,
    model_source=None,
    mode: str = "prototype",
    device: str = "cpu",
    max_candidates: int = 0,
    progress: bool = False,
) -> list[OpenSetOutcome]:
    """Every open-set method of ``methods`` on the in-set and out-of-set embeddings (unit rows)."""
    if len(in_vectors) == 0 or len(out_vectors) == 0:
        raise EvalError("open-set evaluation needs readable in-set and out-of-set images")
    head = ScoringHead(classifier, device)
    outcomes = []
    for method in map(check_open_set_method, methods):
        negatives, count = None, None
        if method == "neglabel":
            record, _ = get_or_build_negatives(store, model_source.get(), classifier, max_candidates=max_candidates,
                                               progress=progress)
            negatives, count = torch.from_numpy(record.embeddings), len(record)
        scorer = OpenSetScorer(method, negatives=negatives)
        in_scores, out_scores = (_scores(head, scorer, vectors, mode) for vectors in (in_vectors, out_vectors))
        measures = open_set_measures(in_scores, out_scores)
        rows = [
            OpenSetRow(label, method, name, inside, float(score), bool(score < measures.threshold))
            for inside, names, scores in ((True, in_names, in_scores), (False, out_names, out_scores))
            for name, score in zip(names, scores)
        ]
        default = DEFAULT_THRESHOLDS[method]
        at_default = None
        if default is not None:
            at_default = {"threshold": default, "tpr": float(np.mean(in_scores >= default)),
                          "fpr": float(np.mean(out_scores >= default))}
        outcomes.append(OpenSetOutcome(method, measures, rows, count, at_default))
    return outcomes


def _scores(head: ScoringHead, scorer: OpenSetScorer, vectors: np.ndarray, mode: str,
            chunk_size: int = 4096) -> np.ndarray:
    parts = []
    with torch.inference_mode():
        for start in range(0, len(vectors), chunk_size):
            block = torch.from_numpy(np.ascontiguousarray(vectors[start : start + chunk_size]))
            parts.append(head.open_set_scores(block, scorer, mode).double().cpu().numpy())
    return np.concatenate(parts)

