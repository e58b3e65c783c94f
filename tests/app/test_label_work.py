"""The text work one request may ask for (issue 9): ad-hoc labels in few templates, a per-request
prompt budget, turns between builds, and a shutdown that stops a build in progress."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
from api_helpers import free_port, metric_value, multipart, start_vgloss_serve, wait_for_vgloss_serve

from gloss_gen.core.config import Settings
from gloss_gen.core.prompts import template_count

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = "vgloss_text_prompts_encoded_total"


def _labels(count: int, tag: str) -> list[str]:
    return [f"{tag} thing number {i}" for i in range(count)]


def _encoded(client) -> float:
    return metric_value(client.get("/metrics").text, PROMPTS)


def test_the_defaults_admit_max_labels_in_the_label_templates():
    settings = Settings(_env_file=None)
    assert settings.label_templates == "simple" and template_count("simple") == 7
    assert settings.max_labels * template_count(settings.label_templates) <= settings.max_label_prompts


def test_labels_over_the_prompt_budget_are_refused_before_any_text_is_encoded(app_factory, jpeg_bytes):
    client = app_factory(label_templates="openai")  # 80 prompts a label: 101 labels are 8,080 prompts
    before = _encoded(client)
    response = client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=_labels(101, "big")))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_label_prompts"
    assert "8,080 prompts" in error["message"] and "8,000" in error["message"]
    assert "at most 100 labels" in error["message"]
    assert _encoded(client) == before
    assert client.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=_labels(3, "ok"))).status_code == 200


def test_a_big_label_build_holds_neither_a_small_label_request_nor_the_exit(tmp_path, jpeg_bytes):
    """A real ``vgloss serve``: 1000 labels in CLIP's 80 templates (80,000 prompts, tens of seconds
    of vgloss-tiny) are being embedded; one label is answered meanwhile, and SIGTERM stops the build
    (503 ``shutting_down`` for its request) and the server at once."""
    port = free_port()
    log_path = tmp_path / "server.log"
    server = start_vgloss_serve(
        tmp_path, port, log_path, wait=False,
        VGLOSS_DEFAULT_METHOD="classname",  # cifar10 without loading WordNet: a faster start
        VGLOSS_LABEL_TEMPLATES="openai", VGLOSS_MAX_LABEL_PROMPTS="80000",
    )
    base = f"http://127.0.0.1:{port}"
    big_answers: list[httpx.Response] = []
    big_labels = _labels(1000, "big")

    def ask_big() -> None:
        big_answers.append(httpx.post(f"{base}/v1/classify", **multipart(jpeg_bytes[:1], labels=big_labels),
                                      timeout=120))

    try:
        wait_for_vgloss_serve(server, port, log_path)
        deadline = time.monotonic() + 120
        big = threading.Thread(target=ask_big)
        big.start()
        with httpx.Client(base_url=base, timeout=30) as http:
            while _encoded(http) < 80 * len(big_labels):  # counted as the build starts
                assert time.monotonic() < deadline and big.is_alive(), log_path.read_text()
                time.sleep(0.02)
            small = http.post("/v1/classify", **multipart(jpeg_bytes[:1], labels=["a cat"]))
            big_was_waiting = big.is_alive() and not big_answers
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(60)
        exit_s = time.monotonic() - sent
        big.join(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
    assert small.status_code == 200, small.text
    assert [p["label"] for p in small.json()["results"][0]["predictions"]] == ["a cat"]
    assert big_was_waiting
    assert exit_code in (0, -signal.SIGTERM), log_path.read_text()
    assert exit_s < 5, f"the server took {exit_s:.1f}s to exit"
    assert len(big_answers) == 1 and big_answers[0].status_code == 503, big_answers and big_answers[0].text
    assert big_answers[0].json()["error"]["code"] == "shutting_down"
    assert "Application shutdown complete." in log_path.read_text()
