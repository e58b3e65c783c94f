"""Scoring image embeddings against a classifier: the one implementation the server, ``vgloss
classify`` and ``vgloss eval`` share.

Scores are ``softmax(logit_scale · cos)`` over the class set, or ``sigmoid(logit_scale · cos +
logit_bias)`` for models that carry a bias (SigLIP). ``similarity`` is the cosine itself.
Evidence is the description of a predicted class most similar to the image (for class-name
prompts, the template prompt: "a photo of a cat.").

With an :class:`~gloss_gen.classify.open_set.OpenSetScorer` (MCM or NegLabel), :meth:`ScoringHead.score`
also gives each image an open-set ``ood_score`` (higher = more in-set), computed from the same zero-shot
cosines as the predictions, and ``unknown`` when it falls below the scorer's threshold.

A few-shot cache adapter (:class:`CacheModel`, fitted by :mod:`gloss_gen.adapt.tip`) may be attached: its cache logits are
added to ``logit_scale · cos`` before the softmax, and ``explain`` then also names the labelled
example of each predicted class nearest to the image.

With pair embeddings attached (:meth:`ScoringHead.attach_pairs`, FuDD's differential descriptions)
and ``rerank_k > 1``, the ``rerank_k`` most probable classes of that first pass are re-ranked by
their pair descriptions (:mod:`gloss_gen.classify.pair_rerank`): they come first, in the new order,
each with the cosine it was re-ranked by as ``similarity`` and as ``score`` its share of the
first-pass probability of the ``rerank_k`` (``softmax(logit_scale · cos)`` over them), or for a
sigmoid model ``sigmoid(logit_scale · cos + logit_bias)``; the classes after them keep the first
pass's order and scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gloss_gen.classify.open_set import OpenSetDecision, OpenSetScorer
from gloss_gen.classify.pair_rerank import PairReranker
from gloss_gen.core.errors import AdaptError
from gloss_gen.data.classifier import Classifier

SCORING_MODES = ("prototype", "mean-description")


@dataclass
class Prediction:
    class_id: str
    label: str
    score: float
    similarity: float
    evidence: str | None = None
    example: str | None = None  # nearest labelled example of the class, with an adapter

    def to_dict(self, explain: bool = False) -> dict:
        data = {
            "class_id": self.class_id,
            "label": self.label,
            "score": self.score,
            "similarity": self.similarity,
        }
        if explain:
            data["evidence"] = self.evidence
            if self.example is not None:
                data["example"] = self.example
        return data


@dataclass
class ImageScores:
    """One image scored: its top-k predictions and, with an open-set scorer, its open-set verdict."""

    predictions: list[Prediction]
    open_set: OpenSetDecision | None = None


class ScoringHead:
    """A classifier's arrays as tensors on a device, with batched scoring.

    ``mode='prototype'`` scores each class by its prototype (CuPL / CLIP_benchmark); ``mode=
    'mean-description'`` averages the per-description similarities of each class (DCLIP).
    """

    def __init__(self, classifier: Classifier, device: str | torch.device = "cpu", adapter=None):
        self.classifier = classifier
        self.device = torch.device(device)
        self.prototypes = torch.from_numpy(np.ascontiguousarray(classifier.prototypes)).to(self.device)
        self.evidence = torch.from_numpy(np.ascontiguousarray(classifier.evidence, dtype=np.float32)).to(self.device)
        offsets = torch.from_numpy(classifier.offsets.astype(np.int64))
        counts = offsets[1:] - offsets[:-1]
        # evidence row -> class index, for per-class max / mean over descriptions
        self.row_class = torch.repeat_interleave(torch.arange(len(counts)), counts).to(self.device)
        self.counts = counts.to(self.device)
        self.ids = classifier.class_set.ids
        self.names = classifier.class_set.names
        self.logit_scale = float(classifier.logit_scale)
        self.logit_bias = classifier.logit_bias
        self.adapter = None  # a CacheModel aligned with this class set
        if adapter is not None:
            self.attach(adapter)
        self.reranker: PairReranker | None = None

    def attach_pairs(self, pairs) -> None:
        """Re-rank with these :class:`~gloss_gen.classify.pair_embeddings.PairEmbeddings` (``None``:
        no re-rank); raises :class:`~gloss_gen.classify.pair_rerank.PairRerankError` when they
        were built for other classes."""

        self.reranker = None if pairs is None else PairReranker(pairs, self.ids, self.device)

    def attach(self, adapter) -> None:
        """Add a few-shot adapter record (or ``None`` to remove it) to this head's scores."""

        self.adapter = None if adapter is None else CacheModel.for_head(adapter, self)

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    def similarities(self, image_emb: torch.Tensor, mode: str = "prototype") -> torch.Tensor:
        """Cosine similarity (B, C) of unit image embeddings to each class."""
        image_emb = image_emb.to(self.device, dtype=torch.float32)
        # Class-name prompts are no descriptions to average (their rows are evidence only): a
        # templates classifier scores by its prototypes in either mode.
        if mode == "prototype" or (mode == "mean-description" and self.classifier.prompt_style == "templates"):
            return image_emb @ self.prototypes.T
        if mode == "mean-description":
            per_row = image_emb @ self.evidence.T  # (B, N)
            sums = torch.zeros(image_emb.shape[0], self.num_classes, device=self.device)
            sums.index_add_(1, self.row_class, per_row)
            return sums / self.counts.clamp(min=1).to(sums.dtype)
        raise ValueError(f"unknown scoring mode {mode!r}; choose from {', '.join(SCORING_MODES)}")

    def logits(self, image_emb: torch.Tensor, mode: str = "prototype") -> torch.Tensor:
        """Pre-softmax scores (B, C): ``logit_scale · cos``, plus the adapter's cache logits."""
        return self._logits(image_emb, self.similarities(image_emb, mode))

    def _logits(self, image_emb: torch.Tensor, cosine: torch.Tensor) -> torch.Tensor:
        logits = self.logit_scale * cosine
        if self.adapter is not None:
            logits = logits + self.adapter.logits(image_emb.to(self.device, dtype=torch.float32))
        return logits

    def probabilities(self, cosine: torch.Tensor, image_emb: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.logit_scale * cosine if image_emb is None else self._logits(image_emb, cosine)
        if self.logit_bias is not None:
            return torch.sigmoid(logits + self.logit_bias)
        return torch.softmax(logits, dim=-1)

    def predict(
        self,
        image_emb: torch.Tensor,
        top_k: int = 5,
        explain: bool = False,
        mode: str = "prototype",
    ) -> list[list[Prediction]]:
        """Top-k predictions for each image of a batch of unit embeddings (B, D)."""
        return [scored.predictions for scored in self.score(image_emb, top_k, explain, mode)]

    def open_set_scores(self, image_emb: torch.Tensor, scorer: OpenSetScorer, mode: str = "prototype",
                        cosine: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) open-set scores of unit image embeddings, from the zero-shot cosines (never the adapter's)."""
        image_emb = image_emb.to(self.device, dtype=torch.float32)
        return scorer.scores(self.similarities(image_emb, mode) if cosine is None else cosine, image_emb)

    def score(
        self,
        image_emb: torch.Tensor,
        top_k: int = 5,
        explain: bool = False,
        mode: str = "prototype",
        open_set: OpenSetScorer | None = None,
        rerank_k: int = 0,
    ) -> list[ImageScores]:
        """Top-k predictions for each image of a batch of unit embeddings (B, D), and with
        ``open_set`` (which must have a threshold) its ``ood_score`` and ``unknown``; with
        attached pairs and ``rerank_k > 1``, the first pass's ``rerank_k`` best re-ranked."""
        cosine = self.similarities(image_emb, mode)
        probs = self.probabilities(cosine, image_emb)
        decisions = None
        if open_set is not None:
            decisions = open_set.decisions(self.open_set_scores(image_emb, open_set, mode, cosine))
        k = max(1, min(int(top_k), self.num_classes))
        reranked = min(int(rerank_k), self.num_classes) if self.reranker is not None else 0
        top_p, top_i = probs.topk(max(k, reranked), dim=-1)
        top_cos = cosine.gather(1, top_i)
        best_rows = None
        if explain:
            best_rows = self._best_evidence_rows(image_emb, top_i)
        pair_evidence = None
        if reranked > 1:
            top_p, top_i, top_cos, pair_evidence = self._rerank(image_emb, top_p, top_i, top_cos, reranked, explain)
        top_p, top_i, top_cos = top_p[:, :k], top_i[:, :k], top_cos[:, :k]
        examples = None
        if explain and self.adapter is not None:
            examples = self.adapter.nearest_examples(image_emb.to(self.device, dtype=torch.float32), top_i)
        top_p, top_i, top_cos = top_p.cpu().tolist(), top_i.cpu().tolist(), top_cos.cpu().tolist()
        results = []
        for b in range(len(top_i)):
            preds = []
            for j, cls in enumerate(top_i[b]):
                evidence = None
                if pair_evidence is not None and j < reranked:
                    evidence = pair_evidence[b][j]
                elif best_rows is not None:
                    evidence = self.classifier.evidence_texts[best_rows[b][j]]
                preds.append(
                    Prediction(
                        class_id=self.ids[cls],
                        label=self.names[cls],
                        score=float(top_p[b][j]),
                        similarity=float(top_cos[b][j]),
                        evidence=evidence,
                        example=None if examples is None else examples[b][j],
                    )
                )
            results.append(ImageScores(preds, None if decisions is None else decisions[b]))
        return results

    def _rerank(self, image_emb, top_p, top_i, top_cos, reranked: int, explain: bool):
        """The first ``reranked`` columns of a first pass re-ranked by the attached pairs."""
        assert self.reranker is not None
        cos, evidence = self.reranker.cosines(image_emb, top_i[:, :reranked], with_evidence=explain)
        cos, order = cos.sort(dim=-1, descending=True, stable=True)
        if self.logit_bias is not None:
            probs = torch.sigmoid(self.logit_scale * cos + self.logit_bias)
        else:
            probs = top_p[:, :reranked].sum(-1, keepdim=True) * torch.softmax(self.logit_scale * cos, dim=-1)
        top_i = torch.cat([top_i[:, :reranked].gather(1, order), top_i[:, reranked:]], dim=1)
        top_p = torch.cat([probs, top_p[:, reranked:]], dim=1)
        top_cos = torch.cat([cos, top_cos[:, reranked:]], dim=1)
        if evidence is not None:
            evidence = [[row[j] for j in o] for row, o in zip(evidence, order.tolist())]
        return top_p, top_i, top_cos, evidence

    def _best_evidence_rows(self, image_emb: torch.Tensor, top_i: torch.Tensor) -> list[list[int]]:
        per_row = image_emb.to(self.device, dtype=torch.float32) @ self.evidence.T  # (B, N)
        # rows outside the predicted class are masked, then the best remaining row is taken
        wanted = self.row_class.unsqueeze(0).unsqueeze(0) == top_i.unsqueeze(-1)  # (B, k, N)
        masked = per_row.unsqueeze(1).masked_fill(~wanted, float("-inf"))
        return masked.argmax(dim=-1).cpu().tolist()


class CacheModel:
    """Cache keys (N, D), their class indices (N,) and (α, β), on one device."""

    def __init__(self, keys, labels, num_classes: int, alpha: float, beta: float, names=None, device="cpu"):
        self.keys = torch.as_tensor(np.asarray(keys), dtype=torch.float32).to(device)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(device)
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.names = list(names) if names is not None else None

    @classmethod
    def for_head(cls, record, head) -> CacheModel:
        """The record's cache re-indexed onto the head's class order (rows of other classes dropped)."""
        index = {cid: i for i, cid in enumerate(head.ids)}
        mapped = np.array([index.get(record.class_ids[c], -1) for c in record.labels], dtype=np.int64)
        if (mapped < 0).all():
            raise AdaptError(f"adapter {record.key} shares no class with classifier {head.classifier.key}")
        keep = mapped >= 0
        names = [n for n, k in zip(record.names, keep) if k]
        return cls(record.keys[keep], mapped[keep], head.num_classes, record.alpha, record.beta, names, head.device)

    def affinity(self, image_emb: torch.Tensor) -> torch.Tensor:
        return image_emb @ self.keys.T

    def logits(self, image_emb: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """α · exp(−β (1 − f·Kᵀ)) · L, the one-hot product done as a scatter-add."""
        affinity = image_emb @ (self.keys if keys is None else keys).T
        return self.alpha * cache_sums(affinity, self.labels, self.num_classes, self.beta)

    def nearest_examples(self, image_emb: torch.Tensor, top_i: torch.Tensor) -> list[list[str | None]]:
        """For each image and each of its predicted classes, the name of that class's nearest example."""
        affinity = self.affinity(image_emb)  # (B, N)
        wanted = self.labels.view(1, 1, -1) == top_i.unsqueeze(-1)  # (B, k, N)
        masked = affinity.unsqueeze(1).masked_fill(~wanted, float("-inf"))
        best, rows = masked.max(dim=-1)
        names = self.names or [str(i) for i in range(len(self.labels))]
        return [
            [names[r] if math.isfinite(v) else None for r, v in zip(row_ids, values)]
            for row_ids, values in zip(rows.cpu().tolist(), best.cpu().tolist())
        ]


def cache_sums(affinity: torch.Tensor, labels: torch.Tensor, num_classes: int, beta: float) -> torch.Tensor:
    """exp(−β (1 − A)) · onehot(labels): (B, N) affinities -> (B, C) per-class sums (a scatter-add)."""
    weights = torch.exp(-beta * (1.0 - affinity))
    out = torch.zeros(affinity.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    return out.scatter_add_(1, labels.expand_as(weights), weights)
