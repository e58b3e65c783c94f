"""What classifying a batch of images gives back, in the shape of the ``POST /v1/classify`` body.

The server and ``vgloss classify --json`` both build a :class:`ClassifyResult` and print its
:meth:`~ClassifyResult.to_dict`, so the two outputs cannot drift apart (the server then checks it
against ``app.api.schemas.ClassifyResponse``). A prediction's dict is made only by
:meth:`gloss_gen.classify.scoring.Prediction.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gloss_gen.classify.open_set import OpenSetDecision
from gloss_gen.classify.scoring import Prediction
from gloss_gen.core.errors import VglossError
from gloss_gen.data.classifier import Classifier


@dataclass
class ImageResult:
    """One image of a request: its top-k predictions (and, with open-set scoring, its ``ood_score``
    and ``unknown``), or the error that rejected it."""

    index: int
    filename: str | None
    predictions: list[Prediction] | None = None
    error: VglossError | None = None
    open_set: OpenSetDecision | None = None

    def to_dict(self, explain: bool = False) -> dict:
        entry: dict = {"index": self.index, "filename": self.filename}
        if self.error is not None:
            entry["error"] = {"code": self.error.code, "message": self.error.message}
        else:
            if self.open_set is not None:
                entry.update(self.open_set.to_dict())
            entry["predictions"] = [p.to_dict(explain) for p in self.predictions or []]
        return entry


@dataclass
class ClassifyResult:
    """Every image's result, with the model, class set and description set that scored them."""

    model: str
    class_set: str
    descriptions: str
    results: list[ImageResult]
    explain: bool = False
    adapter: str | None = None  # key of the few-shot adapter applied, if any
    open_set: dict | None = None  # OpenSetScorer.info() of the open-set method applied, if any
    rerank: dict | None = None  # {"method": "fudd", "k": ..., "pairs": key} when the top-k was re-ranked

    @classmethod
    def for_classifier(
        cls, classifier: Classifier, results: list[ImageResult], explain: bool = False, adapter: str | None = None,
        open_set: dict | None = None, rerank: dict | None = None,
    ) -> ClassifyResult:
        """The result of scoring with ``classifier``: its model, class set and descriptions are named."""
        return cls(
            model=classifier.model_id,
            class_set=classifier.class_set.name,
            descriptions=classifier.descriptions_id,
            results=results,
            explain=explain,
            adapter=adapter,
            open_set=open_set,
            rerank=rerank,
        )

    def to_dict(self) -> dict:
        """The response body (DESIGN.md): ``evidence`` appears in predictions only with ``explain``;
        ``open_set`` and each image's ``ood_score``/``unknown`` only with open-set scoring."""
        return {
            "model": self.model,
            "class_set": self.class_set,
            "descriptions": self.descriptions,
            # only with an adapter, so a zero-shot body keeps its documented shape
            **({"adapter": self.adapter} if self.adapter is not None else {}),
            **({"open_set": self.open_set} if self.open_set is not None else {}),
            **({"rerank": self.rerank} if self.rerank is not None else {}),
            "results": [result.to_dict(self.explain) for result in self.results],
        }
