"""Classifiers: one L2-normalised prototype per class, built from description prompts.

A classifier is keyed by a content hash of (model id, description set id, prompt style, template
set, format version), so a change of model, descriptions, prompt style or templates can never reuse
a stale entry. Serialised as safetensors (raw little-endian arrays) with a JSON header — never
pickle. Prototypes and per-description evidence are stored as float32 by default, exactly as built;
``to_bytes(evidence_dtype="float16")`` halves the evidence at a cost of a few 1e-5 in
mean-description scores (the size of the smallest top-1/top-2 gaps on real data).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gloss_gen.core.errors import CorruptDataError, InputError
from gloss_gen.core.prompts import DEFAULT_LABEL_TEMPLATE_SET, TEMPLATE_SETS, build_prompts, template_count
from gloss_gen.data.classsets import ClassSet, ClassSpec, slugify
from gloss_gen.data.descriptions import DescriptionSet, utc_now

#: Called between two batches of text encoding with (prompts done, prompts total); it may wait
#: (to let other work use the model) or raise (to stop the build).
BetweenBatches = Callable[[int, int], None]

# 2: evidence stored as float32 (1 stored it as float16); per-dataset template sets. The version
# is part of every key, so nothing built now reuses a format-1 entry, but a stored format-1
# classifier (an active one, say) still loads until it is rebuilt.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
EVIDENCE_DTYPES = {"float32": "<f4", "float16": "<f2"}
MAX_PROMPT_EVIDENCE_ROWS = 10_000
"""A class-name (``templates``) classifier keeps each prompt as evidence up to this many prompts
(labels are capped at ``Settings.max_label_prompts``, 8,000); ImageNet in CLIP's 80 templates,
80,000 prompts, keeps one row per class, named by the class."""


class ClassifierUnreadableError(CorruptDataError):
    """Bytes that are not a readable vgloss classifier."""

    code = "classifier_unreadable"


def classifier_key(model_id: str, descriptions_id: str, prompt_style: str, template_set: str = "openai") -> str:
    """The content key; ``template_set`` is the one actually used (see :func:`build_classifier`)."""
    payload = json.dumps([FORMAT_VERSION, model_id, descriptions_id, prompt_style, template_set])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class Classifier:
    """Everything needed to score image embeddings against a class set.

    ``prototypes`` (C, D) float32, unit rows. ``evidence`` (N, D) holds the per-description
    embeddings (unit rows); class ``i`` owns rows ``offsets[i]:offsets[i+1]`` and
    ``evidence_texts`` names them: the description; for a class-name (``templates``) classifier
    the template prompt ("a photo of a cat.", see :func:`keeps_prompt_evidence`), else the class
    name for the one mean row of its template prompts.
    """

    key: str
    model_id: str
    class_set: ClassSet
    descriptions_id: str
    method: str
    prompt_style: str
    template_set: str
    prototypes: np.ndarray
    evidence: np.ndarray
    offsets: np.ndarray
    evidence_texts: list[str]
    logit_scale: float
    logit_bias: float | None = None
    created_at: str = field(default_factory=utc_now)

    @property
    def num_classes(self) -> int:
        return int(self.prototypes.shape[0])

    @property
    def dim(self) -> int:
        return int(self.prototypes.shape[1])

    def header(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "key": self.key,
            "model_id": self.model_id,
            "class_set": self.class_set.to_dict(),
            "descriptions_id": self.descriptions_id,
            "method": self.method,
            "prompt_style": self.prompt_style,
            "template_set": self.template_set,
            "evidence_texts": self.evidence_texts,
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
            "created_at": self.created_at,
        }

    def summary(self) -> dict:
        return {
            "key": self.key,
            "model": self.model_id,
            "class_set": self.class_set.name,
            "num_classes": self.num_classes,
            "descriptions": self.descriptions_id,
            "method": self.method,
            "prompt_style": self.prompt_style,
            "created_at": self.created_at,
        }

    def to_bytes(self, evidence_dtype: str = "float32") -> bytes:
        """safetensors bytes; ``evidence_dtype="float16"`` is the opt-in half-size evidence."""
        from safetensors.numpy import save

        if evidence_dtype not in EVIDENCE_DTYPES:
            raise ValueError(f"evidence_dtype must be one of {', '.join(EVIDENCE_DTYPES)}, not {evidence_dtype!r}")
        tensors = {
            "prototypes": np.ascontiguousarray(self.prototypes, dtype="<f4"),
            "evidence": np.ascontiguousarray(self.evidence, dtype=EVIDENCE_DTYPES[evidence_dtype]),
            "offsets": np.ascontiguousarray(self.offsets, dtype="<i8"),
        }
        header = {**self.header(), "evidence_dtype": evidence_dtype}
        return save(tensors, metadata={"vgloss": json.dumps(header, ensure_ascii=False)})

    @classmethod
    def from_bytes(cls, data: bytes) -> Classifier:
        """Parse stored bytes; anything unreadable raises :class:`ClassifierUnreadableError`."""
        header = read_safetensors_metadata(data).get("vgloss")
        if header is None:
            raise ClassifierUnreadableError("not a vgloss classifier (no 'vgloss' metadata)")
        try:
            meta = json.loads(header)
        except json.JSONDecodeError as exc:
            raise ClassifierUnreadableError(f"the classifier header is not JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ClassifierUnreadableError(
                f"classifier format {found} is not one of {', '.join(map(str, READABLE_FORMATS))}"
            )
        try:
            return cls._from_parts(meta, _load_arrays(data))
        except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
            raise ClassifierUnreadableError(f"the classifier is incomplete or malformed ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Classifier:
        return cls(
            key=meta["key"],
            model_id=meta["model_id"],
            class_set=ClassSet.from_dict(meta["class_set"]),
            descriptions_id=meta["descriptions_id"],
            method=meta["method"],
            prompt_style=meta["prompt_style"],
            template_set=meta["template_set"],
            prototypes=arrays["prototypes"].astype(np.float32),
            evidence=arrays["evidence"].astype(np.float32),
            offsets=arrays["offsets"].astype(np.int64),
            evidence_texts=list(meta["evidence_texts"]),
            logit_scale=float(meta["logit_scale"]),
            logit_bias=meta.get("logit_bias"),
            created_at=meta.get("created_at", ""),
        )


def _load_arrays(data: bytes) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise ClassifierUnreadableError(f"the classifier's arrays cannot be read: {exc}") from None


def read_safetensors_metadata(data: bytes) -> dict:
    if len(data) < 8:
        raise ClassifierUnreadableError("too short to be safetensors")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8 or length > 100 * 1024 * 1024:
        raise ClassifierUnreadableError("bad safetensors header length")
    try:
        header = json.loads(data[8 : 8 + length])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClassifierUnreadableError(f"bad safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise ClassifierUnreadableError("bad safetensors header: not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ClassifierUnreadableError("bad safetensors header: __metadata__ is not an object")
    return metadata


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def keeps_prompt_evidence(num_classes: int, template_set: str) -> bool:
    """Whether a class-name (``templates``) classifier of ``num_classes`` classes keeps one evidence
    row per template prompt, so that ``explain`` names the prompt that matched."""
    return num_classes * template_count(template_set) <= MAX_PROMPT_EVIDENCE_ROWS


def build_classifier(
    model,
    description_set: DescriptionSet,
    template_set: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    between_batches: BetweenBatches | None = None,
) -> Classifier:
    """Embed every prompt of a description set and average them into class prototypes.

    Prototype = mean of the normalised prompt embeddings of the class, renormalised (the
    open_clip ``build_zero_shot_classifier`` / CuPL construction). With description prompts each
    description's embedding is kept as evidence; with templates each prompt's (the prototype, for a
    class set too large for :func:`keeps_prompt_evidence`).
    ``template_set`` defaults to the class set's own (CLIP's per-dataset templates for CIFAR-10
    and STL-10). Description prompts name the class as the descriptions' source does
    (:attr:`DescriptionRecord.prompt_name`). ``batch_size`` and ``between_batches`` go to the
    text encoder (:meth:`gloss_gen.model.clip_models.ClipModel.encode_text`).
    """
    style = description_set.prompt_style
    class_set = description_set.class_set
    template_set = template_set or class_set.templates
    prompts_per_class: list[list[str]] = []
    for record in description_set.records:
        descriptions = record.descriptions if record.ok else []
        name = record.prompt_name if descriptions else record.name
        prompts_per_class.append(build_prompts(name, descriptions, style, template_set))
    flat = [p for prompts in prompts_per_class for p in prompts]
    prompt_evidence = style == "templates" and keeps_prompt_evidence(len(class_set), template_set)
    embeddings = model.encode_text(flat, batch_size=batch_size, progress=progress, between_batches=between_batches)

    prototypes = np.zeros((len(class_set), embeddings.shape[1]), dtype=np.float32)
    evidence_rows: list[np.ndarray] = []
    evidence_texts: list[str] = []
    offsets = [0]
    start = 0
    for i, (record, prompts) in enumerate(zip(description_set.records, prompts_per_class)):
        block = embeddings[start : start + len(prompts)]
        start += len(prompts)
        prototypes[i] = block.mean(axis=0)
        uses_descriptions = style != "templates" and record.ok and record.descriptions
        if uses_descriptions or prompt_evidence:
            evidence_rows.append(block)
            evidence_texts.extend(record.descriptions if uses_descriptions else prompts)
        else:
            evidence_rows.append(normalize_rows(block.mean(axis=0, keepdims=True)))
            evidence_texts.append(record.name)
        offsets.append(len(evidence_texts))
    prototypes = normalize_rows(prototypes).astype(np.float32)
    return Classifier(
        key=classifier_key(model.id, description_set.id, style, template_set),
        model_id=model.id,
        class_set=class_set,
        descriptions_id=description_set.id,
        method=description_set.method,
        prompt_style=style,
        template_set=template_set,
        prototypes=prototypes,
        evidence=np.concatenate(evidence_rows).astype(np.float32),
        offsets=np.asarray(offsets, dtype=np.int64),
        evidence_texts=evidence_texts,
        logit_scale=model.logit_scale,
        logit_bias=model.logit_bias,
    )


def ad_hoc_class_set(labels: Sequence[str], templates: str = DEFAULT_LABEL_TEMPLATE_SET) -> ClassSet:
    """A class set for request-time labels: no WordNet, ids are slugs, order kept, class names in
    the ``templates`` template set (``Settings.label_templates``; the server, ``vgloss classify
    --labels`` and :mod:`gloss_gen.zeroshot` all pass it, so they name and key labels alike).

    The name hashes the labels and the template set: the same labels in two template sets are
    two stored classifiers, neither replacing the other as the active one.
    """

    seen: set[str] = set()
    classes = []
    for label in labels:
        base = slugify(label)
        cid, n = base, 2
        while cid in seen:
            cid = f"{base}-{n}"
            n += 1
        seen.add(cid)
        classes.append(ClassSpec(id=cid, name=label.strip()))
    if templates not in TEMPLATE_SETS:
        raise InputError(f"unknown template set {templates!r}; choose from {', '.join(TEMPLATE_SETS)}")
    digest = hashlib.sha256(json.dumps([[c.name for c in classes], templates]).encode()).hexdigest()[:12]
    return ClassSet(name=f"labels-{digest}", classes=classes, templates=templates)


def serves_labels(classifier: Classifier, class_set: ClassSet) -> bool:
    """Whether a stored ``classifier`` is the one for the ad-hoc ``class_set`` (same labels, same
    templates, the evidence rows :func:`build_classifier` keeps now): a name is a 12-hex-digit hash,
    so this guards against a collision, and a label set stored before prompts were kept as evidence
    is built again."""
    rows = len(class_set)
    if keeps_prompt_evidence(rows, class_set.templates):
        rows *= template_count(class_set.templates)
    return (classifier.class_set.names == class_set.names and classifier.template_set == class_set.templates
            and len(classifier.evidence_texts) == rows)
