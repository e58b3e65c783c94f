"""Open-set scoring: how in-set an image is, and when to call it unknown.

Pure tensor functions, batch-first, transcribed from the authors' code (defaults named after it):

- MCM (deeplearning-wisc/MCM, ``utils/detection_util.py`` ``get_ood_scores_clip``): the largest
  ``softmax(cos / T)`` over the class set, ``T = 1`` (``eval_ood_detection.py --T``) on raw cosines.
- NegLabel (XueJiang16/NegLabel, ``mmcls/models/ood/clip_ood.py`` ``ScalableClassifier.grouping``):
  ``Σ_in exp(s·cos) / (Σ_in + Σ_neg) exp(s·cos)`` with ``s = 100`` (``multi_modal.py``
  ``simple_test``; ``t = 1`` in ``custom_config/clip.py``), averaged over ``ngroup = 100`` groups:
  drop the last ``M mod groups`` negatives, permute the rest with seed 0, cut into equal groups.
- CHiLS (acmi-lab/CHILS, ``src/zshot_utils.py`` ``conf_pred``): subclass probabilities times their
  parent's probability, ``argmax`` over subclasses, mapped back to the parent; logits ``100·cos``
  (``models/clip_models.py`` ``emb_forward``).
- AUROC / FPR at 95 % TPR as both repositories' ``get_measures`` compute them
  (``fpr_and_fdr_at_recall``; AUROC equal to scikit-learn's ``roc_auc_score``), plus the threshold
  at that operating point.

Every score here is higher for more in-set; an image is ``unknown`` below the threshold.

:class:`OpenSetScorer` is what the scoring head (:meth:`gloss_gen.classify.scoring.ScoringHead.score`)
takes to add an ``ood_score`` and ``unknown`` to each image; :func:`resolve_threshold` decides which
threshold it applies (the request's, a calibration's, the setting's, or the method's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..core.errors import InputError

MCM_TEMPERATURE = 1.0
NEGLABEL_LOGIT_SCALE = 100.0
NEGLABEL_GROUPS = 100
NEGLABEL_GROUP_SEED = 0
CHILS_LOGIT_SCALE = 100.0
IN_SET_TPR = 0.95

OPEN_SET_MODES = ("off", "mcm", "neglabel")
OPEN_SET_METHODS = OPEN_SET_MODES[1:]
NEGLABEL_DEFAULT_THRESHOLD = 0.5
"""Ours, not NegLabel's (the paper reports threshold-free AUROC/FPR95): the score is the in-set
labels' share of the probability mass against one group of negatives, averaged over the groups, so
below 0.5 an image looks more like the negatives than like its class set."""
DEFAULT_THRESHOLDS: dict[str, float | None] = {"mcm": None, "neglabel": NEGLABEL_DEFAULT_THRESHOLD}
"""MCM has none: ``max softmax(cos / 1)`` over C classes starts at 1/C and, CLIP's cosines lying
within a few hundredths of each other, stays near it, so no one number fits every class set; it is
calibrated from labelled examples or given."""


class OpenSetError(InputError):
    """Open-set scoring cannot run on these inputs (no negatives, a threshold out of range...)."""

    code = "invalid_open_set"


class OpenSetThresholdRequired(InputError):
    """A method without a default threshold, asked for with no threshold and no calibration."""

    code = "open_set_threshold_required"


@dataclass(frozen=True)
class OpenSetDecision:
    """One image's open-set verdict: ``ood_score`` (higher = more in-set), ``unknown`` below the threshold."""

    ood_score: float
    unknown: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OpenSetMeasures:
    """Detection quality of a score on in-set vs out-of-set images.

    ``threshold`` is the operating point ``fpr_at_tpr`` is read at (in-set when ``score >=
    threshold``); ``tpr`` the in-set rate there, the closest to ``tpr_target`` the scores allow.
    """

    auroc: float
    fpr_at_tpr: float
    threshold: float
    tpr: float
    tpr_target: float
    in_set: int
    out_of_set: int

    def to_dict(self) -> dict:
        return asdict(self)


