"""Adapter jobs: fitting an adapter from a class set's stored examples (API uploads).

One pipeline for both places an API job runs: the server process (``app.services.adapting``) and
``vgloss worker`` (``gloss_gen.queue.adapter_tasks``). The job's :class:`AdapterJobSpec` is JSON
in the job's record, so a worker on another host runs exactly what was asked.

- ``tip`` / ``tip-f``: embed the examples, fit the cache over the classifier named in the spec,
  write the adapter record and make it the class set's active adapter (every replica serves it
  from its next registry refresh).
- ``clipfit``: train ClipFit on a private fp32 copy of the base model (the copy being served is
  never touched) and write the delta to ``<data dir>/clipfit/<class set>-<hash16>.safetensors``.
  A delta changes the image tower for every class set, so it is not swapped into a running
  server: serving it is a deployment decision (``VGLOSS_PRETRAINED=BASE+DELTA``), and the job's
  result says exactly what to set. A re-run of the same fit (a worker died, or a new job for the
  same spec and examples after one failed) resumes from the last finished epoch's checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gloss_gen.adapt import ADAPTER_METHODS, AdaptError
from gloss_gen.adapt.adapter import build_adapter
from gloss_gen.adapt.clipfit import FitConfig, fit_clipfit
from gloss_gen.adapt.examples import embed_examples
from gloss_gen.adapt.tip import TipConfig
from gloss_gen.adapt.uploads import stored_examples
from gloss_gen.classify.adapter_records import put_adapter
from gloss_gen.data.classsets import ClassSet
from gloss_gen.model.clip_models import load_clip
from gloss_gen.model.deltas import delta_model_id, split_pretrained
from gloss_gen.model.model_source import ModelSource

JOB_METHODS = (*ADAPTER_METHODS, "clipfit")
CLIPFIT_DIR = "clipfit"


@dataclass(frozen=True)
class AdapterJobSpec:
    class_set: ClassSet
    method: str
    model: str  # architecture
    pretrained: str  # tip: the tag of the classifier's model; clipfit: the base weights it tunes
    classifier: str | None = None  # tip: key of the classifier the cache goes on
    shots: int = 16
    augment: int = 0  # tip: random crop/flip views averaged into each key
    epochs: int | None = None  # clipfit; None: the backbone's official count (clipfit.paper_epochs)
    lr: float = 2e-3  # clipfit

    def __post_init__(self):
        if self.method not in JOB_METHODS:
            raise AdaptError(f"unknown adapter method {self.method!r}; choose from {', '.join(JOB_METHODS)}")
        if self.shots < 1 or self.augment < 0:
            raise AdaptError("shots must be at least 1 and augment 0 or more")
        if self.method == "clipfit":
            self.fit_config()
        else:
            self.tip_config()
            if not self.classifier:
                raise AdaptError(f"a {self.method} adapter needs the classifier it goes on")

    def tip_config(self):

        return TipConfig(method=self.method)

    def fit_config(self):

        return FitConfig(shots=self.shots, epochs=self.epochs, lr=self.lr)

    def to_dict(self) -> dict:
        return {**asdict(self), "class_set": self.class_set.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> AdapterJobSpec:
        return cls(**{**data, "class_set": ClassSet.from_dict(data["class_set"])})


def fit_tip_job(spec: AdapterJobSpec, store, model, classifier, limits):
    """Fit, store and activate the cache adapter; ``(record, the job's result fields)``.

    ``model`` is the :class:`gloss_gen.model.clip_models.ClipModel` the classifier was built under.
    """

    if classifier.key != spec.classifier:
        raise AdaptError(f"the job is for classifier {spec.classifier}, not {classifier.key}")
    source = stored_examples(store, classifier.class_set)
    examples = embed_examples(source, ModelSource.of(model), store, limits, augment=spec.augment,
                              workers=1).take(spec.shots)
    record = build_adapter(classifier, examples, spec.tip_config())
    put_adapter(store, record, activate=True)
    return record, {"adapter": record.key, "notes": record.notes, "validation": record.validation}


def serving_note(settings_model: str, pretrained: str) -> str:
    return (f"A ClipFit delta changes the image tower for every class set, so it is not swapped into the "
            f"running server. To serve it, restart the servers with VGLOSS_MODEL={settings_model} "
            f"VGLOSS_PRETRAINED={pretrained} (the file must be readable there); class sets other than the "
            f"built-ins are then rebuilt under the new model id with POST /v1/class-sets.")


def fit_key(spec: AdapterJobSpec, source) -> str:
    """What one ClipFit fit is: the spec (class set, base model, shots, epochs, lr) and the stored
    examples it trains on. Two jobs with the same key train the same delta."""
    payload = json.dumps([spec.to_dict(), source.dataset.fingerprint()], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def fit_clipfit_job(spec: AdapterJobSpec, store, limits, data_dir: Path, *, device: str = "cpu",
                    cache_dir=None, on_epoch=lambda log: None, stop=None) -> dict:
    """Train ClipFit on the stored examples and write the delta; the job's result fields."""

    if split_pretrained(spec.pretrained)[1] is not None:
        raise AdaptError(f"ClipFit tunes base weights, not an adapted model ({spec.pretrained})")
    source = stored_examples(store, spec.class_set)
    # a private fp32 copy: training changes the model in place, and the shared one serves requests
    model = load_clip(spec.model, spec.pretrained, device, "fp32", cache_dir)
    folder = Path(data_dir).resolve() / CLIPFIT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # Named by what is fitted, not by the job: its checkpoint beside it lets any re-run of the same
    # fit resume (the same job's task run again, or a new job after one failed). The lock keeps
    # two runs of the same fit from training into the same files at once: the second waits.
    running = folder / f"fit-{fit_key(spec, source)}.safetensors"
    with open(running.with_name(f".{running.name}.lock"), "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = fit_clipfit(model, source, running, spec.fit_config(), limits, resume=True,
                             on_epoch=on_epoch, stop=stop)
        delta = folder / f"{spec.class_set.name}-{result.delta.hash[:16]}.safetensors"
        os.replace(running, delta)
    pretrained = f"{spec.pretrained}+{delta}"
    return result.summary(delta, pretrained) | {
        "adapted_model": delta_model_id(model.id, delta),
        "serving": serving_note(spec.model, pretrained),
    }
