"""``vgloss eval --examples``: every (method, adaptation, shots) scored on the same evaluation images.

The evaluation images are embedded once (eval's cache); the examples once, and each shot count is
a nested per-class subset of them. Zero-shot is scored once per method; ``tip`` / ``tip-f``
adapters are fitted per (method, shots) — their α, β searched on the examples only — and stored
(not activated); ``clipfit`` fits a delta per shot count on every shot (the authors' recipe), then
re-embeds the evaluation images and scores it twice: with the one prompt it was trained with
("a photo of a {}." per class name, as the authors evaluate it; the row whose method reads
``prompt '...'``), and with each method's own prompts under the adapted model (whose id carries
the delta's hash; the row's detail names the template set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.adapter import build_adapter
from gloss_gen.adapt.clipfit import FitConfig, fit_clipfit
from gloss_gen.adapt.example_overlap import find_overlap
from gloss_gen.adapt.examples import PAPER_AUGMENT, ExampleSource, embed_examples, open_examples
from gloss_gen.adapt.tip import TipConfig
from gloss_gen.classify.adapter_records import put_adapter
from gloss_gen.classify.image_embeddings import embed_images
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import Classifier, classifier_key
from gloss_gen.evaluation.metrics import Scores, score_predictions
from gloss_gen.evaluation.runner import (
    TOP_K,
    EvalConfig,
    classifier_for,
    open_evaluation_images,
    prepare_method,
    rank_classes,
)
from gloss_gen.imaging import ImageLimits
from gloss_gen.model.model_source import ModelSource

ADAPTATIONS = ("zero-shot", "tip", "tip-f", "clipfit")
DEFAULT_SHOTS = (1, 2, 4, 8, 16)


def parse_shots(text: str) -> list[int]:
    try:
        shots = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise AdaptError(f"--shots must be comma-separated whole numbers, not {text!r}") from None
    if not shots or shots[0] < 1:
        raise AdaptError(f"--shots needs numbers of at least 1, not {text!r}")
    return shots


def parse_adaptations(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [a for a in chosen if a not in ADAPTATIONS]
    if unknown or not chosen:
        raise AdaptError(f"unknown --adapt {', '.join(unknown) or text!r}; choose from {', '.join(ADAPTATIONS)}")
    return list(dict.fromkeys(chosen))


@dataclass
class AdaptOptions:
    examples: Path
    shots: list[int] = field(default_factory=lambda: list(DEFAULT_SHOTS))
    adaptations: list[str] = field(default_factory=lambda: ["zero-shot", "tip", "tip-f"])
    layout: str = "auto"
    augment: int = PAPER_AUGMENT  # views averaged into each cache key (0: the plain embeddings)
    reuse_views: bool = False  # tip-f trains on the cache's views in turn, not a fresh view per epoch
    fit_epochs: int | None = None
    delta_dir: Path = Path("clipfit-deltas")
    allow_overlap: bool = False  # leave out examples that are evaluation images instead of refusing
    seed: int = 0


@dataclass
class Row:
    method: str  # the --methods label
    adaptation: str
    shots: int  # 0 for zero-shot
    scores: Scores
    detail: str = ""  # adapter key / delta file
    notes: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    data: Path
    examples: Path
    model_id: str
    class_set_name: str
    num_classes: int
    num_images: int
    examples_per_class: list[int]
    rows: list[Row]
    notes: list[str]


def compare(
    config: EvalConfig,
    options: AdaptOptions,
    models: ModelSource,
    store,
    notify: Callable[[str], None] = lambda message: None,
) -> Comparison:
    """Score every combination; all inputs are checked before any image is encoded."""

    dataset, truth = open_evaluation_images(config)
    source = open_examples(options.examples, config.class_set, options.layout)
    if source.dataset.fingerprint() == dataset.fingerprint():
        raise AdaptError("--examples are the evaluation images themselves; give a separate folder")
    source, overlap_note = _without_evaluation_images(source, dataset, options.allow_overlap)
    methods = [prepare_method(spec, config.class_set) for spec in config.methods]
    limits = ImageLimits.from_settings(config)
    notes: list[str] = []
    if overlap_note:
        notify(f"warning: {overlap_note}")
        notes.append(overlap_note)

    def scored(head: ScoringHead, vectors: np.ndarray, readable_truth: np.ndarray) -> Scores:
        ranked = rank_classes(head, vectors, config.scoring, TOP_K)
        return score_predictions(ranked, readable_truth, config.class_set, config.max_confusions)

    def embedded_eval(model_source: ModelSource):
        emb = embed_images(dataset, model_source, store, limits, batch_size=config.batch_size,
                           workers=config.workers, progress=config.progress)
        readable = np.array([i not in emb.unreadable for i in range(len(dataset))], dtype=bool)
        return emb.vectors[readable], truth[readable]

    vectors, readable_truth = embedded_eval(models)
    fresh = TipConfig().epochs if "tip-f" in options.adaptations and not options.reuse_views else 0
    examples = embed_examples(source, models, store, limits, augment=options.augment, train_views=fresh,
                              seed=options.seed,
                              batch_size=config.batch_size, workers=config.workers, progress=config.progress)
    for note in examples.notes:
        notify(f"examples: {note}")
    notes.extend(examples.notes)
    rows: list[Row] = []
    for method in methods:
        classifier, _ = classifier_for(method, models, store, config.template_set, config.progress)
        head = ScoringHead(classifier, config.scoring_device)
        if "zero-shot" in options.adaptations:
            rows.append(Row(method.spec.label, "zero-shot", 0, scored(head, vectors, readable_truth)))
        for adaptation in ("tip", "tip-f"):
            if adaptation not in options.adaptations:
                continue
            for shots in options.shots:
                chosen = examples.take(shots, options.seed)
                record = build_adapter(classifier, chosen, TipConfig(method=adaptation, seed=options.seed))
                if store is not None:
                    put_adapter(store, record, activate=False)
                head.attach(record)
                rows.append(Row(method.spec.label, adaptation, shots, scored(head, vectors, readable_truth),
                                f"adapter {record.key} (alpha {record.alpha:.3g}, beta {record.beta:.3g})",
                                chosen.notes[len(examples.notes):]))
                head.attach(None)
    if "clipfit" in options.adaptations:
        rows.extend(_clipfit_rows(config, options, models, store, source, methods, limits, embedded_eval,
                                  scored, notify))
    method_order = {m.spec.label: i for i, m in enumerate(methods)}
    rows.sort(key=lambda r: (method_order.get(r.method, len(methods)), ADAPTATIONS.index(r.adaptation), r.shots))
    return Comparison(config.data, options.examples, models.id, config.class_set.name, len(config.class_set),
                      len(vectors), source.counts().tolist(), rows, notes)


def _without_evaluation_images(source: ExampleSource, dataset, allow: bool) -> tuple[ExampleSource, str]:
    """The examples less those whose content is an evaluation image (refused unless ``allow``)."""
    overlap = find_overlap(source.dataset, dataset)
    if not overlap:
        return source, ""
    if not allow:
        raise AdaptError(f"--examples: {overlap.describe()}; give examples that are not evaluation images, or "
                         "--allow-overlap to leave these out")
    keep = np.setdiff1d(np.arange(len(source.labels)), np.asarray(overlap.rows, dtype=np.int64))
    if len(keep) == 0:
        raise AdaptError(f"--examples: every example is an evaluation image ({overlap.describe()})")
    trimmed = ExampleSource(source.dataset.subset(keep.tolist()), source.labels[keep], source.class_set)
    return trimmed, f"{overlap.describe()}; left out (--allow-overlap)"


def _clipfit_rows(config, options, models, store, source, methods, limits, embedded_eval, scored, notify):

    rows = []
    for shots in options.shots:
        fit_config = FitConfig(shots=shots, seed=options.seed, epochs=options.fit_epochs or None)
        fit_config = fit_config.for_model(models.get().model_name)
        name = f"clipfit-{models.id.replace('/', '_')}-{config.class_set.name}-{shots}shot.safetensors"
        out = options.delta_dir / name
        notify(f"clipfit: fitting {shots}-shot delta ({fit_config.epochs} epochs) -> {out}")
        result = fit_clipfit(models.get(), source, out, fit_config, limits, progress=config.progress,
                             notify=lambda m: notify(f"clipfit {shots}-shot: {m}"))
        adapted = ModelSource(replace(models.spec, pretrained=f"{models.spec.pretrained}+{out}"))
        vectors, readable_truth = embedded_eval(adapted)
        trained = trained_prompt_classifier(adapted.get(), config.class_set, fit_config.template)
        head = ScoringHead(trained, config.scoring_device)
        kept = f"epoch {result.best_epoch} of {len(result.history)} kept ({result.kept})"
        rows.append(Row(f"prompt '{fit_config.template}'", "clipfit", shots, scored(head, vectors, readable_truth),
                        f"delta {out} ({adapted.id}); scored with the prompt it was trained with; {kept}",
                        result.notes))
        template_set = config.template_set or config.class_set.templates
        for method in methods:
            classifier, _ = classifier_for(method, adapted, store, config.template_set, config.progress)
            head = ScoringHead(classifier, config.scoring_device)
            rows.append(Row(method.spec.label, "clipfit", shots, scored(head, vectors, readable_truth),
                            f"delta {out} ({adapted.id}); scored with {method.spec.label}'s prompts (template "
                            f"set {template_set}), not the training prompt; {kept}", result.notes))
    return rows


def trained_prompt_classifier(model, class_set, template: str) -> Classifier:
    """A classifier of one prompt per class, ``template`` over the class names: ClipFit's training
    prompts, which its authors also score with (CUSTOM_TEMPLATES in trainers/ClipFit.py)."""
    prompts = [template.format(name) for name in class_set.names]
    vectors = model.encode_text(prompts)
    return Classifier(
        key=classifier_key(model.id, "clipfit-trained-prompt", "templates", template), model_id=model.id,
        class_set=class_set, descriptions_id="clipfit-trained-prompt", method="classname",
        prompt_style="templates", template_set=template, prototypes=vectors, evidence=vectors.copy(),
        offsets=np.arange(len(prompts) + 1), evidence_texts=prompts, logit_scale=model.logit_scale,
        logit_bias=model.logit_bias,
    )
