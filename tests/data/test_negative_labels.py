"""NegLabel's negative labels from the real WordNet 3.0: what is excluded for a class set (NegRefine's
fix), the prompts, the order, and the selection's failure modes. The selection's parity with the
authors' code is in tests/classify/test_open_set_parity.py."""

from __future__ import annotations

import pytest
import torch

from gloss_gen.core.errors import InputError
from gloss_gen.data.classsets import ClassSet, ClassSpec, builtin_class_set
from gloss_gen.data.negative_labels import (
    ADJECTIVE,
    NEGLABEL_NOUN_FILES,
    NOUN,
    NegativeLabelError,
    negative_candidates,
    select_negatives,
)
from gloss_gen.data.wordnet import get_synset

WITH_ANIMALS = (*NEGLABEL_NOUN_FILES, "noun.animal")  # NegLabel's database leaves noun.animal out


def one_class(name: str, synset: str | None) -> ClassSet:
    return ClassSet(name="one", classes=[ClassSpec(id=name, name=name, synset=synset)])


def words(candidates, pos: str | None = None) -> set[str]:
    return {c.word for c in candidates if pos is None or c.pos == pos}


@pytest.fixture(scope="module")
def cifar10():
    return negative_candidates(builtin_class_set("cifar10"))


@pytest.fixture(scope="module")
def dog_only():
    return negative_candidates(one_class("dog", "n02084071"))


@pytest.fixture(scope="module")
def airplane_only():
    return negative_candidates(one_class("airplane", "n02691156"))


def test_dog_excludes_its_hyponyms_hypernyms_and_lemmas():
    cifar = words(negative_candidates(builtin_class_set("cifar10"), noun_files=WITH_ANIMALS))
    planes = words(negative_candidates(one_class("airplane", "n02691156"), noun_files=WITH_ANIMALS))
    for word in ("puppy", "poodle", "dalmatian", "canine", "carnivore", "mammal", "domestic animal"):
        assert word in planes, f"{word!r} is a negative when dogs are not in the set"
        assert word not in cifar, f"{word!r} would reject cifar10's dog photos"


def test_in_set_words_are_never_negatives_in_any_part_of_speech(cifar10, dog_only, airplane_only):
    assert "canine" in words(airplane_only)  # the tooth, noun.body; the dog's sense is noun.animal
    assert "canine" not in words(cifar10), "a word in-set in one sense is excluded in all"
    for word in ("jet", "airliner", "biplane", "vehicle", "craft", "conveyance"):
        assert word in words(dog_only) and word not in words(cifar10), word
    for lemma in ("auto", "motorcar", "airplane", "aeroplane", "truck", "ship", "frog", "toad"):
        assert lemma not in words(cifar10), lemma
    assert {"happy", "wooden", "mercury", "sunset"} <= words(cifar10)


def test_a_class_without_a_synset_excludes_its_name():
    assert "happy" not in words(negative_candidates(one_class("Happy", None)))


def test_proper_nouns_are_not_candidates(cifar10):
    assert not {"einstein", "paris", "mississippi", "american", "christmas"} & words(cifar10)
    for candidate in cifar10[::97]:
        synset = get_synset(candidate.synset)
        assert not synset.instance_hypernyms(), candidate
        assert not synset.lemma_names()[0][0].isupper(), candidate


def test_candidates_are_prompted_as_neglabel_does_and_in_a_fixed_order(cifar10):
    nouns = [c for c in cifar10 if c.pos == NOUN]
    adjectives = [c for c in cifar10 if c.pos == ADJECTIVE]
    assert cifar10 == nouns + adjectives, "nouns first, then adjectives"
    assert len(nouns) > 40_000 and len(adjectives) > 10_000
    assert len(words(cifar10)) == len(cifar10), "each word once"
    wooden = next(c for c in adjectives if c.word == "wooden")
    assert wooden.prompt == "This is a wooden photo"
    assert "red" in words(cifar10, NOUN) and "red" not in words(cifar10, ADJECTIVE), "a word once, noun first"
    sunset = next(c for c in nouns if c.word == "sunset")
    assert sunset.prompt == "the nice sunset"
    assert "_" not in "".join(c.word for c in cifar10) and all(c.word == c.word.lower() for c in cifar10)
    assert negative_candidates(builtin_class_set("cifar10")) == cifar10


def test_selection_keeps_the_least_similar_share_per_part_of_speech(cifar10):
    parts = [c.pos for c in cifar10]
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randn(len(cifar10), 32, generator=generator)
    inset = torch.randn(10, 32, generator=generator)
    chosen = select_negatives(candidates, inset, parts_of_speech=parts)
    nouns = parts.count(NOUN)
    assert len(chosen) == int(nouns * 0.15) + int((len(parts) - nouns) * 0.15)
    assert len(set(chosen.tolist())) == len(chosen)
    assert all(parts[i] == NOUN for i in chosen[: int(nouns * 0.15)].tolist())
    scores = torch.quantile(torch.nn.functional.normalize(candidates, dim=1)
                            @ torch.nn.functional.normalize(inset, dim=1).T, 0.95, dim=1)
    noun_rows = torch.tensor([i for i, p in enumerate(parts) if p == NOUN])
    kept = chosen[: int(nouns * 0.15)]
    assert scores[kept].max() <= scores[noun_rows].kthvalue(int(nouns * 0.15) + 1).values


def test_equal_scores_keep_the_candidates_order():
    inset = torch.eye(4)[:2]
    candidates = torch.eye(4)[[2, 3, 2, 3, 0, 1, 0, 1]]  # four tied at cosine 0, four at 1
    assert select_negatives(candidates, inset, keep=0.5).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("args, kwargs, message", [
    ((torch.zeros(0, 8), torch.rand(3, 8)), {}, "no candidate negative labels"),
    ((torch.rand(5, 8), torch.zeros(0, 8)), {}, "there are none"),
    ((torch.rand(5, 8), torch.rand(3, 4)), {}, "differ in width"),
    ((torch.rand(5, 8), torch.rand(3, 8)), {"keep": 0.0}, "(0, 1]"),
    ((torch.rand(5, 8), torch.rand(3, 8)), {"eta": 1.5}, "between 0 and 1"),
    ((torch.rand(5, 8), torch.rand(3, 8)), {"keep": 0.15}, "leaves no negative label"),
    ((torch.rand(5, 8), torch.rand(3, 8)), {"parts_of_speech": [NOUN]}, "1 parts of speech for 5"),
])
def test_selection_failures_are_one_clear_error(args, kwargs, message):
    with pytest.raises(NegativeLabelError) as raised:
        select_negatives(*args, **kwargs)
    assert isinstance(raised.value, InputError)
    assert message in raised.value.message and "\n" not in raised.value.message
