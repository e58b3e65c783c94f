"""The ``waffle`` method: WaffleCLIP's random-word and random-character descriptors.

WaffleCLIP (Roth et al., "Waffling around for Performance", ICCV 2023; ExplainableML/WaffleCLIP,
``waffle_tools.load_gpt_descriptions`` in mode ``waffle``) showed that random words and random
characters, put where DCLIP puts its GPT descriptors, score about as well as those descriptors.
It is the honesty baseline for every description method: a method that does not beat it gains
from ensembling prompts, not from what its descriptions say.

What this module reproduces from their code, step for step:

- the shape of the noise from the class names: ``avg_num_words`` (mean word count, rounded, at
  least 1) and ``avg_word_length`` (mean word length, rounded) of the (underscore-free) names;
  the word list truncated to ``avg_word_length`` characters; a ``sample_key`` of ``num_spaces``
  groups of ``a`` (``num_spaces`` = mean spaces + 1, ``num_chars`` = mean longest word, rounded
  up, padded to a multiple of ``num_spaces``), each group becoming random characters and each
  space ``", "``;
- ``waffle_count`` (default 15) pairs per class, drawn in their order from numpy's legacy
  global RNG after ``seed_everything(seed)`` (``np.random.seed``): a random-word descriptor, then a
  random-character one, each ``np.random.choice(list, 1, replace=False)`` (a full permutation of
  the list per draw; :func:`_pick` makes the same draws without building the array each time);
- the sentence ``structured_descriptor_builder`` writes with their defaults:
  ``"A photo of a {class}, which is/has {descriptor}."`` (``make_descriptor_sentence``,
  quirks included: a random word starting with "a" gets "which is");
- every class gets the *same* descriptors: descriptors are drawn for every class, then one class
  (``np.random.choice(key_list)``) is picked and its sentences are given to all, with its name
  replaced (``str.replace``, every occurrence) by each class's name.

Two inputs differ, because theirs are not ours to use:

- the word list: theirs is a pickle (``word_list.pkl``), which is never unpickled here; ours is
  every lemma name of WordNet 3.0 that is a single ASCII alphabetic word (77,503 words), sorted
  (NLTK gives them lower-cased), so it is the same list on every machine;
- the character list: theirs is every character of the words of the GPT descriptions; we have no
  GPT descriptions, so ours is every character of the words of the class names (names split on
  spaces, ``,`` and ``.`` removed, as they clean the descriptor words), sorted; lower-case ASCII
  letters and digits if the names leave none.

WaffleCLIP reports the mean over seeds 0..6 (``--reps 7``); ``vgloss eval`` takes
``waffle:seeds=N`` for that, and ``waffle:seed=S`` for one seed. The descriptions are the whole
sentences, embedded as written (prompt style ``sentence``).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from gloss_gen.core.prompts import dclip_connective, wordify
from gloss_gen.data import wordnet
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionError, DescriptionRecord, DescriptionSet, provenance

METHOD = "waffle"
PROMPT_STYLE = "sentence"
DEFAULT_SEED = 0
DEFAULT_COUNT = 15  # their --waffle_count: pairs of (random words, random characters) per class
PAPER_SEEDS = 7  # their --reps for WaffleCLIP runs (seeds 0..6)
# Their base_main.py defaults.
LABEL_BEFORE_TEXT = "A photo of a "
LABEL_AFTER_TEXT = "."
PRE_DESCRIPTOR_TEXT = ""
DESCRIPTOR_SEPARATOR = ", "
WORD_LIST_SOURCE = "WordNet 3.0 lemma names: single ASCII alphabetic words, sorted"
FALLBACK_CHARACTERS = string.ascii_lowercase + string.digits


WORDNET_INDEX_FILES = ("index.noun", "index.verb", "index.adj", "index.adv")


@lru_cache(maxsize=1)
def wordnet_words() -> tuple[str, ...]:
    """The word list: WordNet 3.0 lemma names that are one ASCII alphabetic word, sorted. Read
    from the database's index files (the lemma names NLTK's ``all_lemma_names`` gives, without
    the seconds NLTK takes to load its reader)."""
    corpus = wordnet.find_wordnet_corpus()
    words = set()
    for name in WORDNET_INDEX_FILES:
        with (corpus / name).open(encoding="utf-8") as index:
            for line in index:
                if not line.startswith(" "):  # the licence header is indented
                    lemma = line.split(" ", 1)[0]
                    if lemma.isascii() and lemma.isalpha():
                        words.add(lemma)
    return tuple(sorted(words))


def character_list(names: Sequence[str]) -> list[str]:
    """Their cleaning of the descriptor words, applied to the class names: split on spaces, drop
    ``,`` and ``.``, every distinct character, sorted (``np.unique``)."""
    words = {w.replace(",", "").replace(".", "") for name in names for w in wordify(name).split(" ")}
    return sorted(set("".join(words))) or list(FALLBACK_CHARACTERS)


def sentence(descriptor: str, class_name: str) -> str:
    """``structured_descriptor_builder`` with WaffleCLIP's defaults."""
    return (f"{PRE_DESCRIPTOR_TEXT}{LABEL_BEFORE_TEXT}{wordify(class_name)}{DESCRIPTOR_SEPARATOR}"
            f"{dclip_connective(descriptor)}{LABEL_AFTER_TEXT}")


