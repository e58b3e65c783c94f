"""The store: Redis when ``VGLOSS_REDIS_URL`` is set, an embedded directory otherwise.

Both backends (:mod:`gloss_gen.data.store_backends`) implement the same small key-value interface
over bytes (:class:`KVBackend`);
:class:`Store` adds the typed operations on top. Keys are namespaced ``vgloss:v1:`` (the
version is the layout version). Values are JSON or safetensors bytes — never pickle.

Layout (``{ns}`` = ``vgloss:v1`` by default):

- ``{ns}:classifier:{key}`` — safetensors classifier (see :mod:`gloss_gen.data.classifier`), sealed with a
  checksum and verified on every load (:mod:`gloss_gen.data.integrity`)
- ``{ns}:active:{model_id}:{class_set}`` — the classifier key serving that class set
- ``{ns}:classset:{name}`` — class set JSON
- ``{ns}:descriptions:{id}`` — description set JSONL bytes
- ``{ns}:job:{id}`` — job record JSON (:class:`gloss_gen.data.job_records.JobRecord`)
- ``{ns}:qjob:{id}:spec`` — what a queued job does (class set, method, options, model, ``out``)
- ``{ns}:qjob:{id}:records`` — a queued job's results, ``class_id`` → description record JSON (a
  Redis hash; a folder of files in the directory store)
- ``{ns}:array:{kind}:{key}`` — cached arrays (safetensors), e.g. image embeddings for eval
- ``{ns}:adapter:{key}``, ``{ns}:active-adapter:{model_id}:{class_set}`` — few-shot adapters
  (see :mod:`gloss_gen.classify.adapter_records`)
- ``{ns}:negatives:{key}`` — NegLabel's negative labels of a classifier (safetensors, see
  :mod:`gloss_gen.classify.negative_embeddings`)
- ``{ns}:open-set-calibration:{key}`` — an open-set threshold calibrated on a class set's examples
  (JSON, see :mod:`gloss_gen.adapt.open_set_calibration`)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from gloss_gen.core.config import get_settings
from gloss_gen.data.classifier import Classifier, ClassifierUnreadableError, read_safetensors_metadata
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionRecord, utc_now
from gloss_gen.data.integrity import ClassifierCorruptError, seal_classifier, verify_classifier
from gloss_gen.data.job_records import JobRecord
from gloss_gen.data.store_backends import (  # re-exported: the store's public names live here
    DirectoryBackend,
    InvalidStoreKey,
    KVBackend,
    RedisBackend,
    StoreError,
    decode_key_part,
    encode_key_part,
)

__all__ = [
    "DEFAULT_NAMESPACE", "DirectoryBackend", "InvalidStoreKey", "KVBackend", "LAYOUT_VERSION", "RedisBackend",
    "Store", "StoreError", "decode_key_part", "encode_key_part", "open_store",
]

LAYOUT_VERSION = "v1"
DEFAULT_NAMESPACE = f"vgloss:{LAYOUT_VERSION}"


class Store:
    """Typed operations over a :class:`KVBackend`."""

    def __init__(self, backend: KVBackend, namespace: str = DEFAULT_NAMESPACE):
        self.backend = backend
        self.ns = namespace

    def _k(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    # json helpers
    def _get_json(self, *parts: str):
        raw = self.backend.get(self._k(*parts))
        return None if raw is None else json.loads(raw)

    def _set_json(self, value, *parts: str) -> None:
        self.backend.set(self._k(*parts), json.dumps(value, ensure_ascii=False).encode())

    # inference-path probe decisions (gloss_gen.inference.select), shared by replicas and workers
    def get_probe_record(self, key: str) -> dict | None:
        try:
            value = self._get_json("probe", key)
        except ValueError:  # not JSON: a damaged entry is re-measured, never trusted
            return None
        return value if isinstance(value, dict) else None

    def put_probe_record(self, key: str, record: dict) -> None:
        self._set_json(record, "probe", key)

    # classifiers
    def put_classifier(self, clf: Classifier, activate: bool = True) -> None:
        self.backend.set(self._k("classifier", clf.key), seal_classifier(clf))
        self.put_class_set(clf.class_set)
        if activate:
            self.set_active(clf.model_id, clf.class_set.name, clf.key)

    def get_classifier(self, key: str) -> Classifier | None:
        """The classifier stored under ``key``, verified (:mod:`gloss_gen.data.integrity`); None if absent.

        Unreadable bytes raise ``ClassifierUnreadableError`` (``classifier_unreadable``); bytes that
        disagree with their checksum or key raise ``ClassifierCorruptError`` (``classifier_corrupt``).
        """
        raw = self.backend.get(self._k("classifier", key))
        if raw is None:
            return None
        try:
            return verify_classifier(raw, key)
        except ClassifierUnreadableError as exc:
            raise ClassifierUnreadableError(
                f"the stored classifier {key} is unreadable ({exc.message}); build it again with `vgloss embed`"
            ) from None

    def set_active(self, model_id: str, class_set: str, key: str) -> None:
        self._set_json({"key": key}, "active", model_id, class_set)

    def get_active_key(self, model_id: str, class_set: str) -> str | None:
        """The key of the class set's active classifier; :class:`ClassifierCorruptError` when the
        pointer is not ``{"key": "..."}``."""
        raw = self.backend.get(self._k("active", model_id, class_set))
        if raw is None:
            return None
        key = _pointer_key(raw)
        if key is None:
            raise ClassifierCorruptError(f"the active-classifier pointer of class set {class_set} is damaged; "
                                         "build the class set again")
        return key

    def get_active_classifier(self, model_id: str, class_set: str) -> Classifier | None:
        key = self.get_active_key(model_id, class_set)
        return self.get_classifier(key) if key else None

    def active_class_sets(self, model_id: str) -> dict[str, str]:
        prefix = self._k("active", model_id) + ":"
        out = {}
        for key in self.backend.keys(prefix):
            name = key[len(prefix):]
            raw = self.backend.get(key)
            pointed = _pointer_key(raw) if raw is not None else None
            if pointed is not None:  # a damaged pointer: that set is not ready, the others are listed
                out[name] = pointed
        return out

    # class sets and descriptions
    def put_class_set(self, class_set: ClassSet) -> None:
        self._set_json(class_set.to_dict(), "classset", class_set.name)

    def delete_class_set(self, name: str) -> None:
        self.backend.delete(self._k("classset", name))

    def get_class_set(self, name: str) -> ClassSet | None:
        data = self._get_json("classset", name)
        return None if data is None else ClassSet.from_dict(data)

    def class_set_names(self) -> list[str]:
        prefix = self._k("classset") + ":"
        return sorted(k[len(prefix):] for k in self.backend.keys(prefix))

    def put_descriptions(self, description_set) -> None:
        lines = [json.dumps(r.to_json(), ensure_ascii=False) for r in description_set.records]
        self.backend.set(self._k("descriptions", description_set.id), ("\n".join(lines) + "\n").encode())

    def get_description_records(self, descriptions_id: str):
        raw = self.backend.get(self._k("descriptions", descriptions_id))
        if raw is None:
            return None
        return [DescriptionRecord.from_json(json.loads(line)) for line in raw.decode().splitlines() if line.strip()]

    # jobs
    def put_job(self, job: JobRecord) -> None:
        self.backend.set(self._k("job", job.id), job.to_bytes())

    def get_job(self, job_id: str) -> JobRecord | None:
        raw = self.backend.get(self._k("job", job_id))
        return None if raw is None else JobRecord.from_bytes(raw)

    def job_ids(self) -> list[str]:
        prefix = self._k("job") + ":"
        return sorted(k[len(prefix):] for k in self.backend.keys(prefix))

    def update_job(self, job_id: str, change: Callable[[JobRecord], None],
                   result: DescriptionRecord | None = None) -> JobRecord | None:
        """Apply ``change`` to the stored job record atomically (compare-and-set on Redis, a file
        lock in the directory store) and stamp ``updated_at``; ``change`` may run more than once.

        With ``result``: only if the job has no result for that class yet, and the result is
        stored in the same transaction, so each class is recorded, and counted, exactly once.
        The record written, or ``None`` when nothing was (no such job, or the class had one).
        """
        written: list[JobRecord] = []

        def apply(raw: bytes | None) -> bytes | None:
            if raw is None:
                return None
            job = JobRecord.from_bytes(raw)
            change(job)
            job.updated_at = utc_now()
            written[:] = [job]
            return job.to_bytes()

        claim = None
        if result is not None:
            claim = (self._k("qjob", job_id, "records"), result.class_id, _record_bytes(result))
        return written[0] if self.backend.update(self._k("job", job_id), apply, claim) else None

    def create_job(self, job: JobRecord, spec: dict | None = None,
                   results: Iterable[DescriptionRecord] = ()) -> None:
        """Store a new job: its spec and earlier results first, the record last (a reader that
        finds the record finds the rest)."""
        if spec is not None:
            self._set_json(spec, "qjob", job.id, "spec")
        self.backend.hash_set(self._k("qjob", job.id, "records"),
                              {r.class_id: _record_bytes(r) for r in results})
        self.put_job(job)

    def get_job_spec(self, job_id: str) -> dict | None:
        return self._get_json("qjob", job_id, "spec")

    def job_results(self, job_id: str) -> list[DescriptionRecord]:
        raw = self.backend.hash_get_all(self._k("qjob", job_id, "records"))
        return [DescriptionRecord.from_json(json.loads(v)) for v in raw.values()]

    def has_job_result(self, job_id: str, class_id: str) -> bool:
        return self.backend.hash_has(self._k("qjob", job_id, "records"), class_id)

    def job_result_count(self, job_id: str) -> int:
        return self.backend.hash_len(self._k("qjob", job_id, "records"))

    # arrays
    def put_array(self, kind: str, key: str, array: np.ndarray, meta: dict | None = None) -> None:
        from safetensors.numpy import save

        data = save({"array": np.ascontiguousarray(array)}, metadata={"meta": json.dumps(meta or {})})
        self.backend.set(self._k("array", kind, key), data)

    def get_array(self, kind: str, key: str) -> tuple[np.ndarray, dict] | None:
        from safetensors.numpy import load

        raw = self.backend.get(self._k("array", kind, key))
        if raw is None:
            return None
        meta = json.loads(read_safetensors_metadata(raw).get("meta", "{}"))
        return load(raw)["array"], meta

    # opaque bytes owned by another module (adapter records, example images): written whole
    def put_bytes(self, kind: str, key: str, data: bytes) -> None:
        self.backend.set(self._k(kind, key), data)

    def update_bytes(self, kind: str, key: str, change: Callable[[bytes | None], bytes | None]) -> bool:
        """Replace the bytes under ``kind:key`` by ``change(current)`` atomically (no concurrent
        update is lost; ``change`` may run more than once, returns ``None`` to write nothing, and
        what it raises propagates). Whether anything was written."""
        return self.backend.update(self._k(kind, key), change)

    def set_pointer(self, kind: str, model_id: str, class_set: str, key: str | None) -> None:
        """Name ``key`` as the class set's ``kind`` record under a model (``None``: name none); the
        pointers of adapters and pair embeddings (the active classifier has its own, above)."""
        if key is None:
            self.delete_bytes(kind, model_id, class_set)
        else:
            self.put_bytes(kind, f"{model_id}:{class_set}", json.dumps({"key": key}).encode())

    def get_pointer(self, kind: str, model_id: str, class_set: str, damaged: Callable[[], Exception]) -> str | None:
        """The key a :meth:`set_pointer` pointer names, ``None`` without one; ``damaged()`` is raised
        when its bytes are not ``{"key": "<text>"}``."""
        raw = self.get_bytes(kind, model_id, class_set)
        if raw is None:
            return None
        key = _pointer_key(raw)
        if key is None:
            raise damaged()
        return key

    def get_bytes(self, kind: str, *parts: str) -> bytes | None:
        return self.backend.get(self._k(kind, *parts))

    def delete_bytes(self, kind: str, *parts: str) -> None:
        self.backend.delete(self._k(kind, *parts))

    def describe(self) -> str:
        return self.backend.describe()


def _record_bytes(record: DescriptionRecord) -> bytes:
    return json.dumps(record.to_json(), ensure_ascii=False).encode()


def open_store(settings=None, namespace: str | None = None) -> Store:
    """The store the settings name: Redis if ``redis_url`` is set, else ``data_dir/store``.

    Keys go under ``namespace``, else the settings' ``redis_namespace``, else ``vgloss:v1``.
    """

    s = settings or get_settings()
    namespace = namespace or s.redis_namespace or DEFAULT_NAMESPACE
    if s.redis_url:
        return Store(RedisBackend(s.redis_url), namespace)
    return Store(DirectoryBackend(Path(s.data_dir) / "store"), namespace)


def _pointer_key(raw: bytes) -> str | None:
    """The key in an active pointer's bytes, or None when they are not ``{"key": "<text>"}``."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    key = value.get("key") if isinstance(value, dict) else None
    return key if isinstance(key, str) and key else None
