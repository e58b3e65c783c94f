"""FuDD's second look in ``vgloss eval``: the ``fudd:PAIRS.jsonl`` method is FuDD's procedure, a
first pass with class-name prompts whose top ``rerank_k`` classes are re-ranked by the pair
descriptions (:mod:`gloss_gen.classify.pair_rerank`), scored like any other method. Its pair
embeddings are cached in the store by content hash, never made the ones a class set serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gloss_gen.classify.pair_embeddings import (
    PairEmbeddings,
    build_pair_embeddings,
    get_pair_embeddings,
    pair_embeddings_key,
    put_pair_embeddings,
)
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.core.errors import EvalError
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionError
from gloss_gen.data.pair_descriptions import PAIR_METHOD, PairDescriptionSet, is_pair_file, load_pair_description_set
from gloss_gen.data.store import Store
from gloss_gen.model.model_source import ModelSource

PAIR_METHODS = (PAIR_METHOD,)
FIRST_PASS_METHOD = "classname"
DEFAULT_RERANK_K = 10  # FuDD's k


def load_pairs(label: str, path: Path, class_set: ClassSet) -> tuple[PairDescriptionSet, list[str]]:
    """The pair descriptions of a ``fudd:FILE`` entry, with notes worth showing the user."""
    if not path.is_file():
        raise EvalError(f"{label}: {path} does not exist")
    if not is_pair_file(path):
        raise EvalError(f"{label}: {path} is not a pair file (write one with `vgloss describe "
                        f"{class_set.name} --method fudd`)")
    try:
        pairs = load_pair_description_set(path, class_set)
    except DescriptionError as exc:
        raise EvalError(f"{label}: {exc.message}") from None
    if not pairs.pairs:
        raise EvalError(f"{label}: {path} has no successful pair for {class_set.name}")
    notes = [f"{len(pairs.pairs)} pairs re-rank a first pass of {FIRST_PASS_METHOD} prompts"]
    if pairs.failed:
        notes.append(f"{len(pairs.failed)} pairs failed in {path.name} and use the class-name prompt")
    return pairs, notes


def pair_embeddings_for(pairs: PairDescriptionSet, models: ModelSource, store: Store | None,
                        progress: bool = False) -> PairEmbeddings:
    """Stored pair embeddings of ``pairs`` under the model, built (and stored, not activated) if missing."""
    if store is not None:
        cached = get_pair_embeddings(store, pair_embeddings_key(models.id, pairs.id))
        if cached is not None:
            return cached
    built = build_pair_embeddings(models.get(), pairs, progress=progress)
    if store is not None:
        put_pair_embeddings(store, built, activate=False)
    return built


def rank_with_rerank(head: ScoringHead, vectors: np.ndarray, mode: str, k: int, rerank_k: int,
                     chunk_size: int = 1024) -> np.ndarray:
    """(N, k) class indices per image, most probable first, after the head's re-rank."""
    if rerank_k < 2:
        raise EvalError(f"--rerank-k must be at least 2, not {rerank_k}")
    k = min(k, head.num_classes)
    index = {cid: i for i, cid in enumerate(head.ids)}
    ranked = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk_size):
        block = torch.from_numpy(np.ascontiguousarray(vectors[start : start + chunk_size]))
        for row, scored in enumerate(head.score(block, top_k=k, mode=mode, rerank_k=rerank_k), start):
            ranked[row] = [index[p.class_id] for p in scored.predictions]
    return ranked
