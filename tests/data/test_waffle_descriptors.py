"""The ``waffle`` method: parity with WaffleCLIP's own generation (a transcription of mode ``waffle``
of ``waffle_tools.load_gpt_descriptions``, run on numpy's legacy global RNG as they run it), seeds,
counts, and the method's place in the registry."""

from __future__ import annotations

import string
from types import SimpleNamespace

import numpy as np
import pytest

from gloss_gen.core.prompts import build_prompts
from gloss_gen.data.classsets import ClassSet, ClassSpec, builtin_class_set
from gloss_gen.data.descriptions import DescriptionError, load_description_set, write_jsonl
from gloss_gen.data.methods import METHODS, OFFLINE_METHODS, describe_offline
from gloss_gen.data.waffle_descriptors import (
    DEFAULT_COUNT,
    character_list,
    describe_waffle,
    waffle_sentences,
    wordnet_words,
)
from gloss_gen.data.wordnet import get_wordnet

# A fixed word list: pronounceable made-up words of 2..11 letters, some starting with "a" (the
# "which is" branch of make_descriptor_sentence) and one that contains a class name ("catalog").
WORDS = ["catalog", "apple", "an", "umbrella", "has", "zebra", "often", "used", "typically", "ox"] + [
    "".join(string.ascii_lowercase[(i * 7 + k * 3) % 26] for k in range(2 + i % 10)) for i in range(190)
]
# Multi-word names, underscores, and a name inside another ("cat" in "wild cat", "catalog").
NAMES = ["cat", "wild_cat", "great white shark", "ox", "Fire-truck (red)", "tench", "cat", "dog's bowl"]


def wordify(string_: str) -> str:
    return string_.replace("_", " ")


def make_descriptor_sentence(descriptor: str) -> str:
    if descriptor.startswith("a") or descriptor.startswith("an"):
        return f"which is {descriptor}"
    elif descriptor.startswith("has") or descriptor.startswith("often") or descriptor.startswith("typically") or descriptor.startswith("may") or descriptor.startswith("can"):  # noqa: E501
        return f"which {descriptor}"
    elif descriptor.startswith("used"):
        return f"which is {descriptor}"
    else:
        return f"which has {descriptor}"


