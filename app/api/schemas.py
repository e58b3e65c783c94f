"""Request and response bodies of the v1 API, as pydantic models (they also document ``/docs``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from gloss_gen.classify.open_set import OPEN_SET_MODES
from gloss_gen.core.names import NAME_MAX_CHARS, NAME_PATTERN
from gloss_gen.data.classsets import BUILTIN_CLASS_SETS

TOP_K_MIN, TOP_K_MAX, TOP_K_DEFAULT = 1, 100, 5
RERANK_METHODS = ("fudd", "none")
RERANK_K_MIN, RERANK_K_MAX = 2, 100
MAX_LABEL_CHARS = 300
MAX_CLASSES_PER_SET = 10_000
LABEL_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS, "pattern": r"\S"}
"""A label (or class name) as the server takes it: 1-300 characters, not only whitespace."""


class ErrorDetail(BaseModel):
    code: str = Field(examples=["class_set_not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ClassifyJsonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(
        description="Base64-encoded image files; a 'data:image/...;base64,' prefix is accepted.",
        # documented; the route answers an empty list itself (422), an empty image per item (400 if alone)
        json_schema_extra={"minItems": 1, "items": {"type": "string", "minLength": 1}},
    )
    class_set: str | None = Field(None, description="Class set name (default: the server's default).")
    labels: list[str] | None = Field(
        None, description="Ad-hoc labels instead of a class set.",  # the route checks them (422)
        json_schema_extra={"anyOf": [{"type": "array", "minItems": 1, "items": LABEL_SCHEMA}, {"type": "null"}]},
    )
    top_k: int = Field(TOP_K_DEFAULT, ge=TOP_K_MIN, le=TOP_K_MAX)
    explain: bool = Field(False, description="Add the best-matching description to each prediction.")
    open_set: str | None = Field(
        None, description="Open-set scoring: off, mcm or neglabel (default: the server's VGLOSS_OPEN_SET).",
        json_schema_extra={"enum": list(OPEN_SET_MODES)},
    )
    open_set_threshold: float | None = Field(
        None, description="An image is unknown below this score (default: calibrated on the class set's examples, "
        "else the server's setting, else the method's default).", json_schema_extra={"minimum": 0, "maximum": 1},
    )
    rerank: Literal["fudd", "none"] | None = Field(
        None, description="Second look: fudd re-ranks the top rerank_k classes with the class set's pair "
        "descriptions (default: the server's VGLOSS_RERANK, applied where the class set has pairs).",
    )
    rerank_k: int | None = Field(None, ge=RERANK_K_MIN, le=RERANK_K_MAX, description="Classes re-ranked (default: VGLOSS_RERANK_K).")


class Prediction(BaseModel):
    class_id: str
    label: str
    score: float = Field(description="Probability (softmax over the class set, or sigmoid).")
    similarity: float = Field(description="Cosine similarity of the image and the class.")
    evidence: str | None = Field(None, description="Best-matching description (with explain).")
    example: str | None = Field(None, description="Nearest labelled example of the class (explain, with an adapter).")


class ImageResult(BaseModel):
    index: int
    filename: str | None = None
    ood_score: float | None = Field(None, description="Open-set score, higher = more in-set (with open_set).")
    unknown: bool | None = Field(None, description="The score is below the threshold (with open_set).")
    predictions: list[Prediction] | None = None
    error: ErrorDetail | None = None


class OpenSetCalibrationInfo(BaseModel):
    examples: int = Field(description="Labelled examples of the class set the threshold was calibrated on.")
    tpr: float = Field(description="Share of them at or above the threshold.")
    tpr_target: float


class OpenSetInfo(BaseModel):
    method: Literal["mcm", "neglabel"]
    threshold: float
    threshold_source: Literal["request", "calibration", "setting", "default"]
    negatives: int | None = Field(None, description="Negative labels scored against (neglabel).")
    negatives_key: str | None = None
    calibration: OpenSetCalibrationInfo | None = None


class RerankInfo(BaseModel):
    method: Literal["fudd"]
    k: int = Field(description="Classes of the first pass re-ranked.")
    pairs: str = Field(description="Key of the pair embeddings used.")


class ClassifyResponse(BaseModel):
    model: str = Field(examples=["ViT-B-32/openai"])
    class_set: str = Field(examples=["imagenet1k"])
    descriptions: str = Field(description="Id (content hash) of the description set used.")
    adapter: str | None = Field(None, description="Key of the few-shot adapter applied (absent when none).")
    open_set: OpenSetInfo | None = Field(None, description="The open-set method applied (absent when off).")
    rerank: RerankInfo | None = Field(None, description="The second look applied (absent when none).")
    results: list[ImageResult]


class ClassSetSummary(BaseModel):
    name: str
    num_classes: int
    descriptions: str | None = Field(description="Id of the description set in use, if ready.")
    method: str | None = None
    model: str
    ready: bool = Field(description="A classifier for this server's model is active.")
    builtin: bool
    error: ErrorDetail | None = Field(
        None, description="Why the stored classifier cannot serve (it failed verification), if so."
    )


class ClassInfo(BaseModel):
    id: str
    name: str
    synset: str | None = None
    descriptions: list[str]


class ClassSetDetail(ClassSetSummary):
    classes: list[ClassInfo]
    examples: dict[str, int] = Field(default_factory=dict, description="Labelled examples per class id.")
    adapter: dict | None = Field(None, description="The active few-shot adapter, if any.")


_SHOTS = Field(16, ge=1, le=1024, description="Examples per class to use.")


class CacheAdapterRequest(BaseModel):
    """tip / tip-f: a cache adapter, active for the class set once the job is done."""

    model_config = ConfigDict(extra="forbid", title="Tip-Adapter cache")

    method: Literal["tip", "tip-f"] = "tip"
    shots: int = _SHOTS
    augment: int = Field(0, ge=0, le=32, description="Random crop/flip views averaged into each key.")


class ClipFitAdapterRequest(BaseModel):
    """clipfit: a ClipFit delta of the model; the job reports its model id and the VGLOSS_PRETRAINED
    that serves it (a restart: the delta changes the image tower for every class set)."""

    model_config = ConfigDict(extra="forbid", title="ClipFit delta")

    method: Literal["clipfit"]
    shots: int = _SHOTS
    epochs: int | None = Field(None, ge=1, le=1000,
                               description="Training epochs (default: the backbone's official count, 200; "
                                           "100 for ViT-B-16).")
    lr: float | None = Field(None, gt=0, le=1.0, description="SGD learning rate (default 2e-3).")


def _adapter_kind(body) -> str:
    method = body.get("method") if isinstance(body, dict) else getattr(body, "method", None)
    return "clipfit" if method == "clipfit" else "tip"


CreateAdapterRequest = Annotated[
    Annotated[CacheAdapterRequest, Tag("tip")] | Annotated[ClipFitAdapterRequest, Tag("clipfit")],
    Discriminator(_adapter_kind),
]
"""One of the two shapes (the schema's oneOf): ``epochs``/``lr`` only with clipfit, ``augment`` only
with tip / tip-f, so every body the schema admits is one the server runs; an error names the shape
the method chose ("Invalid tip.epochs: Extra inputs are not permitted.")."""


class ExamplesAdded(BaseModel):
    class_set: str
    added: int
    duplicates: int
    rejected: list[dict]
    examples: dict[str, int]


class ClassEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_LABEL_CHARS, json_schema_extra={"pattern": r"\S"})
    synset: str | None = Field(None, description="WordNet 3.0 synset, 'n01440764' or 'tench.n.01'.")
    id: str | None = None


class CreateClassSetRequest(BaseModel):
    # 'classes' for a new set; none for a built-in set, which is rebuilt (the catalog answers 422 otherwise)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"properties": {"name": {"enum": list(BUILTIN_CLASS_SETS)}}, "not": {"required": ["classes"]}},
        {"properties": {"name": {"not": {"enum": list(BUILTIN_CLASS_SETS)}}}, "required": ["classes"]},
    ]})

    # the pattern is documented here and enforced by the catalog, whose 422 names the rule
    name: str = Field(examples=["pets"], json_schema_extra={"pattern": NAME_PATTERN, "maxLength": NAME_MAX_CHARS})
    classes: list[Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS, json_schema_extra={"pattern": r"\S"})]
                  | ClassEntry] = Field(
        None,  # absent, never null: required for a new set, left out to rebuild a built-in one
        min_length=1,
        max_length=MAX_CLASSES_PER_SET,
        description="Labels or {name, synset?, id?}; omit to rebuild a built-in set.",
        json_schema_extra=lambda schema: schema.pop("default", None),
    )
    method: Literal["classname", "wordnet", "waffle", "vgloss"] | None = Field(
        None, description="How to describe the classes (default: the server's default method)."
    )
    description: str = ""


class JobCreated(BaseModel):
    job_id: str


class JobState(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    state: Literal["queued", "running", "done", "failed"]
    done: int
    total: int
    errors: list[dict]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    model: str = Field(examples=["ViT-B-32/openai"])
    default_class_set: str
    class_sets_loaded: list[str] = Field(description="Class sets whose classifier is in memory.")
    inference: dict = Field(
        default_factory=dict,
        description="Which inference path (backend/precision) serves the image tower at which batch sizes "
        "and the text tower, and why (the start-up probe and fidelity gate).",
    )
