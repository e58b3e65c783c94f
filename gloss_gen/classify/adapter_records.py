"""Adapter records: a fitted cache (keys, labels, α, β) with everything needed to trust it.

Keyed by a content hash of (format, classifier key, example-set hash, method, hyper-parameters),
stored as safetensors with a JSON header (never pickle) under ``{ns}:adapter:{key}``; the one a
class set serves is named by ``{ns}:active-adapter:{model_id}:{class_set}``. A record is written
whole in one ``set`` and only then activated, so a failed fit leaves nothing behind.

A record is sealed like a classifier (``vgloss_sha256`` over its header and arrays, see
:mod:`gloss_gen.data.integrity`) and checked on load: bytes that do not parse, do not match their
checksum, or disagree with themselves (labels out of range, rows and labels of different lengths,
non-finite numbers) raise :class:`AdapterRecordDamagedError` in one line.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from gloss_gen.core.errors import CorruptDataError
from gloss_gen.data.classifier import read_safetensors_metadata
from gloss_gen.data.descriptions import utc_now
from gloss_gen.data.integrity import CHECKSUM_FIELD, classifier_digest

FORMAT_VERSION = 1
RECORD_KIND = "adapter"
ACTIVE_KIND = "active-adapter"


class AdapterRecordDamagedError(CorruptDataError):
    """Adapter bytes (or an active-adapter pointer) that cannot be trusted as what they claim."""

    code = "adapter_corrupt"


def adapter_key(classifier_key: str, example_hash: str, params: dict) -> str:
    payload = json.dumps([FORMAT_VERSION, classifier_key, example_hash, params], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class AdapterRecord:
    key: str
    method: str
    classifier_key: str
    model_id: str
    class_set: str
    class_ids: list[str]
    example_hash: str
    params: dict
    alpha: float
    beta: float
    keys: np.ndarray  # (N, D) float32 unit rows
    labels: np.ndarray  # (N,) index into class_ids
    names: list[str]  # example image names, for explain
    validation: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=utc_now)

    def header(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "key": self.key,
            "method": self.method,
            "classifier_key": self.classifier_key,
            "model_id": self.model_id,
            "class_set": self.class_set,
            "class_ids": self.class_ids,
            "example_hash": self.example_hash,
            "params": self.params,
            "alpha": self.alpha,
            "beta": self.beta,
            "names": self.names,
            "validation": self.validation,
            "notes": self.notes,
            "created_at": self.created_at,
        }

    def summary(self) -> dict:
        counts = np.bincount(self.labels, minlength=len(self.class_ids))
        return {
            "key": self.key,
            "method": self.method,
            "classifier_key": self.classifier_key,
            "examples": int(len(self.labels)),
            "classes_with_examples": int((counts > 0).sum()),
            "alpha": self.alpha,
            "beta": self.beta,
            "validation": self.validation,
            "created_at": self.created_at,
        }

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        tensors = {
            "keys": np.ascontiguousarray(self.keys, dtype="<f4"),
            "labels": np.ascontiguousarray(self.labels, dtype="<i8"),
        }
        header = json.dumps(self.header(), ensure_ascii=False)
        return save(tensors, metadata={"vgloss-adapter": header, CHECKSUM_FIELD: classifier_digest(header, tensors)})

    @classmethod
    def from_bytes(cls, data: bytes) -> AdapterRecord:
        try:
            record = cls._parse(data)
        except AdapterRecordDamagedError:
            raise
        except Exception as exc:  # whatever a damaged record makes the parser raise, in one line
            raise AdapterRecordDamagedError(
                f"the adapter record cannot be read: {type(exc).__name__}: {str(exc)[:200]}") from None
        record._check()
        return record

    @classmethod
    def _parse(cls, data: bytes) -> AdapterRecord:
        from safetensors.numpy import load

        metadata = read_safetensors_metadata(data)
        header = metadata.get("vgloss-adapter")
        if header is None:
            raise AdapterRecordDamagedError("not a vgloss adapter (no 'vgloss-adapter' metadata)")
        meta = json.loads(header)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise AdapterRecordDamagedError(f"the adapter record's format is not {FORMAT_VERSION}")
        arrays = load(data)
        expected = metadata.get(CHECKSUM_FIELD)  # records written before the checksum have none
        if expected is not None and classifier_digest(header, arrays) != expected:
            raise AdapterRecordDamagedError(
                f"adapter {meta.get('key')} does not match its checksum: its header or arrays were changed")
        return cls(
            key=meta["key"],
            method=meta["method"],
            classifier_key=meta["classifier_key"],
            model_id=meta["model_id"],
            class_set=meta["class_set"],
            class_ids=list(meta["class_ids"]),
            example_hash=meta["example_hash"],
            params=dict(meta["params"]),
            alpha=float(meta["alpha"]),
            beta=float(meta["beta"]),
            keys=arrays["keys"].astype(np.float32),
            labels=arrays["labels"].astype(np.int64),
            names=list(meta["names"]),
            validation=dict(meta.get("validation") or {}),
            notes=list(meta.get("notes") or []),
            created_at=meta.get("created_at", ""),
        )

    def _check(self) -> None:
        def damaged(why: str) -> AdapterRecordDamagedError:
            return AdapterRecordDamagedError(f"adapter {self.key} is damaged: {why}")

        if self.keys.ndim != 2 or self.labels.ndim != 1 or len(self.keys) != len(self.labels):
            raise damaged(f"{self.keys.shape} keys do not match {self.labels.shape} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_ids)):
            raise damaged(f"labels outside the {len(self.class_ids)} classes")
        if len(self.names) not in (0, len(self.labels)):
            raise damaged(f"{len(self.names)} example names for {len(self.labels)} examples")
        if not (np.isfinite(self.keys).all() and math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise damaged("non-finite keys, alpha or beta")


def put_adapter(store, record: AdapterRecord, activate: bool = True) -> None:
    store.put_bytes(RECORD_KIND, record.key, record.to_bytes())
    if activate:
        set_active_adapter(store, record.model_id, record.class_set, record.key)


def get_adapter(store, key: str) -> AdapterRecord | None:
    raw = store.get_bytes(RECORD_KIND, key)
    return None if raw is None else AdapterRecord.from_bytes(raw)


def set_active_adapter(store, model_id: str, class_set: str, key: str | None) -> None:
    """Make ``key`` the adapter served for the class set (``None``: serve zero-shot)."""
    store.set_pointer(ACTIVE_KIND, model_id, class_set, key)


def get_active_adapter(store, model_id: str, class_set: str, classifier_key: str | None = None):
    """The active adapter of a class set, if any (and if given, only one fitted on that classifier)."""
    key = store.get_pointer(ACTIVE_KIND, model_id, class_set, lambda: AdapterRecordDamagedError(
        f"the active-adapter pointer of class set {class_set} is damaged"))
    if key is None:
        return None
    record = get_adapter(store, key)
    if record is None or (classifier_key is not None and record.classifier_key != classifier_key):
        return None
    return record
