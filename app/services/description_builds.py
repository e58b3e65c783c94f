"""Descriptions for a class set built over HTTP, through the describe job's in-memory form."""

from __future__ import annotations

from collections.abc import Callable

from gloss_gen.core.config import Settings
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionError, DescriptionRecord, DescriptionSet
from gloss_gen.data.methods import METHODS
from gloss_gen.describe.describe_job import DescribeOptions, generate_descriptions

SERVER_METHODS = tuple(name for name, method in METHODS.items() if not (method.needs_file or method.writes_pairs))
"""Methods a class set can be built with over HTTP (``import`` needs a file on the server; ``fudd``
writes pair descriptions, not a classifier: `vgloss describe --method fudd` and `vgloss embed`)."""

ProgressCallback = Callable[[DescriptionRecord, int, int], None]


async def describe(
    class_set: ClassSet,
    method: str,
    settings: Settings,
    on_record: ProgressCallback | None = None,
) -> DescriptionSet:

    if method not in SERVER_METHODS:
        raise DescriptionError(f"method {method!r} cannot be used here; choose from {', '.join(SERVER_METHODS)}")
    options = DescribeOptions.from_settings(method, settings)
    return await generate_descriptions(class_set, options, on_record=on_record)