class OpenSetScorer:
    """An open-set method ready to score: ``method``, the ``threshold`` it applies (``None``: scores
    only, for calibration and evaluation) and, for NegLabel, the negative labels' (M, D) unit text
    embeddings. ``info`` is what a response says about it (method, threshold and where it came from).

    NegLabel's groups are laid out once, here: the negatives permuted as :func:`neglabel_group_order`
    permutes their columns, so that scoring is one matrix product and a reshape (the same numbers as
    :func:`neglabel_score`, without a gather per batch)."""

    def __init__(self, method: str, threshold: float | None = None, negatives: torch.Tensor | None = None,
                 *, threshold_source: str | None = None, info: dict | None = None,
                 _grouped: torch.Tensor | None = None) -> None:
        self.method = check_open_set_method(method)
        self.threshold = None if threshold is None else check_threshold(threshold)
        self._grouped = None
        if self.method == "neglabel":
            if negatives is None or negatives.dim() != 2 or negatives.shape[0] == 0:
                raise OpenSetError("NegLabel needs negative labels and there are none for this class set")
            negatives = negatives.float()
            groups = min(NEGLABEL_GROUPS, negatives.shape[0])
            if _grouped is None:
                order = neglabel_group_order(negatives.shape[0], groups).to(negatives.device)
                _grouped = negatives[order.reshape(-1)].reshape(groups, -1, negatives.shape[1])
            self._grouped = _grouped  # (groups, per_group, D)
        self.negatives = negatives
        self.groups = min(NEGLABEL_GROUPS, negatives.shape[0]) if negatives is not None else NEGLABEL_GROUPS
        self.threshold_source = threshold_source
        self._info = dict(info or {})

    def _copy(self, threshold, source, device=None) -> OpenSetScorer:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return t if t is None or device is None else t.to(device)

        return OpenSetScorer(self.method, threshold, move(self.negatives), threshold_source=source, info=self._info,
                             _grouped=move(self._grouped))

    def to(self, device) -> OpenSetScorer:
        return self._copy(self.threshold, self.threshold_source, device)

    def with_threshold(self, threshold: float, source: str) -> OpenSetScorer:
        return self._copy(threshold, source)

    def with_info(self, **extra) -> OpenSetScorer:
        """The same scorer (its negatives' groups shared, not laid out again) saying more in :meth:`info`."""
        copy = self._copy(self.threshold, self.threshold_source)
        copy._info.update(extra)
        return copy

    def scores(self, inset_cosine: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        """(B,) scores from the (B, C) in-set cosines and the (B, D) unit image embeddings."""
        if self.method == "mcm":
            return mcm_score(inset_cosine)
        grouped = self._grouped.to(image_emb.device)
        groups, per_group, dim = grouped.shape
        negative_cosine = (image_emb.float() @ grouped.reshape(-1, dim).T).reshape(-1, groups, per_group)
        inset_mass = torch.logsumexp(NEGLABEL_LOGIT_SCALE * inset_cosine.float(), dim=1, keepdim=True)
        negative_mass = torch.logsumexp(NEGLABEL_LOGIT_SCALE * negative_cosine, dim=2)
        return torch.sigmoid(inset_mass - negative_mass).mean(dim=1)

    def decisions(self, scores: torch.Tensor) -> list[OpenSetDecision]:
        if self.threshold is None:
            raise OpenSetError("this open-set scorer has no threshold to decide with")
        return open_set_decisions(scores, self.threshold)

    def info(self) -> dict:
        """``{method, threshold, threshold_source}`` and what the scorer was built from (negatives, calibration)."""
        return {"method": self.method, "threshold": self.threshold, "threshold_source": self.threshold_source,
                **self._info}


def check_open_set_mode(mode: str | None) -> str:
    """``off``, ``mcm`` or ``neglabel`` (any case, spaces ignored), or a one-line error."""
    value = str(mode if mode is not None else "off").strip().lower()
    if value not in OPEN_SET_MODES:
        raise OpenSetError(f"unknown open_set mode {str(mode)[:40]!r}; choose from {', '.join(OPEN_SET_MODES)}")
    return value


def check_open_set_method(method: str) -> str:
    value = check_open_set_mode(method)
    if value == "off":
        raise OpenSetError("open-set scoring needs a method: mcm or neglabel")
    return value


def resolve_threshold(method: str, requested: float | None = None, calibrated: float | None = None,
                      configured: float | None = None, where: str = "") -> tuple[float, str]:
    """(threshold, source): the request's, else the calibration's (95 % of the class set's labelled
    examples in-set), else the configured one, else the method's default. ``where`` names the class
    set in the error raised for MCM when there is none of these."""
    for value, source in ((requested, "request"), (calibrated, "calibration"), (configured, "setting"),
                          (DEFAULT_THRESHOLDS[check_open_set_method(method)], "default")):
        if value is not None:
            return check_threshold(value), source
    raise OpenSetThresholdRequired(
        f"open_set={method} has no default threshold (its score starts at 1/C for C classes){where}: give a "
        "threshold between 0 and 1, or add labelled examples of the class set to calibrate one at "
        f"{IN_SET_TPR:.0%} in-set"
    )


# --------------------------------------------------------------------------- scores


def mcm_score(cosine: torch.Tensor, temperature: float = MCM_TEMPERATURE) -> torch.Tensor:
    """(B, C) image-class cosines -> (B,) maximum concept-matching score ``max softmax(cos / T)``."""
    cosine = _batch_matrix(cosine, "cosine")
    if not temperature > 0:
        raise OpenSetError(f"the MCM temperature must be positive, got {temperature}")
    return torch.softmax(cosine / temperature, dim=1).max(dim=1).values


def neglabel_group_order(num_negatives: int, groups: int = NEGLABEL_GROUPS,
                         seed: int = NEGLABEL_GROUP_SEED) -> torch.Tensor:
    """The negatives' columns as NegLabel groups them: (groups, per_group) indices.

    The last ``num_negatives mod groups`` negatives are dropped, the rest permuted with ``seed``
    and cut into consecutive equal groups. (The authors draw the permutation on CUDA, so their
    exact order is not reproducible on a CPU; the same seed always gives the same order here.)
    """
    if groups < 1:
        raise OpenSetError(f"NegLabel needs at least one group of negatives, got groups={groups}")
    if num_negatives < groups:
        raise OpenSetError(
            f"NegLabel needs at least one negative label per group: {num_negatives} negatives for {groups} groups"
        )
    kept = num_negatives - num_negatives % groups
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(kept, generator=generator).reshape(groups, kept // groups)


def neglabel_score(inset_cosine: torch.Tensor, negative_cosine: torch.Tensor,
                   logit_scale: float = NEGLABEL_LOGIT_SCALE, groups: int = NEGLABEL_GROUPS,
                   seed: int = NEGLABEL_GROUP_SEED) -> torch.Tensor:
    """(B, C) in-set and (B, M) negative-label cosines -> (B,) NegLabel score, averaged over groups.

    Per group ``g``: ``Σ_in exp(s·cos) / (Σ_in exp(s·cos) + Σ_{neg in g} exp(s·cos))``, computed as
    ``sigmoid(logsumexp_in - logsumexp_g)`` so that ``s = 100`` cannot overflow.
    """
    inset_cosine = _batch_matrix(inset_cosine, "in-set cosine")
    negative_cosine = _batch_matrix(negative_cosine, "negative-label cosine")
    if negative_cosine.shape[1] == 0:
        raise OpenSetError("NegLabel needs negative labels and there are none for this class set")
    if negative_cosine.shape[0] != inset_cosine.shape[0]:
        raise OpenSetError(
            f"in-set and negative cosines describe different batches ({inset_cosine.shape[0]} and "
            f"{negative_cosine.shape[0]} images)"
        )
    order = neglabel_group_order(negative_cosine.shape[1], groups, seed).to(negative_cosine.device)
    grouped = (logit_scale * negative_cosine)[:, order]  # (B, groups, per_group)
    inset_mass = torch.logsumexp(logit_scale * inset_cosine, dim=1, keepdim=True)
    negative_mass = torch.logsumexp(grouped, dim=2)
    return torch.sigmoid(inset_mass - negative_mass).mean(dim=1)


# --------------------------------------------------------------------------- CHiLS


def chils_reweighted_probabilities(sub_logits: torch.Tensor, parent_logits: torch.Tensor,
                                   sub_to_parent: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """CHiLS ``conf_pred``: ``softmax(sub_logits) * softmax(parent_logits)[parent(sub)]``, (B, S)."""
    sub_logits = _batch_matrix(sub_logits, "subclass logits")
    parent_logits = _batch_matrix(parent_logits, "parent logits")
    parents = _parent_index(sub_to_parent, sub_logits.shape[1], parent_logits.shape[1])
    if sub_logits.shape[0] != parent_logits.shape[0]:
        raise OpenSetError("subclass and parent logits describe different batches")
    parent_probs = torch.softmax(parent_logits, dim=1)
    return torch.softmax(sub_logits, dim=1) * parent_probs[:, parents.to(parent_probs.device)]


def chils_predict(sub_logits: torch.Tensor, parent_logits: torch.Tensor,
                  sub_to_parent: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(parent index (B,), winning subclass index (B,)): the CHiLS prediction mapped back to parents."""
    reweighted = chils_reweighted_probabilities(sub_logits, parent_logits, sub_to_parent)
    parents = _parent_index(sub_to_parent, reweighted.shape[1], parent_logits.shape[1]).to(reweighted.device)
    best_sub = reweighted.argmax(dim=1)
    return parents[best_sub], best_sub


def chils_label_set(parent: str, subclasses: Sequence[str], qualify: bool = True) -> list[str]:
    """The subclass names CHiLS scores for ``parent``; the parent always competes as its own subclass.

    ``qualify=True`` is their cleaning of generated sets (``get_cleaned_gpt_sets``): the parent first
    when it is not listed, then each subclass, suffixed with the parent's name unless it contains it
    ("tabby" -> "tabby cat"). ``qualify=False`` is their true-hierarchy variant (``true_wsup``): the
    subclasses as given, then the parent when not listed.
    """
    if not qualify:
        return list(subclasses) + ([] if parent in subclasses else [parent])
    names = [] if parent in subclasses else [parent]
    for sub in subclasses:
        names.append(sub if parent.lower() in sub.lower() else f"{sub} {parent}")
    return names


# --------------------------------------------------------------------------- thresholds and measures


def check_threshold(threshold: float) -> float:
    """The threshold, if it can separate scores in [0, 1]; otherwise a one-line error."""
    value = float(threshold)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise OpenSetError(f"the open-set threshold must be between 0 and 1, got {threshold}")
    return value


def threshold_at_tpr(inset_scores, tpr: float = IN_SET_TPR) -> float:
    """The highest threshold that keeps at least ``tpr`` of the labelled in-set scores in-set (``>=``)."""
    if not 0.0 < tpr <= 1.0:
        raise OpenSetError(f"the in-set rate to calibrate at must be in (0, 1], got {tpr}")
    scores = _score_vector(inset_scores, "in-set")
    ranked = np.sort(scores)[::-1]
    kept = max(1, math.ceil(tpr * len(ranked) - 1e-9))
    return float(ranked[kept - 1])


def open_set_decisions(scores, threshold: float) -> list[OpenSetDecision]:
    """One decision per image: ``unknown`` when its score is below ``threshold``."""
    threshold = check_threshold(threshold)
    values = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    return [OpenSetDecision(ood_score=float(s), unknown=bool(s < threshold)) for s in values.reshape(-1)]


def open_set_measures(in_scores, out_scores, tpr: float = IN_SET_TPR) -> OpenSetMeasures:
    """AUROC and the FPR at ``tpr`` in-set rate, as MCM's and NegLabel's ``get_measures`` compute them.

    The ROC is taken at each distinct score (descending, stable); the operating point is the one whose
    in-set rate is closest to ``tpr`` (the first on a tie), so it may fall slightly below ``tpr``.
    """
    if not 0.0 < tpr <= 1.0:
        raise OpenSetError(f"the in-set rate to measure at must be in (0, 1], got {tpr}")
    positives = _score_vector(in_scores, "in-set")
    negatives = _score_vector(out_scores, "out-of-set")
    scores = np.concatenate([positives, negatives])
    is_in = np.concatenate([np.ones(len(positives), bool), np.zeros(len(negatives), bool)])
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, is_in = scores[order], is_in[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last row of each distinct score
    true_pos = np.cumsum(is_in, dtype=np.float64)[ends]
    false_pos = 1 + ends - true_pos
    recall = true_pos / true_pos[-1]
    # get_measures keeps the curve up to the first point reaching recall 1, reversed; argmin takes the
    # first of equally close points, i.e. the one with the most in-set rate (the lowest threshold).
    last = int(np.searchsorted(true_pos, true_pos[-1]))
    reversed_recall = recall[last::-1]
    cutoff = last - int(np.argmin(np.abs(reversed_recall - tpr)))
    fpr_curve = np.r_[0.0, false_pos / len(negatives)]
    tpr_curve = np.r_[0.0, recall]
    auroc = float(np.sum(np.diff(fpr_curve) * (tpr_curve[1:] + tpr_curve[:-1]) / 2.0))
    return OpenSetMeasures(
        auroc=auroc,
        fpr_at_tpr=float(false_pos[cutoff] / len(negatives)),
        threshold=float(scores[ends[cutoff]]),
        tpr=float(recall[cutoff]),
        tpr_target=tpr,
        in_set=len(positives),
        out_of_set=len(negatives),
    )


# --------------------------------------------------------------------------- input checks


def _batch_matrix(values: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(values)
    if values.dim() != 2:
        raise OpenSetError(f"{what} must be a (batch, labels) matrix, got shape {tuple(values.shape)}")
    if values.dtype in (torch.float16, torch.bfloat16) or not values.is_floating_point():
        values = values.float()
    return values


def _parent_index(sub_to_parent, num_subclasses: int, num_parents: int) -> torch.Tensor:
    parents = torch.as_tensor(sub_to_parent, dtype=torch.long).reshape(-1)
    if parents.numel() != num_subclasses:
        raise OpenSetError(f"{parents.numel()} parent indices for {num_subclasses} subclasses")
    if num_subclasses and (parents.min() < 0 or parents.max() >= num_parents):
        raise OpenSetError(f"a subclass names a parent outside the {num_parents} classes")
    return parents


def _score_vector(values, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    scores = np.asarray(values, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise OpenSetError(f"no {what} scores to work from")
    if not np.all(np.isfinite(scores)):
        raise OpenSetError(f"the {what} scores hold NaN or infinite values")
    return scores
