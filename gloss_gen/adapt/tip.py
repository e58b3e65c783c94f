"""Tip-Adapter (Zhang et al. 2022): a key-value cache of few-shot image embeddings over CLIP.

With ``f`` a unit image embedding, ``W`` the class prototypes, ``K`` the cache keys (one unit
embedding per labelled example) and ``L`` their one-hot labels:

    logits = logit_scale · f·Wᵀ + α · exp(−β (1 − f·Kᵀ)) · L

Tip-Adapter-F makes ``K`` trainable for a few epochs (AdamW, cosine schedule, cross-entropy on
the examples), as the official code does. ``α`` (residual ratio) and ``β`` (sharpness) are
searched on examples held out from the cache, stratified k-fold — never on evaluation images
(the official ImageNet script searches on test; vgloss does not). With a single shot per class
there is nothing to hold out and the paper's values are used. The search scores the official
grid of the class set's config (:data:`PAPER_CONFIGS`; ImageNet's — β in [0.1, 7), 200 steps;
α in [0.1, 3), 20 steps — for a set the authors have no config for) on at most
``max_search_rows`` held-out examples (a fixed random sample when there are more), so its cost
stays bounded at 1000 classes. Tip-Adapter-F trains on one fresh augmented view per epoch when
the examples carry them (``Examples.train_views``), as the official ``train_loader_F``.

The official code scores with a fixed CLIP logit scale of 100; here the classifier's own scale
is used, and the α grid and default are scaled by ``logit_scale / 100`` so that they mean the
same balance between the two terms (for pretrained CLIP, whose scale is 100, they are the paper's).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from gloss_gen.adapt import ADAPTER_METHODS, AdaptError
from gloss_gen.adapt.examples import Examples, holdout_folds
from gloss_gen.classify.scoring import cache_sums

METHODS = ADAPTER_METHODS

@dataclass(frozen=True)
class PaperConfig:
    """A dataset's search grid and initial α of gaopengcuhk/Tip-Adapter ``configs/<file>.yaml``."""

    file: str
    beta_scale: float  # search_scale[0]: β searched in [0.1, beta_scale)
    alpha_scale: float  # search_scale[1]
    init_alpha: float  # init_beta is 1 in every config


# search_scale and init_alpha of every config; search_step is [200, 20] in all of them
PAPER_CONFIGS = {
    name: PaperConfig(f"configs/{file}.yaml", beta, alpha, init)
    for name, file, beta, alpha, init in [
        ("imagenet1k", "imagenet", 7, 3, 1.17),
        ("caltech101", "caltech101", 12, 5, 3),
        ("dtd", "dtd", 13, 13, 2),
        ("eurosat", "eurosat", 12, 10, 2),
        ("fgvc_aircraft", "fgvc", 30, 30, 5),
        ("food101", "food101", 10, 10, 1.17),
        ("oxford_flowers", "oxford_flowers", 50, 50, 10),
        ("oxford_pets", "oxford_pets", 7, 3, 1.17),
        ("stanford_cars", "stanford_cars", 20, 10, 3),
        ("sun397", "sun397", 12, 10, 1.17),
        ("ucf101", "ucf101", 7, 3, 3),
    ]
}
IMAGENET_CONFIG = PAPER_CONFIGS["imagenet1k"]


def paper_config(class_set_name: str) -> PaperConfig:
    """The authors' config for a class set of that name; ImageNet's for any other set."""
    return PAPER_CONFIGS.get(class_set_name, IMAGENET_CONFIG)


PAPER_ALPHA = IMAGENET_CONFIG.init_alpha  # configs/imagenet.yaml init_alpha
PAPER_BETA = 1.0  # init_beta
ALPHA_RANGE = (0.1, IMAGENET_CONFIG.alpha_scale)  # search_scale[1], from 0.1 as search_hp does
BETA_RANGE = (0.1, IMAGENET_CONFIG.beta_scale)  # search_scale[0]
REFERENCE_LOGIT_SCALE = 100.0
MAX_FOLDS = 4
GRID_CHUNK_ELEMENTS = 1 << 24  # (alphas x rows x classes) scored at once in the search


