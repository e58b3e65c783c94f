"""The description methods by name: the one registry that ``vgloss describe``, ``vgloss embed``,
``vgloss eval``, the server's class-set jobs and the queue workers read.

A method is one of three kinds:

- ``offline`` — computed here from the class set alone (``classname``, ``wordnet``, ``waffle``);
- ``file`` — read from a published description file (``import``: CuPL or DCLIP JSON);
- ``llm`` — written by an LLM, class by class (``vgloss``; see :mod:`gloss_gen.describe.describe_job`),
  or pair by pair (``fudd``, ``writes_pairs``: differential texts for pairs of classes, a pair file
  of :mod:`gloss_gen.data.pair_descriptions`; see :mod:`gloss_gen.describe.pair_job`).

Offline and file methods produce the whole :class:`~gloss_gen.data.descriptions.DescriptionSet` at
once through :func:`describe_offline`; the LLM method goes through the describe job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.description_importers import ImportReport, describe_import
from gloss_gen.data.descriptions import DescriptionError, DescriptionSet, describe_classname, describe_wordnet
from gloss_gen.data.waffle_descriptors import describe_waffle

MethodKind = Literal["offline", "file", "llm"]


@dataclass(frozen=True)
class Method:
    name: str
    kind: MethodKind
    summary: str
    describe: Callable[[ClassSet], DescriptionSet] | None = None  # offline methods only
    writes_pairs: bool = False  # one line per pair of classes (PairRecord), not per class

    @property
    def needs_llm(self) -> bool:
        return self.kind == "llm"

    @property
    def needs_file(self) -> bool:
        return self.kind == "file"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("classname", "offline", "no descriptions; the class name in prompt templates (the CLIP baseline)",
               describe_classname),
        Method("wordnet", "offline", "the synset's WordNet definition", describe_wordnet),
        Method("waffle", "offline", "WaffleCLIP's random words and random characters in DCLIP's sentence, the "
               "same for every class (the honesty baseline: meaning must beat it)", describe_waffle),
        Method("vgloss", "llm", "an LLM writes short visual descriptions grounded in WordNet that tell each "
               "class apart from its most confusable classes in the same set"),
        Method("fudd", "llm", "an LLM writes FuDD's pairwise differential descriptions: for each pair of classes "
               "that can meet in a top-k, the visual attributes that tell exactly those two apart",
               writes_pairs=True),
        Method("import", "file", "a CuPL ({class: [sentences]}) or DCLIP ({class: [descriptors]}) JSON file"),
    )
}
METHOD_NAMES = tuple(METHODS)
OFFLINE_METHODS = tuple(name for name, m in METHODS.items() if m.kind == "offline")


def get_method(name: str) -> Method:
    method = METHODS.get(name)
    if method is None:
        raise DescriptionError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return method


def describe_offline(
    class_set: ClassSet,
    method: str,
    *,
    import_file: str | Path | None = None,
    import_format: str = "auto",
) -> tuple[DescriptionSet, ImportReport | None]:
    """The whole description set of an offline or file method (with the import report for files)."""
    spec = get_method(method)
    if spec.needs_llm:
        raise DescriptionError(
            f"method {method!r} needs an LLM; run `vgloss describe {class_set.name} --method {method}` first"
        )
    if spec.needs_file:
        if not import_file:
            raise DescriptionError(f"the {method} method needs a description file (--import FILE)")
        return describe_import(class_set, Path(import_file), import_format)
    assert spec.describe is not None
    return spec.describe(class_set), None
