"""What the vgloss prompt says about a class: its WordNet lemmas, definition and hypernyms."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gloss_gen.data import wordnet
from gloss_gen.data.classsets import ClassSpec

log = logging.getLogger(__name__)

HYPERNYM_LEVELS = 2


@dataclass(frozen=True)
class ClassFacts:
    """What the prompt says about one class."""

    name: str
    synset: str | None = None
    lemmas: tuple[str, ...] = ()
    definition: str | None = None
    hypernyms: tuple[str, ...] = ()  # nearest first


def synset_of(spec: ClassSpec):
    if not spec.synset:
        return None
    try:
        return wordnet.get_synset(spec.synset)
    except KeyError:
        log.warning("class %r names unknown synset %r; describing it by name only", spec.name, spec.synset)
        return None


def class_facts(spec: ClassSpec, synset=None) -> ClassFacts:
    synset = synset if synset is not None else synset_of(spec)
    if synset is None:
        return ClassFacts(name=spec.name)
    return ClassFacts(
        name=spec.name,
        synset=spec.synset,
        lemmas=tuple(dict.fromkeys(lemma.replace("_", " ") for lemma in synset.lemma_names())),
        definition=synset.definition(),
        hypernyms=tuple(wordnet.display_name(h) for h in wordnet.hypernym_chain(synset, HYPERNYM_LEVELS)),
    )

