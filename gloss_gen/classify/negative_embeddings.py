"""NegLabel's negative labels for one classifier: mined, embedded, selected and stored once.

The words come from :func:`gloss_gen.data.negative_labels.negative_candidates` (WordNet 3.0 nouns and
adjectives minus the class set's own synsets, their hypernyms, hyponyms and lemmas), are embedded in
their NegLabel prompts by the model's text encoder, and :func:`select_negatives` keeps the 15 % least
like the classifier's prototypes. The result is a :class:`NegativeLabels` record, keyed by a content
hash of everything that decides it (format, classifier key, the class set's names and synsets, the
prompts, the selection's quantile and share, the WordNet files, the candidate cap) and stored as
safetensors with a JSON header (never pickle) under ``{ns}:negatives:{key}``, as classifiers are.

Embedding every candidate is the cost: about 57,000 prompts, a few seconds on a GPU and 15-25
minutes for ViT-B-32 on two CPU cores. ``max_candidates`` (``VGLOSS_NEGLABEL_MAX_CANDIDATES``) embeds an
evenly spread subset instead, in the candidates' order, so nouns and adjectives keep their shares.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import numpy as np

from gloss_gen.data.classifier import BetweenBatches, Classifier, ClassifierUnreadableError, read_safetensors_metadata
from gloss_gen.data.descriptions import utc_now
from gloss_gen.data.negative_labels import (
    ADJECTIVE_PROMPT,
    NEGLABEL_ADJECTIVE_FILES,
    NEGLABEL_KEEP_SHARE,
    NEGLABEL_NOUN_FILES,
    NEGLABEL_QUANTILE,
    NOUN_PROMPT,
    Candidate,
    NegativeLabelError,
    negative_candidates,
    select_negatives,
)

log = logging.getLogger(__name__)

NEGATIVES_KIND = "negatives"
NEGATIVES_FORMAT = 1
_HEADER = "vgloss-negatives"


def negatives_key(classifier: Classifier, max_candidates: int = 0) -> str:
    """The content key of the negatives of ``classifier`` (``max_candidates`` 0: every candidate)."""
    classes = [[spec.name, spec.synset] for spec in classifier.class_set.classes]
    payload = json.dumps([
        NEGATIVES_FORMAT, classifier.key, classifier.model_id, classes, NOUN_PROMPT, ADJECTIVE_PROMPT,
        NEGLABEL_QUANTILE, NEGLABEL_KEEP_SHARE, NEGLABEL_NOUN_FILES, NEGLABEL_ADJECTIVE_FILES, int(max_candidates),
    ])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class NegativeLabels:
    """The negatives NegLabel scores a classifier's images against, in selection order (nouns then
    adjectives, least like the class set first): ``embeddings`` (M, D) float32 unit rows."""

    key: str
    model_id: str
    classifier_key: str
    class_set: str
    words: list[str]
    parts_of_speech: list[str]
    embeddings: np.ndarray
    candidates: int  # prompts embedded to choose from
    max_candidates: int = 0
    created_at: str = field(default_factory=utc_now)

    def __len__(self) -> int:
        return len(self.words)

    def header(self) -> dict:
        return {
            "format": NEGATIVES_FORMAT,
            "key": self.key,
            "model_id": self.model_id,
            "classifier_key": self.classifier_key,
            "class_set": self.class_set,
            "words": self.words,
            "parts_of_speech": self.parts_of_speech,
            "candidates": self.candidates,
            "max_candidates": self.max_candidates,
            "created_at": self.created_at,
        }

    def summary(self) -> dict:
        return {"key": self.key, "negatives": len(self), "candidates": self.candidates}

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        tensors = {"embeddings": np.ascontiguousarray(self.embeddings, dtype="<f4")}
        return save(tensors, metadata={_HEADER: json.dumps(self.header(), ensure_ascii=False)})

    @classmethod
    def from_bytes(cls, data: bytes) -> NegativeLabels:
        """Parse stored bytes; anything unreadable raises :class:`ClassifierUnreadableError`."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        header = read_safetensors_metadata(data).get(_HEADER)
        if header is None:
            raise ClassifierUnreadableError(f"not vgloss negative labels (no {_HEADER!r} metadata)")
        try:
            meta = json.loads(header)
            if meta.get("format") != NEGATIVES_FORMAT:
                raise ValueError(f"format {meta.get('format')} is not {NEGATIVES_FORMAT}")
            embeddings = load(data)["embeddings"].astype(np.float32)
            record = cls(
                key=meta["key"], model_id=meta["model_id"], classifier_key=meta["classifier_key"],
                class_set=meta["class_set"], words=list(meta["words"]),
                parts_of_speech=list(meta["parts_of_speech"]), embeddings=embeddings,
                candidates=int(meta["candidates"]), max_candidates=int(meta.get("max_candidates", 0)),
                created_at=meta.get("created_at", ""),
            )
            if embeddings.ndim != 2 or len({embeddings.shape[0], len(record.words), len(record.parts_of_speech)}) != 1:
                raise ValueError(f"{embeddings.shape} embeddings for {len(record.words)} words")
            return record
        except (KeyError, TypeError, ValueError, AttributeError, SafetensorError) as exc:
            raise ClassifierUnreadableError(
                f"the stored negative labels are incomplete or malformed ({type(exc).__name__}: {exc})"
            ) from None


