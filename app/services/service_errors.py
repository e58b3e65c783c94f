"""Errors the services raise; ``app/error_envelope.py`` turns every one into the error envelope.

They are :class:`gloss_gen.core.errors.VglossError`s like the library's own, so the services stay free
of any web framework and the code → HTTP status mapping stays in one table.
"""

from __future__ import annotations

from gloss_gen.core.errors import CorruptDataError, InputError, NotFoundError, UnavailableError, VglossError
from gloss_gen.data.store import StoreError


class NotReady(UnavailableError):
    code = "not_ready"

    def __init__(self, detail: str) -> None:
        super().__init__(f"The server is not ready: {detail}.", retry_after_s=5)


class ShuttingDown(UnavailableError):
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("The server is shutting down.", retry_after_s=1)


class QueueFull(UnavailableError):
    code = "queue_full"

    def __init__(self, pending: int, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"{pending} images are already waiting for the model (limit {limit}); retry shortly.",
            retry_after_s=retry_after_s,
        )


class TextQueueFull(UnavailableError):
    code = "text_queue_full"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} classifiers are already being embedded (the limit); retry shortly.", retry_after_s=5
        )


class TooManyLabelPrompts(InputError):
    """Ad-hoc labels that would take more text-encoder work than one request may ask for."""

    code = "too_many_label_prompts"

    def __init__(self, labels: int, templates: str, per_label: int, limit: int) -> None:
        super().__init__(
            f"{labels} labels in the {per_label} templates of template set {templates!r} make "
            f"{labels * per_label:,} prompts to embed, over the limit of {limit:,} a request "
            f"(VGLOSS_MAX_LABEL_PROMPTS); send at most {limit // per_label} labels."
        )


class StoreUnavailable(StoreError):
    """The store failed while a request needed it; loaded class sets keep serving."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The store is unavailable, so class sets not already in memory cannot be loaded "
            f"({reason}); loaded class sets keep serving.",
            retry_after_s=5,
        )


class ClassSetNotFound(NotFoundError):
    code = "class_set_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"There is no class set named {name!r}.")


class ClassSetNotReady(VglossError):
    code = "class_set_not_ready"

    def __init__(self, name: str, model_id: str) -> None:
        super().__init__(
            f"Class set {name!r} has no classifier for {model_id} yet: its job is still running, or failed."
        )


class ClassifierBroken(CorruptDataError):
    """The stored classifier of a class set fails verification and cannot be rebuilt here."""

    def __init__(self, name: str, cause: CorruptDataError) -> None:
        super().__init__(
            f"The stored classifier of class set {name!r} is damaged ({cause.message}); "
            "rebuild it with POST /v1/class-sets.",
            code=cause.code,
        )


class NoExamples(VglossError):
    """An adapter asked for on a class set with no labelled examples yet (the request is fine; the
    set is not ready for it)."""

    code = "no_examples"

    def __init__(self, name: str) -> None:
        super().__init__(f"Class set {name!r} has no examples yet; POST them to /v1/class-sets/{name}/examples.")


class NoPairDescriptions(VglossError):
    """``rerank: "fudd"`` asked for on a class set with no pair descriptions for this model."""

    code = "no_pair_descriptions"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Class set {name!r} has no pair descriptions to re-rank with; run `vgloss describe {name} "
            f"--method fudd` and `vgloss embed` the file, or leave rerank out.")


class InvalidClassSet(InputError):
    """A class set given over the API that cannot be built as given."""

    code = "validation_error"


class TooManyJobs(UnavailableError):
    code = "too_many_jobs"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} jobs (class sets and adapters) are already queued or running here; wait for one to finish.",
            retry_after_s=30,
        )


class JobNotFound(NotFoundError):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"There is no job {job_id!r}.")


class NoUsableImages(VglossError):
    """Every image of a request was rejected; the code is that of the first rejection."""

    def __init__(self, first: VglossError, count: int) -> None:
        if count == 1:
            message = first.message
        else:
            message = f"None of the {count} images could be classified; the first: {first.message}"
        super().__init__(message, code=first.code)


class NegativesBuilding(UnavailableError):
    """NegLabel's negative labels for a classifier are being embedded; the request is not held for them."""

    code = "negatives_building"

    def __init__(self, name: str, done: int, total: int, retry_after_s: int) -> None:
        progress = f"{done:,} of {total:,} prompts embedded" if total else "mining WordNet for candidates"
        super().__init__(
            f"The negative labels of class set {name!r} are being embedded for open_set=neglabel ({progress}); "
            f"retry in {retry_after_s}s, or classify with open_set=off or mcm meanwhile.",
            retry_after_s=retry_after_s,
        )


class OpenSetCalibrating(UnavailableError):
    """The open-set threshold of a class set is being calibrated on its labelled examples."""

    code = "open_set_calibrating"

    def __init__(self, name: str, method: str, retry_after_s: int) -> None:
        super().__init__(
            f"The {method} threshold of class set {name!r} is being calibrated on its labelled examples; retry in "
            f"{retry_after_s}s, or give open_set_threshold.",
            retry_after_s=retry_after_s,
        )
