"""Integrity of stored classifiers: a checksum sealed into the bytes, checked on every load.

:meth:`gloss_gen.data.store.Store.put_classifier` seals a classifier's safetensors bytes with
``vgloss_sha256``, a SHA-256 over the ``vgloss`` header string and every array (name, dtype,
shape, raw bytes, in name order), kept in the safetensors metadata next to the header: one
write, so a classifier and its checksum can never be stored apart. :func:`verify_classifier`
checks, on load:

1. the bytes parse (:class:`~gloss_gen.data.classifier.ClassifierUnreadableError`, ``classifier_unreadable``);
2. the checksum matches, where there is one (entries written before it have none);
3. the header's key is the key it was stored under, and is the content hash of its inputs;
4. the arrays agree with the header (one prototype per class, offsets covering the evidence,
   finite unit-length prototypes),

so an edited or re-ordered header, flipped array bytes or another entry's bytes under this key
raise :class:`ClassifierCorruptError` (``classifier_corrupt``) instead of serving wrong labels.
The checksum detects corruption, not tampering: whoever can write the store can reseal.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from gloss_gen.core.errors import CorruptDataError
from gloss_gen.data.classifier import Classifier, ClassifierUnreadableError, classifier_key, read_safetensors_metadata

CHECKSUM_FIELD = "vgloss_sha256"
_UNIT_TOLERANCE = 1e-2


class ClassifierCorruptError(CorruptDataError):
    """Classifier bytes that parse but disagree with their checksum, their key or themselves."""

    code = "classifier_corrupt"


def classifier_digest(header: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    digest.update(header.encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def seal_classifier(classifier: Classifier) -> bytes:
    """``classifier.to_bytes()`` with its checksum added to the safetensors metadata."""
    from safetensors.numpy import load, save

    data = classifier.to_bytes()
    metadata = read_safetensors_metadata(data)
    arrays = load(data)
    metadata[CHECKSUM_FIELD] = classifier_digest(metadata["vgloss"], arrays)
    return save(arrays, metadata=metadata)


def verify_classifier(data: bytes, key: str) -> Classifier:
    """The classifier stored under ``key`` in ``data``, checked as the module docstring says."""
    classifier = Classifier.from_bytes(data)  # raises ClassifierUnreadableError for unreadable bytes
    metadata = read_safetensors_metadata(data)
    expected = metadata.get(CHECKSUM_FIELD)
    if expected is not None:
        from safetensors.numpy import load

        try:
            arrays = load(data)
        except Exception as exc:  # Classifier.from_bytes read them a moment ago
            raise ClassifierUnreadableError(f"the classifier's arrays cannot be read: {exc}") from None
        if classifier_digest(metadata["vgloss"], arrays) != expected:
            raise ClassifierCorruptError(
                f"classifier {key} does not match its checksum: its header or arrays were changed"
            )
    _check_identity(classifier, key)
    _check_shapes(classifier, key)
    return classifier


def _check_identity(classifier: Classifier, key: str) -> None:
    if classifier.key != key:
        raise ClassifierCorruptError(f"the entry stored as classifier {key} holds classifier {classifier.key}")
    derived = classifier_key(
        classifier.model_id, classifier.descriptions_id, classifier.prompt_style, classifier.template_set
    )
    if derived != key:
        raise ClassifierCorruptError(f"classifier {key}: its header does not hash to its key")


def _check_shapes(classifier: Classifier, key: str) -> None:
    prototypes, evidence, offsets = classifier.prototypes, classifier.evidence, classifier.offsets
    num_classes = len(classifier.class_set)
    problem = None
    if prototypes.ndim != 2 or prototypes.shape[0] != num_classes or num_classes == 0:
        problem = f"{prototypes.shape[0] if prototypes.ndim else 0} prototypes for {num_classes} classes"
    elif len(set(classifier.class_set.ids)) != num_classes:
        problem = "duplicate class ids"
    elif evidence.ndim != 2 or evidence.shape[1] != prototypes.shape[1]:
        problem = "evidence and prototypes differ in width"
    elif offsets.shape != (num_classes + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        problem = "the evidence offsets are not one increasing range per class"
    elif int(offsets[-1]) != evidence.shape[0] or evidence.shape[0] != len(classifier.evidence_texts):
        problem = "the evidence rows, texts and offsets disagree"
    elif not np.all(np.isfinite(prototypes)) or not np.all(np.isfinite(evidence)):
        problem = "non-finite numbers in the arrays"
    elif np.any(np.abs(np.linalg.norm(prototypes, axis=1) - 1.0) > _UNIT_TOLERANCE):
        problem = "prototypes that are not unit length"
    if problem:
        raise ClassifierCorruptError(f"classifier {key} is inconsistent: {problem}")
