"""The FuDD describe job against the OpenAI-protocol stub over real HTTP: one line per pair with
provenance, readable by the pair loader; resume after a crash; retries; pairs from eval and label
output; ``vgloss describe --method fudd``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import DescriptionError
from gloss_gen.data.pair_descriptions import load_pair_description_set, read_pair_jsonl
from gloss_gen.describe.describe_job import DescribeOptions, run_describe_job
from gloss_gen.describe.llm import find_confusables
from gloss_gen.describe.pair_job import run_pair_job
from gloss_gen.describe.pair_selection import EVAL_RESULTS, LABEL_MANIFEST, LABEL_PARTS, select_pairs
from gloss_gen.testing.llm_stub import LLMStub

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar10():
    return load_class_set("cifar10")


@pytest.fixture
def stub():
    with LLMStub(retry_after="0") as server:
        yield server


def _options(stub: LLMStub, **overrides) -> DescribeOptions:
    values = {"llm_model": "stub-model", "base_url": stub.url, "api_key": "test", "concurrency": 4,
              "timeout": 10.0, "max_retries": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.02,
              "n_descriptions": 4}
    values.update(overrides)
    return DescribeOptions("fudd", **values)


def _run(cifar10, options, out, **kwargs):
    return asyncio.run(run_pair_job(cifar10, options, out, progress=False, **kwargs))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_job_writes_one_line_per_confusable_pair_readable_by_the_pair_loader(cifar10, tmp_path):
    out = tmp_path / "cifar10.fudd.jsonl"
    with LLMStub(latency_ms=50) as stub:
        summary = _run(cifar10, _options(stub), out)
    near = find_confusables(cifar10, 5)
    expected = {(min(i, j), max(i, j)) for i, js in enumerate(near) for j in js}
    assert summary.ok and summary.total == len(expected) == 29 and summary.described == 29
    assert "29/29 pairs described" in summary.lines()[0] and "29 pairs: 29 from confusables" in summary.lines()[1]
    lines = _lines(out)
    assert len(lines) == 29 == len(stub.requests) and {tuple(x["index"]) for x in lines} == expected
    assert 1 < stub.max_in_flight <= 4  # concurrency=4
    for line in lines:
        (i, j), (a, b) = line["index"], line["names"]
        assert i < j and line["pair"] == [cifar10.classes[i].id, cifar10.classes[j].id] and line["method"] == "fudd"
        assert len(line["attributes"]) == 4
        first, second = line["descriptions"]
        assert len(first) == len(second) == 4
        assert all(t.startswith(f"a photo of a {a}, with ") and t.endswith(".") for t in first)
        assert all(t.startswith(f"a photo of a {b}, with ") for t in second) and first != second
        p = line["provenance"]
        assert p["method"] == "fudd" and p["prompt_version"] == "fudd-v1" and p["llm_model"] == "stub-model"
        assert p["llm_endpoint"] == stub.url.rstrip("/") and p["attempts"] == 1 and p["created_at"]
        assert p["selected_by"] == ["confusables"] and p["n_requested"] == 4
    loaded = load_pair_description_set(out)
    assert loaded.class_set.name == "cifar10" and set(loaded.pairs) == expected and not loaded.failed
    cat, dog = cifar10.ids.index("cat"), cifar10.ids.index("dog")
    assert loaded.texts_of(dog, cat)[0].startswith("a photo of a dog, with ")


def test_rerun_after_a_crash_asks_only_for_missing_and_failed_pairs(stub, cifar10, tmp_path):
    out = tmp_path / "pairs.jsonl"
    stub.set_mode(class_modes={"cat / dog": "500"})
    summary = _run(cifar10, _options(stub, max_retries=1), out)
    assert summary.failed == 1 and summary.failures[0][0] == "cat / dog" and "HTTP 500" in summary.failures[0][1]
    assert "Re-run the same command to retry the failed pairs." in summary.lines()
    lines = _lines(out)
    failed = [x for x in lines if "error" in x]
    assert len(lines) == 29 and [x["names"] for x in failed] == [["cat", "dog"]]
    assert "descriptions" not in failed[0] and failed[0]["provenance"]["attempts"] == 2

    kept = [x for x in lines if "error" in x or x["index"][0] != 0]  # as if a crash lost airplane's pairs
    lost = {" / ".join(x["names"]) for x in lines if x not in kept}
    torn = json.dumps(lines[0])[:40]
    out.write_text("".join(json.dumps(x) + "\n" for x in kept) + torn)  # ... mid-line
    stub.set_mode()
    stub.reset()
    summary = _run(cifar10, _options(stub), out)
    asked = {r.class_name for r in stub.requests}
    assert asked == lost | {"cat / dog"} and len(stub.requests) == len(lost) + 1
    assert summary.ok and summary.skipped == 29 - len(asked) and summary.described == len(asked)
    loaded = load_pair_description_set(out)  # the torn line, now mid-file, is skipped
    assert len(loaded.pairs) == 29 and not loaded.failed

    stub.reset()
    assert _run(cifar10, _options(stub), out).described == 0 and not stub.requests


@pytest.mark.parametrize(("retries", "ok"), [(3, True), (1, False)])
def test_429_500_and_malformed_answers_are_retried(stub, cifar10, tmp_path, retries, ok):
    stub.set_mode(schedule=["429", "500", "malformed"])
    out = tmp_path / "pairs.jsonl"
    summary = _run(cifar10, _options(stub, max_retries=retries, k_confusables=1), out)
    lines = _lines(out)
    assert len(lines) == summary.total == 5 and summary.ok is ok
    if ok:
        assert all(x["provenance"]["attempts"] == 4 and len(x["attributes"]) == 4 for x in lines)
    else:
        assert all("HTTP 500" in x["error"] and "gave up after 2 attempts" in x["error"] for x in lines)
    assert len(stub.requests) == 5 * (retries + 1)


def _eval_results(folder: Path, class_set: str, confusions: list[tuple[str, str, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": 1, "class_set": {"name": class_set, "num_classes": 10},
            "methods": {"classname": {"top_confusions": [
                {"true": t, "true_name": t, "predicted": p, "predicted_name": p, "count": n} for t, p, n in confusions]}}}
    (folder / EVAL_RESULTS).write_text(json.dumps(data))
    return folder


def _label_output(folder: Path, rows: list[list[str]], class_set: str = "cifar10") -> Path:
    import pyarrow.parquet as pq

    from gloss_gen.labelling.shards import label_schema

    folder.mkdir(parents=True, exist_ok=True)
    schema = label_schema(None)
    columns = {name: [None] * len(rows) for name in schema.names}
    columns["path"] = [f"img{i}.jpg" for i in range(len(rows))]
    columns["top_k"] = [[{"class_id": c, "label": c, "score": 0.5} for c in row] for row in rows]
    import pyarrow as pa

    table = pa.Table.from_arrays([pa.array(columns[n], type=schema.field(n).type) for n in schema.names], schema=schema)
    pq.write_table(table, folder / "part-00000.parquet")
    (folder / LABEL_MANIFEST).write_text(json.dumps({"format": 1, "settings": {"class_set": class_set}}))
    return folder


def test_pairs_from_eval_results_and_label_parquet(stub, cifar10, tmp_path):
    idx = cifar10.ids.index
    base = set(select_pairs(cifar10, 1).pairs)
    results = _eval_results(tmp_path / "eval", "cifar10", [("airplane", "frog", 3), ("frog", "airplane", 1),
                                                           ("ship", "horse", 1)])
    chosen = select_pairs(cifar10, 1, results)
    assert set(chosen.pairs) == base | {(idx("airplane"), idx("frog")), (idx("horse"), idx("ship"))}
    assert chosen.results_seen == 2 and "met in" in chosen.line()
    assert set(select_pairs(cifar10, 1, results / EVAL_RESULTS, max_pairs=1).pairs) == \
        base | {(idx("airplane"), idx("frog"))}  # the most frequent

    label = _label_output(tmp_path / "label", [["cat", "dog", "frog"], ["dog", "cat"], ["truck", "ship"]])
    counts = {p: n for p, n in zip(*_pairs_and_counts(cifar10, label), strict=True)}
    assert counts == {(idx("cat"), idx("dog")): 2, (idx("cat"), idx("frog")): 1, (idx("dog"), idx("frog")): 1,
                      (idx("ship"), idx("truck")): 1}
    assert set(select_pairs(cifar10, 0, label / "part-00000.parquet").pairs) == set(counts)

    out = tmp_path / "from-label.jsonl"  # no confusables: only the pairs the labels met
    summary = _run(cifar10, _options(stub, k_confusables=0), out, pairs_from=label, max_pairs=2)
    lines = _lines(out)
    assert summary.ok and len(lines) == 2 and all(x["provenance"]["selected_by"] == ["pairs_from"] for x in lines)
    assert {tuple(x["index"]) for x in lines} == {(idx("cat"), idx("dog")), (idx("cat"), idx("frog"))}


def _pairs_and_counts(class_set, path):
    from gloss_gen.describe.pair_selection import count_pairs_from

    counts, _ = count_pairs_from(path, class_set)
    return list(counts), list(counts.values())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "not a vgloss label output (folder or .parquet part), a vgloss eval output"),
        (lambda d: (d / "notes.txt").write_text("cat dog") and d / "notes.txt", "not a vgloss label output"),
        (lambda d: d / "missing", "no such file or folder"),
        (lambda d: _eval_results(d / "e", "stl10", [("cat", "dog", 1)]), "was made for class set stl10, not cifar10"),
        (lambda d: _eval_results(d / "e", "cifar10", [("cat", "tench", 1)]), "class 'tench' is not in class set cifar10"),
        (lambda d: _label_output(d / "l", [["cat", "dog"]], "imagenet1k"), "made for class set imagenet1k"),
        (lambda d: (d / "bad.parquet").write_bytes(b"PAR1 nonsense") and d / "bad.parquet", "cannot read it as Parquet"),
        (lambda d: (d / "results.json").write_text("[1]") and d / "results.json", "not a vgloss eval results.json"),
    ],
    ids=["empty-folder", "text-file", "missing", "other-set", "unknown-class", "label-other-set", "bad-parquet",
         "bad-json"],
)
def test_pairs_from_anything_else_is_refused_in_one_line(cifar10, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DescriptionError) as caught:
        select_pairs(cifar10, 1, path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_file_names_agree_with_what_label_and_eval_write():
    from gloss_gen.evaluation.eval_report import RESULTS_FILE
    from gloss_gen.labelling.shards import MANIFEST_NAME, PART_PATTERN

    assert (EVAL_RESULTS, LABEL_MANIFEST) == (RESULTS_FILE, MANIFEST_NAME)
    assert Path(PART_PATTERN.format(7)).match(LABEL_PARTS)


def test_a_pair_file_of_another_class_set_is_refused_and_the_class_job_refuses_fudd(stub, cifar10, tmp_path):
    out = tmp_path / "pairs.jsonl"
    _run(cifar10, _options(stub, k_confusables=1), out)
    stl10 = load_class_set("stl10")
    with pytest.raises(DescriptionError, match="holds pairs of another class set"):
        asyncio.run(run_pair_job(stl10, _options(stub, k_confusables=1), out, progress=False))
    with pytest.raises(DescriptionError, match="writes pair descriptions"):
        asyncio.run(run_describe_job(cifar10, _options(stub), tmp_path / "x.jsonl", progress=False))
    assert len(read_pair_jsonl(out)) == 5


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def test_cli_describe_fudd_writes_the_pair_file(stub, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gloss_gen.cli", "describe", "cifar10", "--method", "fudd", "--confusables", "2",
         "--no-progress"],
        cwd=tmp_path, env=_env(OPENAI_BASE_URL=stub.url), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "12/12 pairs described" in done.stdout and "-> cifar10.fudd.jsonl" in done.stdout
    lines = _lines(tmp_path / "cifar10.fudd.jsonl")
    assert len(lines) == 12 and all(len(x["attributes"]) == 4 for x in lines)


def _main(*args: str) -> int:
    from gloss_gen.cli import main

    return main(["describe", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "fudd", "--queue"], "--queue does not run --method fudd"),
        (["--method", "vgloss", "--pairs-from", "x"], "--pairs-from and --max-pairs are only read by --method fudd"),
        (["--method", "fudd", "--max-pairs", "-1"], "--max-pairs must be at least 0"),
        (["--method", "fudd", "--pairs-from", "nowhere"], "--pairs-from nowhere: no such file or folder"),
    ],
)
def test_cli_bad_fudd_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, stub, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    assert _main("cifar10", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vgloss describe: error:") and message in err and "\n" not in err
    assert not list(tmp_path.glob("*.jsonl")) and not stub.requests
