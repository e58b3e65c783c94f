"""The bulk-labelling job behind ``vgloss label`` and :meth:`ZeroShotClassifier.label`.

:func:`run_label_job` lists the sources (:mod:`.sources`), plans the shards and opens the output
folder (:mod:`.shards`: manifest, resume, refusal of other settings), then labels the shards no
earlier run wrote: in this process (``engine="local"``: decoding in a thread pool beside the
model) or on Ray (``engine="ray"``, :mod:`.ray_engine`), with the same shard function
(:class:`~.shard_labeller.ShardLabeller`) either way.

The caller brings the model and the classifier (and the adapter, if any) exactly as it would
classify with them, so labels here equal ``vgloss classify``'s / ``ZeroShotClassifier.classify``'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gloss_gen.core.errors import InputError
from gloss_gen.data.classifier import Classifier
from gloss_gen.imaging import ImageLimits
from gloss_gen.labelling.label_options import ENGINES, LabelOptions
from gloss_gen.labelling.ray_engine import run_shards_on_ray
from gloss_gen.labelling.shard_labeller import ShardLabeller, ShardOutcome
from gloss_gen.labelling.shards import PART_PATTERN, build_manifest, open_output, output_lock, plan_shards
from gloss_gen.labelling.sources import list_sources
from gloss_gen.model.clip_models import ClipModel


@dataclass
class LabelSummary:
    """What a run did. ``labelled``, ``errors`` and ``seconds`` count this run only."""

    out: Path
    engine: str
    images: int
    shards: int
    shards_done_before: int
    labelled: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time over the run (decode threads included; not Ray's actors)

    @property
    def images_per_s(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"out": str(self.out), "engine": self.engine, "images": self.images, "shards": self.shards,
                "shards_done_before": self.shards_done_before, "labelled": self.labelled,
                "errors": dict(sorted(self.errors.items())), "seconds": round(self.seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3), "images_per_s": round(self.images_per_s, 2)}

    def line(self) -> str:
        if self.shards_done_before == self.shards:
            return f"all {self.shards} shards ({self.images} images) were already in {self.out}: nothing to do"
        before = (f" ({self.shards_done_before} of {self.shards} parts were there already)"
                  if self.shards_done_before else "")
        errors = sum(self.errors.values())
        codes = ", ".join(f"{code} {count}" for code, count in sorted(self.errors.items()))
        return (f"labelled {self.labelled} images into {self.shards - self.shards_done_before} parts in "
                f"{self.seconds:.1f}s ({self.images_per_s:.1f} images/s){before}; "
                f"{errors} unreadable{f' ({codes})' if codes else ''}; output: {self.out}")


def deciding_settings(model_id: str, classifier: Classifier, adapter, options: LabelOptions, open_set=None) -> dict:
    return {
        "open_set": None if open_set is None else {"method": open_set.method, "threshold": open_set.threshold},
        "class_set": classifier.class_set.name,
        "classifier_key": classifier.key,
        "model_id": model_id,
        "adapter_key": adapter.key if adapter is not None else None,
        "top_k": options.top_k,
        "embeddings": options.embedding_dtype,
        "shard_size": options.shard_size,
    }


def run_label_job(
    sources: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: ClipModel,
    classifier: Classifier,
    settings,
    options: LabelOptions = LabelOptions(),
    adapter=None,
    engine: str = "local",
    ray_address: str | None = None,
    open_set=None,
    on_shard_written: Callable[[int, Path], None] | None = None,
) -> LabelSummary:
    """Label every image ``sources`` name into ``out`` (Parquet parts and ``_manifest.json``).

    ``settings`` (a :class:`gloss_gen.core.config.Settings`) gives the image limits, the batch
    size and decode threads when ``options`` leave them unset, and, with Ray, the model each actor
    loads. ``open_set`` (an :class:`gloss_gen.classify.open_set.OpenSetScorer` with its threshold)
    adds ``ood_score`` and ``unknown`` columns. ``on_shard_written(shard_id, path)`` is called
    after each part is in place.
    """
    options.check()
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    given = [os.fspath(source) for source in sources]
    out = Path(out)
    items = list_sources(given)
    shards = plan_shards(items, options.shard_size)
    recorded = {"model": settings.model, "pretrained": settings.pretrained, "device": str(model.device),
                "precision": model.precision, "backend": settings.backend,
                "method": classifier.method, "classes": classifier.num_classes, "engine": engine}
    manifest = build_manifest(given, items, shards, deciding_settings(model.id, classifier, adapter, options, open_set), recorded)
    batch_size = options.batch_size or settings.max_batch
    with output_lock(out):
        _, done = open_output(out, manifest)
        pending = [shard for shard in shards if shard.id not in done]
        summary = LabelSummary(out, engine, len(items), len(shards), len(done))
        if not pending:
            return summary
        from tqdm.auto import tqdm

        started, cpu_started = time.perf_counter(), time.process_time()
        with tqdm(total=len(items), initial=len(items) - sum(len(s.items) for s in pending), unit="img",
                  desc="labelling", disable=not options.progress, smoothing=0.05, dynamic_ncols=True) as bar:

            def count(outcome_rows: int, errors: dict[str, int], shard_id: int) -> None:
                summary.labelled += outcome_rows
                for code, number in errors.items():
                    summary.errors[code] = summary.errors.get(code, 0) + number
                summary.seconds = time.perf_counter() - started
                if on_shard_written is not None:
                    on_shard_written(shard_id, out / PART_PATTERN.format(shard_id))

            if engine == "local":
                threads = options.decode_threads or settings.decode_threads or max(1, os.cpu_count() or 1)
                labeller = ShardLabeller(model, classifier, ImageLimits.from_settings(settings), options, adapter,
                                         batch_size=batch_size, decode_threads=threads, open_set=open_set)
                outcome: ShardOutcome
                for outcome in labeller.label_shards(pending, out, on_images=bar.update):
                    count(outcome.rows, outcome.errors, outcome.shard.id)
            else:
                for result in run_shards_on_ray(pending, out, settings=settings, classifier=classifier,
                                                adapter=adapter, options=options, batch_size=batch_size,
                                                address=ray_address, open_set=open_set):
                    bar.update(result["rows"])
                    count(result["rows"], result["errors"], result["shard"])
        summary.seconds = time.perf_counter() - started
        summary.cpu_seconds = time.process_time() - cpu_started
    return summary