def noise_shape(keys: Sequence[str]) -> tuple[int, int, str]:
    """(avg_num_words, avg_word_length, sample_key) from the class names, as their code computes them."""
    avg_num_words = int(np.max([np.round(np.mean([len(wordify(x).split(" ")) for x in keys])), 1]))
    avg_word_length = int(np.round(np.mean([np.mean([len(y) for y in wordify(x).split(" ")]) for x in keys])))
    num_spaces = int(np.round(np.mean([x.count(" ") for x in keys]))) + 1
    num_chars = int(np.ceil(np.mean([np.max([len(y) for y in x.split(" ")]) for x in keys])))
    num_chars += num_spaces - num_chars % num_spaces
    sample_key = " ".join(["a" * (num_chars // num_spaces)] * num_spaces)
    return avg_num_words, avg_word_length, sample_key


def _pick(rng: np.random.RandomState, items: Sequence[str]) -> str:
    """What ``np.random.choice(items, 1, replace=False)[0]`` returns and draws: the legacy
    generator permutes the whole list and takes the first."""
    return items[int(rng.permutation(len(items))[0])]


def waffle_sentences(
    names: Sequence[str],
    seed: int = DEFAULT_SEED,
    count: int = DEFAULT_COUNT,
    words: Sequence[str] | None = None,
    characters: Sequence[str] | None = None,
) -> tuple[dict[str, list[str]], dict]:
    """({class name: 2 * count sentences}, details) for the distinct ``names``, in their order."""
    keys = list(dict.fromkeys(names))
    if not keys:
        raise DescriptionError("the waffle method needs at least one class")
    if any(not k.strip() for k in keys):
        raise DescriptionError("the waffle method needs a non-empty name for every class")
    if count < 1:
        raise DescriptionError(f"waffle count must be at least 1, not {count}")
    words = wordnet_words() if words is None else words
    characters = character_list(keys) if characters is None else characters
    avg_num_words, avg_word_length, sample_key = noise_shape(keys)
    truncated = [w[:avg_word_length] for w in words]
    rng = np.random.RandomState(seed)  # the state np.random.seed(seed) gives their global generator
    drawn: dict[str, list[str]] = {}
    for key in keys:
        sentences = drawn.setdefault(key, [])
        for _ in range(count):
            base_word = " ".join(_pick(rng, truncated) for _ in range(avg_num_words))
            sentences.append(sentence(base_word, key))
            noise_word = "".join(", " if c == " " else _pick(rng, characters) for c in sample_key)
            sentences.append(sentence(noise_word, key))
    match_key = keys[int(rng.randint(0, len(keys)))]  # np.random.choice(key_list)
    shared = {key: [s.replace(wordify(match_key), wordify(key)) for s in drawn[match_key]] for key in keys}
    details = {
        "seed": seed,
        "waffle_count": count,
        "word_list": WORD_LIST_SOURCE if words is wordnet_words() else "given",
        "word_list_size": len(words),
        "avg_num_words": avg_num_words,
        "avg_word_length": avg_word_length,
        "sample_key": sample_key,
        "characters": "".join(characters),
        "match_class": match_key,
    }
    return shared, details


def describe_waffle(class_set: ClassSet, seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> DescriptionSet:
    """The ``waffle`` description set: 2 * ``count`` WaffleCLIP sentences per class for ``seed``."""
    sentences, details = waffle_sentences(class_set.names, seed=seed, count=count)
    records = []
    for index, spec in enumerate(class_set.classes):
        record = DescriptionRecord.for_class(spec, class_set, index, METHOD)
        record.descriptions = list(sentences[spec.name])
        record.provenance = provenance(METHOD, prompt_style=PROMPT_STYLE, **details)
        records.append(record)
    return DescriptionSet(class_set, METHOD, records, PROMPT_STYLE)