def their_waffle(names: list[str], word_list: list[str], seed: int, waffle_count: int = 15) -> dict[str, list[str]]:
    """WaffleCLIP's mode 'waffle', transcribed: opt as base_main.py's defaults, the global legacy RNG
    seeded as seed_everything seeds it, gpt_descriptions keyed by class name (JSON-dict order), and
    the character list made from a descr_list, here the class names (our stand-in for theirs)."""
    opt = SimpleNamespace(pre_descriptor_text="", label_before_text="A photo of a ", label_after_text=".",
                          descriptor_separator=", ", apply_descriptor_modification=True, waffle_count=waffle_count)
    np.random.seed(seed)
    gpt_descriptions = {name: [] for name in names}
    descr_list = np.array([wordify(n) for n in gpt_descriptions])
    key_list = list(gpt_descriptions.keys())

    def structured_descriptor_builder(item, cls):
        return (f"{opt.pre_descriptor_text}{opt.label_before_text}{wordify(cls)}{opt.descriptor_separator}"
                f"{make_descriptor_sentence(item)}{opt.label_after_text}")

    avg_num_words = int(np.max([np.round(np.mean([len(wordify(x).split(' ')) for x in key_list])), 1]))
    avg_word_length = int(np.round(np.mean([np.mean([len(y) for y in wordify(x).split(' ')]) for x in key_list])))
    word_list = [x[:avg_word_length] for x in word_list]

    character_list = [x.split(' ') for x in descr_list]
    character_list = [x.replace(',', '').replace('.', '') for x in np.unique([x for y in character_list for x in y])]
    character_list = np.unique(list(''.join(character_list)))

    num_spaces = int(np.round(np.mean([np.sum(np.array(list(x)) == ' ') for x in key_list]))) + 1
    num_chars = int(np.ceil(np.mean([np.max([len(y) for y in x.split(' ')]) for x in key_list])))
    num_chars += num_spaces - num_chars % num_spaces
    sample_key = ''
    for s in range(num_spaces):
        for _ in range(num_chars // num_spaces):
            sample_key += 'a'
        if s < num_spaces - 1:
            sample_key += ' '

    gpt_descriptions = {key: [] for key in gpt_descriptions.keys()}
    for key in key_list:
        for _ in range(opt.waffle_count):
            base_word = ''
            for a in range(avg_num_words):
                base_word += np.random.choice(word_list, 1, replace=False)[0]
                if a < avg_num_words - 1:
                    base_word += ' '
            gpt_descriptions[key].append(structured_descriptor_builder(base_word, key))
            noise_word = ''
            for c in sample_key:
                if c != ' ':
                    noise_word += np.random.choice(character_list, 1, replace=False)[0]
                else:
                    noise_word += ', '
            gpt_descriptions[key].append(structured_descriptor_builder(noise_word, key))

    match_key = np.random.choice(key_list)
    gpt_descriptions = {key: gpt_descriptions[match_key] for key in key_list}
    for key in gpt_descriptions:
        gpt_descriptions[key] = [x.replace(wordify(match_key), wordify(key)) for x in gpt_descriptions[key]]
    return gpt_descriptions


@pytest.fixture(autouse=True)
def keep_global_rng():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def class_set(names: list[str]) -> ClassSet:
    return ClassSet(name="waffle-test", classes=[ClassSpec(id=f"c{i}", name=n) for i, n in enumerate(names)])


@pytest.mark.parametrize("seed", [0, 1, 6, 12345])
@pytest.mark.parametrize("names", [NAMES, ["airplane", "automobile", "bird", "cat", "deer"], ["one_class"]])
def test_sentences_equal_wafflecips_to_the_character(seed: int, names: list[str]):
    theirs = their_waffle(names, WORDS, seed)
    ours, details = waffle_sentences(names, seed=seed, words=WORDS)
    assert ours == theirs
    assert details["seed"] == seed and details["match_class"] in names


def test_parity_holds_for_other_counts():
    assert waffle_sentences(NAMES, seed=3, count=4, words=WORDS)[0] == their_waffle(NAMES, WORDS, 3, waffle_count=4)


def test_the_sentences_have_their_form_and_every_class_shares_the_descriptors():
    sentences, details = waffle_sentences(NAMES, seed=0, words=WORDS)
    assert details["avg_num_words"] == 2 and details["avg_word_length"] == 4 and details["sample_key"] == "aaaa aaaa"
    tench = sentences["tench"]
    assert len(tench) == 2 * DEFAULT_COUNT
    assert all(s.startswith("A photo of a tench, which ") and s.endswith(".") for s in tench)
    # Word descriptors at even positions, character noise (groups joined by ", ") at odd ones.
    noise = tench[1].removeprefix("A photo of a tench, which has ").removesuffix(".")
    assert noise.count(", ") == details["sample_key"].count(" ")
    assert set(noise.replace(", ", "")) <= set(character_list(NAMES))
    # The same descriptors for every class: strip each class's name and the rest is identical.
    assert [s.replace("wild cat", "X") for s in sentences["wild_cat"]] == [s.replace("tench", "X") for s in tench]


def test_a_seed_gives_the_same_sentences_every_time_and_another_seed_others():
    first = waffle_sentences(NAMES, seed=5, words=WORDS)[0]
    assert waffle_sentences(NAMES, seed=5, words=WORDS)[0] == first
    assert waffle_sentences(NAMES, seed=6, words=WORDS)[0] != first
    # ...and it never touches numpy's global generator.
    np.random.seed(11)
    waffle_sentences(NAMES, seed=5, words=WORDS)
    after = np.random.random()
    np.random.seed(11)
    assert np.random.random() == after


def test_the_word_list_is_wordnets_single_words_sorted():
    words = wordnet_words()
    assert list(words) == sorted(set(words)) and len(words) > 50_000
    assert all(w.isascii() and w.isalpha() for w in words)
    assert {"dog", "zebra", "umbrella"} <= set(words)
    # The same words NLTK's reader lists.
    from_nltk = {n for n in get_wordnet().all_lemma_names() if n.isascii() and n.isalpha()}
    assert set(words) == from_nltk


def test_cifar10_set_has_15_pairs_per_class_and_a_content_id_per_seed():
    cifar10 = builtin_class_set("cifar10")
    seed0 = describe_waffle(cifar10)
    assert seed0.method == "waffle" and seed0.prompt_style == "sentence"
    assert [len(r.descriptions) for r in seed0.records] == [30] * 10
    assert all(r.descriptions[0].startswith(f"A photo of a {r.name}, which ") for r in seed0.records)
    assert seed0.records[0].provenance["seed"] == 0 and seed0.records[0].provenance["waffle_count"] == 15
    assert describe_waffle(cifar10).id == seed0.id
    assert describe_waffle(cifar10, seed=1).id != seed0.id
    assert [len(r.descriptions) for r in describe_waffle(cifar10, count=2).records] == [4] * 10
    # The sentences are the prompts, as written: no template around them.
    record = seed0.records[3]
    assert build_prompts(record.name, record.descriptions, seed0.prompt_style) == record.descriptions


def test_waffle_is_an_offline_method_and_its_file_reads_back(tmp_path):
    assert "waffle" in OFFLINE_METHODS and METHODS["waffle"].kind == "offline"
    cifar10 = builtin_class_set("cifar10")
    made, report = describe_offline(cifar10, "waffle")
    assert report is None
    path = tmp_path / "cifar10.waffle.jsonl"
    write_jsonl(path, made.records)
    loaded = load_description_set(path)
    assert loaded.prompt_style == "sentence" and loaded.method == "waffle" and loaded.id == made.id


def test_classes_that_share_a_name_share_its_sentences():
    made = describe_waffle(class_set(NAMES))
    assert made.records[0].descriptions == made.records[6].descriptions  # two classes named "cat"
    assert made.records[0].descriptions != made.records[1].descriptions


def test_bad_input_is_one_line():
    with pytest.raises(DescriptionError, match="at least 1"):
        waffle_sentences(["cat"], count=0, words=WORDS)
    with pytest.raises(DescriptionError, match="at least one class"):
        waffle_sentences([], words=WORDS)