def spread_sample(items: list, limit: int) -> list:
    """``limit`` items evenly spread over ``items``, in their order (all of them when ``limit`` is 0
    or not smaller)."""
    if limit <= 0 or limit >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, num=limit).round().astype(np.int64)
    return [items[i] for i in np.unique(picks)]


def negative_prompts(classifier: Classifier, max_candidates: int = 0) -> list[Candidate]:
    """The candidates whose prompts :func:`build_negatives` embeds (WordNet's first use reads it: seconds)."""
    candidates = spread_sample(negative_candidates(classifier.class_set), max_candidates)
    if not candidates:
        raise NegativeLabelError(f"WordNet leaves no candidate negative labels for {classifier.class_set.name}")
    return candidates


def build_negatives(
    model,
    classifier: Classifier,
    *,
    max_candidates: int = 0,
    candidates: list[Candidate] | None = None,
    batch_size: int = 256,
    progress: bool = False,
    between_batches: BetweenBatches | None = None,
) -> NegativeLabels:
    """Mine (unless ``candidates`` come from :func:`negative_prompts` already), embed and select the
    negatives of ``classifier`` with ``model``'s text encoder (``batch_size``, ``progress`` and
    ``between_batches`` go to :meth:`gloss_gen.model.clip_models.ClipModel.encode_text`)."""
    if model.id != classifier.model_id:
        raise NegativeLabelError(f"classifier {classifier.key} is for {classifier.model_id}, not {model.id}")
    if candidates is None:
        candidates = negative_prompts(classifier, max_candidates)
    embeddings = model.encode_text([c.prompt for c in candidates], batch_size=batch_size, progress=progress,
                                   between_batches=between_batches)
    kept = select_negatives(embeddings, classifier.prototypes,
                            parts_of_speech=[c.pos for c in candidates]).tolist()
    return NegativeLabels(
        key=negatives_key(classifier, max_candidates),
        model_id=classifier.model_id,
        classifier_key=classifier.key,
        class_set=classifier.class_set.name,
        words=[candidates[i].word for i in kept],
        parts_of_speech=[candidates[i].pos for i in kept],
        embeddings=np.ascontiguousarray(embeddings[kept], dtype=np.float32),
        candidates=len(candidates),
        max_candidates=int(max_candidates),
    )


def put_negatives(store, record: NegativeLabels) -> None:
    store.put_bytes(NEGATIVES_KIND, record.key, record.to_bytes())


def get_negatives(store, key: str) -> NegativeLabels | None:
    raw = store.get_bytes(NEGATIVES_KIND, key)
    return None if raw is None else NegativeLabels.from_bytes(raw)


def get_or_build_negatives(store, model, classifier: Classifier, *, max_candidates: int = 0,
                           progress: bool = False) -> tuple[NegativeLabels, bool]:
    """(negatives, whether they came from the store): built and stored when missing."""
    key = negatives_key(classifier, max_candidates)
    stored = get_negatives(store, key) if store is not None else None
    if stored is not None:
        return stored, True
    log.info("embedding NegLabel's candidate negative labels for %s with %s", classifier.class_set.name, model.id)
    record = build_negatives(model, classifier, max_candidates=max_candidates, progress=progress)
    if store is not None:
        put_negatives(store, record)
    return record, False
