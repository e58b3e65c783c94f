"""The ``vgloss`` method's two styles: what the LLM is told, and the prompts its answers become."""

import asyncio
import json
import re

import pytest

from gloss_gen.core.prompts import build_prompts
from gloss_gen.data.classsets import ClassSet, load_class_set
from gloss_gen.data.descriptions import DescriptionError, load_description_set
from gloss_gen.describe.describe_job import DescribeOptions, run_describe_job
from gloss_gen.describe.llm import PROMPT_VERSIONS, ClassFacts, build_messages, extract_descriptions
from gloss_gen.testing.llm_stub import LLMStub, stub_descriptions

TENCH = ClassFacts(name="tench", lemmas=("tench", "Tinca tinca"), definition="freshwater dace-like game fish",
                   hypernyms=("cyprinid", "fish"))


def _user_prompt(messages) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


def _rendered(answer: str, class_name: str, style: str) -> list[str]:
    prompt_style = {"phrases": "phrases", "gloss": "gloss"}[style]
    return build_prompts(class_name, extract_descriptions(answer, class_name, style=style), prompt_style)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('["A tench has a long olive-green body.", "small red eyes"]',
         ["tench, which has a long olive-green body.", "tench, which has small red eyes."]),
        ('["a metallic olive-green base", "typically seen outdoors"]',  # the stub answers
         ["tench, which has a metallic olive-green base.", "tench, which is typically seen outdoors."]),
        ('1. It is a stout fish\n2. Tenches are often found in weedy ponds\n3. with thick, rubbery lips',
         ["tench, which is a stout fish.", "tench, which is often found in weedy ponds.",
          "tench, which has thick, rubbery lips."]),
        ('{"descriptions": ["typically swims near the muddy bottom", "covered in tiny slimy scales", "antlers"]}',
         ["tench, which typically swims near the muddy bottom.", "tench, which is covered in tiny slimy scales.",
          "tench, which has antlers."]),
    ],
)
def test_phrases_from_llm_style_answers_render_as_the_instruction_says(answer, expected):
    assert _rendered(answer, "tench", "phrases") == expected


def test_phrase_instruction_and_sentence_rule_agree():
    prompt = _user_prompt(build_messages(TENCH, [], 5))
    assert 'completes the sentence "tench, which has ..."' in prompt
    # every example the instruction quotes becomes exactly the sentence it promises
    nouns = re.search(r"such as (.+?)\. A phrase", prompt).group(1)
    verbs = re.search(r"as in (.+?)\. At most", prompt).group(1)
    for example in re.findall(r'"([^"]+)"', nouns):
        assert build_prompts("tench", [example], "phrases") == [f"tench, which has {example}."]
    for example in re.findall(r'"([^"]+)"', verbs):
        assert build_prompts("tench", [example], "phrases") == [f"tench, which {example}."]


def test_stub_answers_render_grammatically():
    for spec in load_class_set("cifar10").classes:
        answer = json.dumps(stub_descriptions(spec.name, "a thing with wheels; or wings", 6, ("vehicle", "object")))
        prompts = _rendered(answer, spec.name, "phrases")
        assert prompts[:3] == [f"{spec.name}, which is a thing with wheels.", f"{spec.name}, which is a kind of vehicle.",
                               f"{spec.name}, which resembles an object in its overall shape."]
        for prompt in prompts[3:]:
            assert re.fullmatch(rf"{spec.name}, which (has an? (?!is |typically ).+|is typically seen .+)\.", prompt), prompt


def test_gloss_style_asks_for_a_visual_gloss_and_embeds_it_like_a_definition():
    rooster = ClassFacts(name="rooster", lemmas=("rooster", "cock"), definition="adult male chicken",
                         hypernyms=("chicken", "domestic fowl"))
    prompt = _user_prompt(build_messages(rooster, [TENCH], 1, style="gloss"))
    assert "Write 1 visual gloss of a rooster" in prompt and "tells it apart from the classes above" in prompt
    assert "Definition: adult male chicken" in prompt and "JSON array of 1 strings" in prompt
    sentence = re.search(r'completes the sentence "(.+?) \.\.\."', prompt).group(1)
    assert build_prompts("rooster", ["X"], "gloss") == [f"{sentence} X"]  # the sentence it is told
    answer = '["A rooster is a male bird that is larger than the female and has a red comb on its head."]'
    assert _rendered(answer, "rooster", "gloss") == [
        "a photo of a rooster, which is a male bird that is larger than the female and has a red comb on its head"
    ]
    assert _rendered('["It is larger than a hen, with a tall red comb"]', "rooster", "gloss") == [
        "a photo of a rooster, which is larger than a hen, with a tall red comb"
    ]
    assert "which has" not in _user_prompt(build_messages(rooster, [], 2, style="gloss"))


def test_both_styles_through_the_stub_are_told_apart_in_provenance_keys_and_eval(tmp_path, tiny_model):
    from gloss_gen.data.classifier import build_classifier
    from gloss_gen.evaluation.runner import parse_methods, prepare_method

    class_set = ClassSet("pets", load_class_set("cifar10").classes[3:6])  # cat, deer, dog
    paths = {}
    with LLMStub() as stub:
        for style, n in (("phrases", 5), ("gloss", 1)):
            options = DescribeOptions("vgloss", style=style, n_descriptions=n, llm_model="stub-model",
                                      base_url=stub.url, api_key="test", max_retries=0)
            paths[style] = tmp_path / f"pets.{style}.jsonl"
            summary = asyncio.run(run_describe_job(class_set, options, paths[style], progress=False))
            assert summary.ok
        assert "visual gloss" in stub.requests_for("cat")[-1].prompt
        with pytest.raises(DescriptionError, match="phrases style, not gloss"):
            asyncio.run(run_describe_job(class_set, options, paths["phrases"], progress=False))

    sets = {style: load_description_set(path, class_set) for style, path in paths.items()}
    for style, ds in sets.items():
        assert ds.prompt_style == style
        assert {r.provenance["vgloss_style"] for r in ds.records} == {style}
        assert {r.provenance["prompt_version"] for r in ds.records} == {PROMPT_VERSIONS[style]}
    assert [len(r.descriptions) for r in sets["gloss"].records] == [1, 1, 1]
    keys = {style: build_classifier(tiny_model, ds).key for style, ds in sets.items()}
    assert keys["phrases"] != keys["gloss"]
    # eval takes both files side by side, each with its own prompt style
    specs = parse_methods(f"vgloss:{paths['phrases']},vgloss:{paths['gloss']}")
    assert [prepare_method(spec, class_set).descriptions.prompt_style for spec in specs] == ["phrases", "gloss"]


def test_old_vgloss_files_keep_the_prompt_they_were_written_for(tmp_path):
    from gloss_gen.data.descriptions import DescriptionRecord, write_jsonl

    cifar = load_class_set("cifar10")
    records = []
    for index, spec in enumerate(cifar.classes):
        record = DescriptionRecord.for_class(spec, cifar, index, "vgloss")
        record.descriptions = ["a long body"]
        record.provenance = {"prompt_style": "dclip", "prompt_version": "vgloss-v1"}
        records.append(record)
    write_jsonl(tmp_path / "old.jsonl", records)
    assert load_description_set(tmp_path / "old.jsonl").prompt_style == "dclip-photo"
