"""The OpenAI-protocol stub other tests rely on: each mode over raw HTTP, schedules, the request
log and concurrent requests."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gloss_gen.core.prompts import build_prompts
from gloss_gen.data.classsets import load_class_set
from gloss_gen.describe.llm import build_messages, class_facts, extract_descriptions
from gloss_gen.testing.llm_stub import LLMStub, stub_descriptions

PROMPT = "Class: tench\nDefinition: freshwater dace-like game fish of Europe\nAnswer with only a JSON array of 4 strings."


def _chat(stub: LLMStub, prompt: str = PROMPT, timeout: float = 10.0) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": prompt}]}
    return httpx.post(f"{stub.url}/chat/completions", json=body, timeout=timeout)


def _content(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def test_normal_answer_is_a_class_specific_json_array():
    with LLMStub() as stub:
        response = _chat(stub)
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
        items = json.loads(_content(response))
        assert len(items) == 4 and len(set(items)) == 4
        assert items[0] == "is a freshwater dace-like game fish of Europe"
        assert _content(_chat(stub)) == _content(response)  # deterministic
        other = json.loads(_content(_chat(stub, PROMPT.replace("tench", "goldfish"))))
        assert other != items
        models = httpx.get(f"{stub.url}/models").json()
        assert models["data"][0]["id"] == "stub-model"


def test_failure_modes_over_http():
    with LLMStub(retry_after="2", retry_after_ms=1500) as stub:
        stub.set_mode("429")
        limited = _chat(stub)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2" and limited.headers["retry-after-ms"] == "1500"
        stub.set_mode("500")
        assert _chat(stub).status_code == 500
        stub.set_mode("malformed")
        with pytest.raises(json.JSONDecodeError):
            json.loads(_content(_chat(stub)))
        stub.set_mode("truncated")
        cut = _chat(stub)
        assert cut.json()["choices"][0]["finish_reason"] == "length"
        with pytest.raises(json.JSONDecodeError):
            json.loads(_content(cut))
        stub.set_mode("chatty")
        chatty = _content(_chat(stub))
        assert chatty.startswith("Sure!") and "1. " in chatty and "```json" in chatty
        stub.set_mode("empty")
        assert _content(_chat(stub)) == ""


def test_timeout_mode_outlasts_the_client():
    with LLMStub(mode="timeout", slow_s=30) as stub, pytest.raises(httpx.ReadTimeout):
        _chat(stub, timeout=0.3)


def test_schedule_is_per_class_attempt_and_class_modes_override():
    with LLMStub(schedule=["429", "500"], class_modes={"goldfish": "500"}) as stub:
        assert [_chat(stub).status_code for _ in range(4)] == [429, 500, 200, 200]
        goldfish = PROMPT.replace("tench", "goldfish")
        assert [_chat(stub, goldfish).status_code for _ in range(3)] == [500, 500, 500]
        assert [r.attempt for r in stub.requests_for("tench")] == [1, 2, 3, 4]
        assert [r.mode for r in stub.requests_for("tench")] == ["429", "500", "normal", "normal"]
        stub.reset()
        assert stub.requests == []
        assert _chat(stub).status_code == 429  # attempts count again from 1


def test_bad_requests_and_unknown_modes():
    with LLMStub() as stub:
        bad = httpx.post(f"{stub.url}/chat/completions", content=b"{not json", timeout=5)
        assert bad.status_code == 400 and "invalid request body" in bad.json()["error"]["message"]
        assert httpx.post(f"{stub.url}/completions", json={}, timeout=5).status_code == 404
        with pytest.raises(ValueError, match="unknown stub mode"):
            stub.set_mode("flaky")


def test_concurrent_requests_are_served_in_parallel_and_logged(tmp_path):
    log = tmp_path / "requests.jsonl"
    with LLMStub(latency_ms=500, log_path=log) as stub:
        prompts = [PROMPT.replace("tench", f"class {i}") for i in range(16)]
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda p: _chat(stub, p).status_code, prompts))
        assert statuses == [200] * 16
        # Served side by side, not one after another (how many overlap depends on thread start-up).
        assert stub.max_in_flight >= 4 and stub.in_flight == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(e["class"] for e in entries) == sorted(f"class {i}" for i in range(16))
    assert all(e["attempt"] == 1 and e["mode"] == "normal" for e in entries)


def test_stub_descriptions_are_distinct_for_any_count():
    for n in (1, 5, 12):
        items = stub_descriptions("zebra", None, n)
        assert len(items) == n == len(set(items))


# --------------------------------------------------------------------------- the stub's English

# An answer must not end on one of these: it reads as cut off ("carries passengers or").
STOPWORDS = set("a an the and or nor but of with to for from by in on at as into that which who its their "
                "is are was has have been be than very".split())
# "a" before these vowel letters: they start with a consonant sound ("a uniform", "a European").
CONSONANT_SOUND = ("uni", "use", "usu", "eu", "one", "ure")
SILENT_H = ("hour", "honest", "honor", "heir")
CLASSES = [("cifar10", "dog"), ("cifar10", "ship"), ("cifar10", "airplane"), ("cifar10", "frog"),
           ("imagenet1k", "tench")]


def _article_mistakes(text: str) -> list[str]:
    mistakes = []
    for article, word in re.findall(r"\b(a|an|A|An)\s+([A-Za-z][\w-]*)", text):
        lower = word.lower()
        if lower.startswith(SILENT_H):
            wanted = "an"
        elif lower.startswith(CONSONANT_SOUND):
            wanted = "a"
        else:
            wanted = "an" if lower[0] in "aeiou" else "a"
        if lower in ("a", "an", "the") or article.lower() != wanted:
            mistakes.append(f"{article} {word}")
    return mistakes


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z-]+", text.lower()) if len(w) > 3 and w not in STOPWORDS}


@pytest.fixture(scope="module")
def stub_answers():
    """(class set, class) -> style -> (the ClassFacts, the texts the stub answered, their CLIP prompts)."""
    answers = {}
    with LLMStub() as stub:
        for set_name, class_name in CLASSES:
            class_set = load_class_set(set_name)
            specs = {c.name: c for c in class_set.classes}
            facts = class_facts(specs[class_name])
            others = [class_facts(c) for c in class_set.classes if c.name != class_name][:3]
            for style in ("phrases", "gloss"):
                messages = build_messages(facts, others, 5, style=style)
                response = httpx.post(f"{stub.url}/chat/completions", json={"model": "m", "messages": messages},
                                      timeout=10)
                texts = json.loads(_content(response))
                prompts = build_prompts(class_name, extract_descriptions(json.dumps(texts), class_name, style=style),
                                        style)
                answers.setdefault((set_name, class_name), {})[style] = (facts, texts, prompts)
    return answers


@pytest.mark.parametrize(("set_name", "class_name"), CLASSES)
@pytest.mark.parametrize("style", ["phrases", "gloss"])
def test_stub_answers_are_grammatical_phrases_from_the_classs_gloss(stub_answers, set_name, class_name, style):
    facts, texts, prompts = stub_answers[(set_name, class_name)][style]
    assert len(texts) == 5 == len(set(texts)) == len(prompts)
    # (the prompt's own opening, "a photo of a airplane, which is", is the library's fixed form)
    for text in texts + [p.partition(", which ")[2] for p in prompts]:
        assert not re.search(r"\b(a|an) (a|an|the)\b", text, re.IGNORECASE), text  # no "an a member"
        assert _article_mistakes(text) == [], text
        last = re.findall(r"[\w-]+", text)[-1]
        assert last.lower() not in STOPWORDS, f"ends on {last!r}: {text}"
        assert class_name not in text, text  # the class is not repeated
    words = [len(t.split()) for t in texts]
    if style == "phrases":
        assert max(words) <= 12  # what the prompt allows
        assert all(re.fullmatch(rf"{class_name}, which (is|has|resembles) .+\.", p) for p in prompts), prompts
    else:
        assert all(10 <= n <= 30 for n in words), texts  # "10 to 30 words"
        assert all(p.startswith(f"a photo of a {class_name}, which is ") for p in prompts), prompts
    # the class's own WordNet gloss and hypernyms, not generic filler
    said = " ".join(texts).lower()
    assert facts.hypernyms[0].lower() in said
    gloss_words = _content_words(facts.definition.split(";")[0])
    assert len(gloss_words & _content_words(said)) >= min(3, len(gloss_words)), (gloss_words, texts)


def test_stub_answers_read_as_english(stub_answers):
    dog, ship = stub_answers[("cifar10", "dog")], stub_answers[("cifar10", "ship")]
    assert dog["phrases"][2][:2] == ["dog, which is a member of the genus Canis.",
                                     "dog, which is a kind of canine."]
    assert ship["phrases"][2][0] == "ship, which is a vessel that carries passengers or freight."
    assert ship["gloss"][1][0].startswith("a vessel that carries passengers or freight, typically seen ")
    frog = stub_answers[("cifar10", "frog")]["phrases"][1]
    assert frog[0].startswith("is one of various tailless stout-bodied amphibians")  # "any of": no "a any"
    airplane = stub_answers[("cifar10", "airplane")]["phrases"][1]
    assert airplane[0] == "is an aircraft that has a fixed wing"
    assert len(set(dog["phrases"][1]) & set(ship["phrases"][1])) <= 1  # class-specific (a setting may repeat)
