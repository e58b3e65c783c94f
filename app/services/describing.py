"""Descriptions for a class set by method: the offline methods directly, ``vgloss`` via the LLM job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gloss_gen.classsets import ClassSet
from gloss_gen.config import Settings
from gloss_gen.descriptions import (
    DescriptionRecord,
    DescriptionSet,
    describe_classname,
    describe_wordnet,
)

OFFLINE_METHODS = ("classname", "wordnet")
SERVER_METHODS = ("classname", "wordnet", "vgloss")
"""Methods a class set can be built with over HTTP (``import`` needs a file on the server)."""

ProgressCallback = Callable[[DescriptionRecord, int, int], None]


async def describe(
    class_set: ClassSet,
    method: str,
    settings: Settings,
    on_record: ProgressCallback | None = None,
) -> DescriptionSet:
    if method in OFFLINE_METHODS:
        describe_offline = describe_classname if method == "classname" else describe_wordnet
        description_set = await asyncio.to_thread(describe_offline, class_set)
        if on_record is not None:
            total = len(description_set.records)
            for done, record in enumerate(description_set.records, 1):
                on_record(record, done, total)
        return description_set
    if method == "vgloss":
        from gloss_gen.describe import DescribeOptions, generate_descriptions

        options = DescribeOptions.from_settings("vgloss", settings)
        return await generate_descriptions(class_set, options, on_record=on_record)
    raise ValueError(f"method {method!r} cannot be used here; choose from {', '.join(SERVER_METHODS)}")