@dataclass(frozen=True)
class TipConfig:
    """Hyper-parameters of one adaptation; all of them go into the adapter's key."""

    method: str = "tip"
    alpha: float | None = None  # None: searched on held-out examples
    beta: float | None = None
    folds: int = 0  # 0: min(shots, 4); 1: no search (paper's values)
    beta_steps: int = 200
    alpha_steps: int = 20
    epochs: int = 20  # Tip-Adapter-F
    lr: float = 1e-3
    batch_size: int = 256
    max_search_rows: int = 2048  # held-out examples scored in the search, over all folds
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise AdaptError(f"unknown adapter method {self.method!r}; choose from {', '.join(METHODS)}")
        for name in ("beta_steps", "alpha_steps", "epochs", "batch_size", "max_search_rows"):
            if getattr(self, name) < 1:
                raise AdaptError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.folds < 0:
            raise AdaptError(f"--folds must be 0 (auto) or more, not {self.folds}")

    def params(self) -> dict:
        return asdict(self)


def search_grid(
    logit_scale: float, beta_steps: int, alpha_steps: int, paper: PaperConfig = IMAGENET_CONFIG
) -> tuple[np.ndarray, np.ndarray]:
    """The official search_hp grid: i·(scale − 0.1)/steps + 0.1; α scaled to the logit scale."""
    betas = np.array([i * (paper.beta_scale - 0.1) / beta_steps + 0.1 for i in range(beta_steps)])
    alphas = np.array([i * (paper.alpha_scale - 0.1) / alpha_steps + 0.1 for i in range(alpha_steps)])
    return betas, alphas * logit_scale / REFERENCE_LOGIT_SCALE


