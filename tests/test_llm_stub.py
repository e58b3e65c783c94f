"""The OpenAI-protocol stub other tests rely on: each mode over raw HTTP, schedules, the request
log and concurrent requests."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

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
        assert items[0] == "the form of a freshwater dace-like game fish of Europe"
        assert "distinctive tench markings" in items
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
