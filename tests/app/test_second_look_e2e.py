"""Describe → embed → serve → eval for FuDD's second look, offline with the bundled LLM stub: the pair
file the describe verb writes is what the server re-ranks with and what eval scores."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from api_helpers import multipart

from gloss_gen.cli import main
from gloss_gen.data.pair_descriptions import load_pair_description_set
from gloss_gen.data.store import Store
from gloss_gen.data.store_backends import DirectoryBackend
from gloss_gen.testing.llm_stub import LLMStub


def test_describe_embed_serve_eval_with_the_stub(isolated_env, tmp_path, monkeypatch, capsys, live_server_factory,
                                                 jpeg_bytes, sample_photos):
    with LLMStub() as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "stub")
        assert main(["describe", "cifar10", "--method", "fudd", "--confusables", "2", "--no-progress"]) == 0
        asked = len(stub.requests)
    pairs_file = tmp_path / "cifar10.fudd.jsonl"
    pair_set = load_pair_description_set(pairs_file)
    assert len(pair_set.pairs) == asked == 12 and not pair_set.failed
    for (i, j), (first, second) in pair_set.pairs.items():
        names = pair_set.class_set.names
        assert all(t.startswith(f"a photo of a {names[i]}, with ") for t in first)
        assert all(t.startswith(f"a photo of a {names[j]}, with ") for t in second)
    capsys.readouterr()

    assert main(["embed", str(pairs_file)]) == 0
    key = capsys.readouterr().out.split()[2].rstrip(":")

    store = Store(DirectoryBackend(Path(isolated_env["VGLOSS_DATA_DIR"]) / "store"))
    server = live_server_factory(store=store)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post("/v1/classify", **multipart(jpeg_bytes[:2], top_k=3, rerank_k=4, explain=True))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["rerank"] == {"method": "fudd", "k": 4, "pairs": key}
        texts = {t for pair in pair_set.pairs.values() for side in pair for t in side}
        for result in body["results"]:
            for p in result["predictions"]:  # a pair text, or the class-name prompt of a missing pair
                assert p["evidence"] in texts or p["evidence"] == f"a photo of a {p['label']}."

    photos = tmp_path / "photos"
    for i, photo in enumerate(sample_photos[:6]):
        (photos / ("cat", "dog", "truck")[i % 3]).mkdir(parents=True, exist_ok=True)
        (photos / ("cat", "dog", "truck")[i % 3] / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "results"
    assert main(["eval", str(photos), "--class-set", "cifar10", "--methods", f"classname,waffle,fudd:{pairs_file}",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["classname", "waffle", "fudd:cifar10.fudd.jsonl"]
    assert all(m["top1"]["n"] == 6 for m in results["methods"].values())