def grid_hits(clip_logits, affinity, cache_labels, truth, num_classes, betas, alphas) -> np.ndarray:
    """(len(betas), len(alphas)) correct top-1 counts of clip + α·cache over the held-out rows."""
    hits = np.zeros((len(betas), len(alphas)), dtype=np.int64)
    alpha_t = torch.as_tensor(alphas, dtype=torch.float32).view(-1, 1, 1)
    rows = max(1, GRID_CHUNK_ELEMENTS // max(1, len(alphas) * num_classes))
    for b, beta in enumerate(betas):
        cache = cache_sums(affinity, cache_labels, num_classes, float(beta))
        for start in range(0, len(truth), rows):
            block = slice(start, start + rows)
            predicted = (clip_logits[block].unsqueeze(0) + alpha_t * cache[block].unsqueeze(0)).argmax(dim=-1)
            hits[b] += (predicted == truth[block].unsqueeze(0)).sum(dim=1).numpy()
    return hits


def train_keys(
    keys: torch.Tensor,
    labels: torch.Tensor,
    features: list[torch.Tensor],
    targets: torch.Tensor,
    prototypes: torch.Tensor,
    logit_scale: float,
    alpha: float,
    beta: float,
    config: TipConfig,
    progress: bool = False,
) -> torch.Tensor:
    """Tip-Adapter-F: fine-tune the cache keys by cross-entropy on the training features.

    ``features`` holds one (M, D) tensor per view (a fresh view per epoch, the cache's views, or
    just the embeddings); epoch ``e`` trains on view ``e mod len(features)``. AdamW(lr, eps=1e-4) with a cosine schedule
    over every step, as the official run_tip_adapter_F.
    """
    from tqdm.auto import tqdm

    weight = torch.nn.Parameter(keys.clone())
    optimizer = torch.optim.AdamW([weight], lr=config.lr, eps=1e-4)
    per_epoch = math.ceil(len(targets) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    num_classes = prototypes.shape[0]
    bar = tqdm(range(config.epochs), desc="tip-f epochs", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        view = features[epoch % len(features)]
        order = torch.randperm(len(targets), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            f = view[rows]
            logits = logit_scale * f @ prototypes.T + alpha * cache_sums(f @ weight.T, labels, num_classes, beta)
            loss = F.cross_entropy(logits, targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(rows)
        bar.set_postfix(loss=f"{total / len(targets):.4f}")
    return weight.detach()


@dataclass
class Fitted:
    """What fitting produced: keys and (α, β), and the held-out evidence behind the choice."""

    keys: np.ndarray
    alpha: float
    beta: float
    folds: int
    held_out: int  # examples scored in the search (0: no search)
    zero_shot_correct: int
    adapted_correct: int
    notes: list[str] = field(default_factory=list)
    paper_config: str = IMAGENET_CONFIG.file  # the authors' config whose grid and initial α were used


def fit_cache(
    examples: Examples, prototypes: np.ndarray, logit_scale: float, config: TipConfig, progress: bool = False
) -> Fitted:
    """Keys (trained for tip-f) and (α, β) for ``examples`` over ``prototypes`` (C, D)."""
    if len(examples) == 0:
        raise AdaptError("no readable examples: nothing to build a cache from")
    num_classes = len(examples.class_set)
    W = torch.as_tensor(prototypes, dtype=torch.float32)
    vectors = torch.as_tensor(examples.vectors, dtype=torch.float32)
    keys = torch.as_tensor(examples.keys, dtype=torch.float32)
    views = [torch.as_tensor(v, dtype=torch.float32) for v in examples.training_features()]
    labels = torch.as_tensor(examples.labels, dtype=torch.int64)
    paper = paper_config(examples.class_set.name)
    init_alpha = paper.init_alpha * logit_scale / REFERENCE_LOGIT_SCALE
    notes = []

    def keys_for(rows: torch.Tensor) -> torch.Tensor:
        if config.method == "tip":
            return keys[rows]
        return train_keys(
            keys[rows], labels[rows], [v[rows] for v in views], labels[rows], W, logit_scale,
            init_alpha, PAPER_BETA, config, progress,
        )

    counts = examples.counts()
    max_shots = int(counts.max())
    folds = config.folds or min(max_shots, MAX_FOLDS)
    searched = config.alpha is None or config.beta is None
    final_keys = keys_for(torch.arange(len(labels)))
    if not searched or folds < 2:
        if searched:
            notes.append("one example per class: nothing to hold out, using the paper's alpha and beta")
        alpha = config.alpha if config.alpha is not None else init_alpha
        beta = config.beta if config.beta is not None else PAPER_BETA
        return Fitted(final_keys.numpy(), float(alpha), float(beta), 1, 0, 0, 0, notes, paper.file)

    betas, alphas = search_grid(logit_scale, config.beta_steps, config.alpha_steps, paper)
    if config.beta is not None:
        betas = np.array([config.beta])
    if config.alpha is not None:
        alphas = np.array([config.alpha])
    assignment = torch.as_tensor(holdout_folds(examples.labels, num_classes, folds, config.seed))
    hits = np.zeros((len(betas), len(alphas)), dtype=np.int64)
    zero_shot = held_out = 0
    per_fold = math.ceil(config.max_search_rows / folds)
    generator = torch.Generator().manual_seed(config.seed)
    for fold in range(folds):
        val = torch.nonzero(assignment == fold).flatten()
        train = torch.nonzero(assignment != fold).flatten()
        if len(val) > per_fold:  # a fixed random sample keeps the search's cost bounded
            val = val[torch.randperm(len(val), generator=generator)[:per_fold]].sort().values
        if len(val) == 0 or len(train) == 0:
            continue
        fold_keys = keys_for(train)
        f = vectors[val]
        clip_logits = logit_scale * f @ W.T
        zero_shot += int((clip_logits.argmax(-1) == labels[val]).sum())
        held_out += len(val)
        hits += grid_hits(clip_logits, f @ fold_keys.T, labels[train], labels[val], num_classes, betas, alphas)
    best = np.unravel_index(int(np.argmax(hits)), hits.shape)  # first best, as search_hp's strict ">"
    return Fitted(
        final_keys.numpy(), float(alphas[best[1]]), float(betas[best[0]]), folds, held_out,
        zero_shot, int(hits[best]), notes, paper.file,
    )
