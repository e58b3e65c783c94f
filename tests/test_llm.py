"""The vgloss method's LLM side: prompt content, confusables, parsing, the 77-token cap and the
retry policy, against the local OpenAI-protocol stub with the real ``openai`` client."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import open_clip
import pytest

from gloss_gen.core.prompts import dclip_prompt
from gloss_gen.data import wordnet
from gloss_gen.data.classsets import build_class_set, load_class_set
from gloss_gen.describe.describe_job import DescribeOptions, prepare
from gloss_gen.describe.llm import (
    CLIP_CONTEXT_LENGTH,
    PLACEHOLDER_API_KEY,
    LLMConfigError,
    LLMError,
    RetryPolicy,
    clean_description,
    extract_descriptions,
    find_confusables,
    fit_clip_context,
    make_client,
    parse_descriptions,
    parse_retry_after,
    request_descriptions,
    similarity_matrix,
)
from gloss_gen.testing.llm_stub import LLMStub

FAST = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(scope="module")
def imagenet():
    return load_class_set("imagenet1k")


@pytest.fixture(scope="module")
def imagenet_context(imagenet):
    return prepare(imagenet, DescribeOptions("vgloss"))


@pytest.fixture
def stub():
    with LLMStub() as server:
        yield server


def _user_prompt(messages: list[dict]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


# --------------------------------------------------------------------------- prompt


def test_prompt_grounds_tench_in_wordnet_and_names_confusables_from_the_same_set(imagenet, imagenet_context):
    tench = imagenet.names.index("tench")
    prompt = _user_prompt(imagenet_context.messages(tench))
    synset = wordnet.get_synset("n01440764")

    assert "Class: tench" in prompt
    assert "Tinca tinca" in prompt  # a lemma other than the class name
    assert synset.definition() in prompt
    for hypernym in wordnet.hypernym_chain(synset, 2):
        assert wordnet.display_name(hypernym) in prompt
    assert "JSON array of 5 strings" in prompt

    confusables = imagenet_context.confusables[tench]
    assert len(confusables) == 5
    assert tench not in confusables
    names = [imagenet.classes[j].name for j in confusables]
    assert names[0] == "goldfish"  # the nearest fish by Wu-Palmer
    for j in confusables:
        other = imagenet.classes[j]
        assert other.name in imagenet.names
        assert f"- {other.name}: {wordnet.get_synset(other.synset).definition()}" in prompt
    assert not any(name in prompt for name in ("airliner", "tabby cat", "pizza"))


def test_confusable_count_follows_k(imagenet):
    cifar = load_class_set("cifar10")
    assert all(len(c) == 3 for c in find_confusables(cifar, 3))
    context = prepare(cifar, DescribeOptions("vgloss", k_confusables=0, n_descriptions=7))
    prompt = _user_prompt(context.messages(0))
    assert "told apart" not in prompt and "JSON array of 7 strings" in prompt


def test_cifar_confusables_are_semantically_nearest():
    cifar = load_class_set("cifar10")
    near = find_confusables(cifar, 2)
    assert cifar.names[near[cifar.names.index("automobile")][0]] == "truck"
    assert cifar.names[near[cifar.names.index("cat")][0]] == "dog"
    assert cifar.names[near[cifar.names.index("deer")][0]] == "horse"


def test_labels_unknown_to_wordnet_fall_back_to_name_similarity():
    labels = ["tench", "goldfish", "zorblax cruiser", "zorblax freighter", "quoxite crystal"]
    class_set = build_class_set("mixed", labels)
    assert class_set.classes[2].synset is None
    near = find_confusables(class_set, 2)
    assert class_set.names[near[2][0]] == "zorblax freighter"
    assert class_set.names[near[0][0]] == "goldfish"
    context = prepare(class_set, DescribeOptions("vgloss", k_confusables=2))
    prompt = _user_prompt(context.messages(2))
    assert "Class: zorblax cruiser" in prompt and "Definition:" not in prompt
    assert "- zorblax freighter" in prompt


def test_vectorised_wu_palmer_equals_wordnet_similarity(imagenet):
    scores = similarity_matrix(imagenet)
    synsets = [wordnet.get_synset(c.synset) for c in imagenet.classes]
    rng = random.Random(7)
    pairs = [tuple(sorted(rng.sample(range(len(synsets)), 2))) for _ in range(400)]
    pairs += [(0, 1), (0, 2), (1, 2)]
    for i, j in pairs:
        assert scores[i, j] == pytest.approx(wordnet.similarity(synsets[i], synsets[j]), abs=1e-6)
        assert scores[j, i] == scores[i, j]
    assert (scores.diagonal() == 0).all()


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('["a long body", "small red eyes"]', ["a long body", "small red eyes"]),
        ("1. a long body\n2) small red eyes\n3: olive scales", ["a long body", "small red eyes", "olive scales"]),
        ("- a long body\n* small red eyes\n• olive scales", ["a long body", "small red eyes", "olive scales"]),
        ('Sure! Here you go: ["a long body", "small red eyes"] Hope that helps.', ["a long body", "small red eyes"]),
        ('Here:\n```json\n["a long body",\n "small red eyes"]\n```\nDone.', ["a long body", "small red eyes"]),
        ('{"descriptions": ["a long body", "small red eyes"]}', ["a long body", "small red eyes"]),
        ('{"class": "tench", "visual": {"descriptions": ["a long body"]}}', ["a long body"]),
        ('[{"description": "a long body", "why": "x"}, {"text": "small red eyes"}]', ["a long body", "small red eyes"]),
        ('["a long body", "small red ey', ["a long body"]),  # truncated: complete items only
        ("A tench is a lovely fish that lives in ponds.", []),
        ("", []),
        ("   ", []),
    ],
)
def test_parse_descriptions(answer, expected):
    assert parse_descriptions(answer) == expected


def test_extract_drops_empties_and_dedupes_case_insensitively():
    answer = '["A long body.", "a long body", "", "  ", "SMALL red eyes", "small red eyes!", "tench"]'
    assert extract_descriptions(answer, "tench") == ["a long body", "SMALL red eyes"]


def test_extract_caps_at_n():
    answer = '["one fin", "two fins", "three fins", "four fins"]'
    assert extract_descriptions(answer, "tench", n=2) == ["one fin", "two fins"]


def test_chatty_answer_with_list_and_fence_gives_each_description_once():
    answer = ("Sure! Here are 2 descriptions:\n1. a long body\n2. small red eyes\n\n"
              '```json\n["a long body", "small red eyes"]\n```\nAnything else?')
    assert extract_descriptions(answer, "tench") == ["a long body", "small red eyes"]


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("A tench has a long olive-green body.", "has a long olive-green body"),
        ("Tench have small red eyes", "has small red eyes"),
        ("It is a stout fish", "is a stout fish"),  # "which is a stout fish", not "which has"
        ("which has thick lips", "has thick lips"),
        ('"Olive-green scales"', "olive-green scales"),
        ("3. **Small** red eyes;", "small red eyes"),
        ("UV-reflective scales", "UV-reflective scales"),
    ],
)
def test_clean_description_reads_after_which_has(raw, cleaned):
    assert clean_description(raw, "tench") == cleaned


def test_long_description_is_cut_on_a_word_boundary_to_fit_clip_context():
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    words = [f"{colour} stripes" for colour in ("red", "green", "blue", "yellow", "purple")] * 8
    description = "has " + " and ".join(words)
    fitted = fit_clip_context("great white shark", description)

    prompt = dclip_prompt("great white shark", fitted)
    tokens = len(tokenizer.encode(prompt)) + 2  # start and end of text
    assert tokens <= CLIP_CONTEXT_LENGTH
    assert description.startswith(fitted) and description[len(fitted)] == " "  # a whole-word prefix
    assert not fitted.endswith((" and", ","))
    # As long as fits: one more word would not.
    next_words = description[: description.index(" ", len(fitted) + 1)]
    assert len(tokenizer.encode(dclip_prompt("great white shark", next_words))) + 2 > CLIP_CONTEXT_LENGTH - 2
    assert len(fitted.split()) > 20


def test_short_description_is_untouched_and_extract_applies_the_cap():
    assert fit_clip_context("tench", "a long olive-green body") == "a long olive-green body"
    long_answer = '["' + "very " * 100 + 'long body", "small eyes"]'
    result = extract_descriptions(long_answer, "tench")
    assert result[1] == "small eyes"
    assert len(open_clip.get_tokenizer("ViT-B-32").encode(dclip_prompt("tench", result[0]))) + 2 <= 77


# --------------------------------------------------------------------------- retry policy


def test_retry_after_forms():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": format_datetime(now, usegmt=True)}, now=now.timestamp() + 5) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-4"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_exponential_with_full_jitter_and_retry_after_wins():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, max_retry_after_s=60)
    rng = random.Random(1)
    for retry in range(6):
        ceiling = min(4.0, 0.5 * 2**retry)
        delays = [policy.delay(retry, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # full jitter, not fixed
    assert policy.delay(3, retry_after=2.5) == 2.5
    assert policy.delay(0, retry_after=3600) == 60  # capped


# --------------------------------------------------------------------------- the LLM call


def _ask(stub: LLMStub, policy: RetryPolicy = FAST, timeout: float = 10.0, class_name: str = "tench",
         base_url: str | None = None):
    async def go():
        client = make_client(base_url=base_url or stub.url, api_key="test", timeout=timeout)
        try:
            messages = [{"role": "user", "content": f"Class: {class_name}\nDefinition: a freshwater fish\n"
                         "Answer with only a JSON array of 5 strings."}]
            return await request_descriptions(client, model="stub-model", messages=messages,
                                              class_name=class_name, n=5, policy=policy)
        finally:
            await client.close()

    return asyncio.run(go())


def test_normal_answer_gives_five_descriptions(stub):
    answer = _ask(stub)
    assert answer.attempts == 1
    assert len(answer.descriptions) == 5
    assert "is a freshwater fish" in answer.descriptions  # from the prompt's Definition line
    assert answer.response_model == "stub-model"


def test_429_retry_after_is_honoured(stub):
    stub.set_mode(schedule=["429"])
    stub.retry_after = "1"
    answer = _ask(stub, RetryPolicy(max_retries=2, base_delay_s=0.01, max_delay_s=0.01))
    first, second = stub.requests_for("tench")
    assert answer.attempts == 2 and first.status == 429 and second.status == 200
    assert second.started - first.finished >= 0.98  # waited for Retry-After, not the 10 ms backoff


def test_retry_after_ms_is_honoured(stub):
    stub.set_mode(schedule=["429"])
    stub.retry_after, stub.retry_after_ms = None, 400
    _ask(stub, RetryPolicy(max_retries=1, base_delay_s=0.0, max_delay_s=0.0))
    first, second = stub.requests_for("tench")
    assert second.started - first.finished >= 0.38


@pytest.mark.parametrize("failure", ["500", "malformed", "empty", "truncated"])
def test_transient_failure_then_success(stub, failure):
    stub.set_mode(schedule=[failure])
    answer = _ask(stub)
    assert answer.attempts == 2
    assert len(answer.descriptions) == 5
    assert [r.mode for r in stub.requests_for("tench")] == [failure, "normal"]


def test_timeout_then_success(stub):
    stub.set_mode(schedule=["timeout"])
    stub.slow_s = 10
    answer = _ask(stub, timeout=0.5)
    assert answer.attempts == 2 and len(answer.descriptions) == 5
    assert answer.elapsed_s < 5


def test_chatty_answer_is_parsed(stub):
    stub.set_mode("chatty")
    assert len(_ask(stub).descriptions) == 5


def test_permanent_failure_raises_after_all_attempts(stub):
    stub.set_mode("500")
    with pytest.raises(LLMError) as info:
        _ask(stub, RetryPolicy(max_retries=2, base_delay_s=0.01, max_delay_s=0.01))
    assert info.value.attempts == 3 and "HTTP 500" in info.value.reason
    assert len(stub.requests_for("tench")) == 3


def test_client_errors_are_not_retried(stub):
    with pytest.raises(LLMError) as info:
        _ask(stub, base_url=stub.url + "/no-such-prefix")
    assert info.value.attempts == 1 and "HTTP 404" in info.value.reason


def test_unreachable_endpoint_is_retried_then_reported():
    with LLMStub() as server:
        url = server.url
    with pytest.raises(LLMError) as info:
        _ask(server, RetryPolicy(max_retries=1, base_delay_s=0.01, max_delay_s=0.01), base_url=url)
    assert info.value.attempts == 2 and "cannot reach" in info.value.reason


def test_client_needs_a_key_or_a_local_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        make_client()
    client = make_client(base_url="http://127.0.0.1:9/v1")
    assert client.api_key == PLACEHOLDER_API_KEY and client.max_retries == 0
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert str(make_client().base_url).startswith("http://127.0.0.1:9/v1")
