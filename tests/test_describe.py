"""The describe job: one JSON line per class, resume, error lines, bounded concurrency, the offline
methods through the same writer, and the ``vgloss describe`` command (as a subprocess, against the
OpenAI-protocol stub over real HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gloss_gen.core.config import Settings
from gloss_gen.data import wordnet
from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import (
    DescriptionError,
    latest_by_class,
    load_description_set,
    read_jsonl,
)
from gloss_gen.describe.describe_job import (
    DescribeOptions,
    describe_one,
    generate_descriptions,
    prepare,
    run_describe_job,
)
from gloss_gen.describe.llm import PROMPT_VERSION, class_facts
from gloss_gen.testing.llm_stub import LLMStub

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
CUPL_IMAGENET = SHARED_DATA / "descriptions" / "cupl_imagenet_base.json"


@pytest.fixture(scope="module")
def cifar10():
    return load_class_set("cifar10")


@pytest.fixture
def stub():
    with LLMStub() as server:
        yield server


def _options(stub: LLMStub, **overrides) -> DescribeOptions:
    values = {"llm_model": "stub-model", "base_url": stub.url, "api_key": "test", "concurrency": 4,
              "timeout": 10.0, "max_retries": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.02}
    values.update(overrides)
    return DescribeOptions("vgloss", **values)


def _raw_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "gpt"}, "unknown method"),
        ({"method": "import"}, "needs an import file"),
        ({"method": "wordnet", "import_file": "x.json"}, "only read by --method import"),
        ({"method": "import", "import_file": "x.json", "import_format": "csv"}, "unknown import format"),
        ({"method": "vgloss", "n_descriptions": 0}, "n_descriptions must be at least 1"),
        ({"method": "vgloss", "concurrency": 0}, "concurrency must be at least 1"),
        ({"method": "vgloss", "timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(DescriptionError, match=message):
        DescribeOptions(**kwargs)


def test_options_from_settings_and_json_round_trip():
    settings = Settings(llm_model="local-llama", llm_concurrency=3, llm_timeout_s=7, llm_max_retries=1)
    options = DescribeOptions.from_settings("vgloss", settings, concurrency=None, n_descriptions=4,
                                            api_key="secret")
    assert (options.llm_model, options.concurrency, options.timeout, options.max_retries) == ("local-llama", 3, 7, 1)
    assert options.n_descriptions == 4
    data = options.to_dict()
    assert "api_key" not in data and "secret" not in json.dumps(data)
    assert DescribeOptions.from_dict(data) == DescribeOptions.from_dict(json.loads(json.dumps(data)))
    assert DescribeOptions.from_dict(data).llm_model == "local-llama"


# --------------------------------------------------------------------------- the job


def test_vgloss_job_writes_one_line_per_class_with_provenance(stub, cifar10, tmp_path):
    out = tmp_path / "cifar10.vgloss.jsonl"
    summary = asyncio.run(run_describe_job(cifar10, _options(stub), out, progress=False))

    assert summary.ok and summary.described == 10 and summary.exit_code == 0
    records = read_jsonl(out)
    assert sorted(r.class_id for r in records) == sorted(cifar10.ids)
    for record in records:
        assert record.ok and record.method == "vgloss" and len(record.descriptions) == 5
        facts = class_facts(next(c for c in cifar10.classes if c.id == record.class_id))
        assert f"is a kind of {facts.hypernyms[0]}" in record.descriptions  # class-specific
        p = record.provenance
        assert p["prompt_version"] == PROMPT_VERSION and p["llm_model"] == "stub-model"
        assert p["prompt_style"] == "phrases" and p["vgloss_style"] == "phrases" and p["attempts"] == 1 and p["created_at"]
        assert len(p["confusables"]) == 5 and set(p["confusables"]) <= set(cifar10.names) - {record.name}
    cat = next(r for r in records if r.class_id == "cat")
    assert cat.provenance["confusables"][0] == "dog"
    dog = next(r for r in records if r.class_id == "dog")
    assert dog.descriptions[0] == "is a member of the genus Canis"  # its WordNet gloss, in English
    assert any("domestic cat" in r.prompt or "feline" in r.prompt for r in stub.requests_for("cat"))

    loaded = load_description_set(out)
    assert loaded.prompt_style == "phrases" and [r.class_id for r in loaded.records] == cifar10.ids


def test_concurrency_bound_is_respected(cifar10, tmp_path):
    with LLMStub(latency_ms=300) as slow:
        summary = asyncio.run(run_describe_job(cifar10, _options(slow, concurrency=3),
                                               tmp_path / "out.jsonl", progress=False))
        assert summary.ok
        assert slow.max_in_flight == 3


def test_failed_class_becomes_an_error_line_and_a_rerun_retries_only_it(stub, cifar10, tmp_path):
    out = tmp_path / "out.jsonl"
    stub.set_mode(class_modes={"cat": "500"})
    summary = asyncio.run(run_describe_job(cifar10, _options(stub, max_retries=1), out, progress=False))

    assert summary.failed == 1 and summary.described == 9 and summary.exit_code == 1
    class_id, _, reason = summary.failures[0]
    assert class_id == "cat" and "HTTP 500" in reason
    assert any("Re-run" in line for line in summary.lines())
    cat_line = next(line for line in _raw_lines(out) if line["class_id"] == "cat")
    assert "HTTP 500" in cat_line["error"] and "descriptions" not in cat_line
    assert len(stub.requests_for("cat")) == 2  # the first attempt and one retry

    stub.set_mode("normal")
    stub.reset()
    again = asyncio.run(run_describe_job(cifar10, _options(stub), out, progress=False))
    assert again.ok and again.skipped == 9 and again.described == 1
    assert [r.class_name for r in stub.requests] == ["cat"]
    latest = latest_by_class(read_jsonl(out))
    assert len(latest) == 10 and all(r.ok for r in latest.values())
    assert len(_raw_lines(out)) == 11  # appended, never rewritten


def test_lines_of_another_method_are_not_taken_as_finished(stub, cifar10, tmp_path):
    out = tmp_path / "mixed.jsonl"
    asyncio.run(run_describe_job(cifar10, DescribeOptions("wordnet"), out, progress=False))
    summary = asyncio.run(run_describe_job(cifar10, _options(stub), out, progress=False))
    assert summary.skipped == 0 and summary.described == 10
    assert {r.method for r in latest_by_class(read_jsonl(out)).values()} == {"vgloss"}


def test_generate_descriptions_in_memory_reports_each_record(stub, cifar10, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen: list[tuple[str, int, int]] = []

    async def on_record(record, done, total):
        seen.append((record.class_id, done, total))

    result = asyncio.run(generate_descriptions(cifar10, _options(stub), on_record=on_record))
    assert [r.class_id for r in result.records] == cifar10.ids
    assert result.prompt_style == "phrases" and result.method == "vgloss" and not result.failed
    assert [done for _, done, _ in seen] == list(range(1, 11)) and {t for _, _, t in seen} == {10}
    assert sorted(c for c, _, _ in seen) == sorted(cifar10.ids)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_describe_one_with_its_own_client_and_without_raising(stub, cifar10):
    context = prepare(cifar10, _options(stub, max_retries=0))
    record = asyncio.run(describe_one(context, cifar10.ids.index("cat")))
    assert record.ok and record.name == "cat" and record.index == 3 and len(record.descriptions) == 5

    stub.set_mode("500")
    failed = asyncio.run(describe_one(context, 0))
    assert not failed.ok and failed.descriptions == [] and "HTTP 500" in failed.error
    assert failed.provenance["attempts"] == 1


def test_offline_methods_go_through_the_same_job(cifar10, tmp_path):
    out = tmp_path / "wn.jsonl"
    summary = asyncio.run(run_describe_job(cifar10, DescribeOptions("wordnet"), out, progress=False))
    assert summary.ok and summary.described == 10
    records = {r.class_id: r for r in read_jsonl(out)}
    assert records["cat"].descriptions == [wordnet.get_synset("n02121620").definition()]
    names = asyncio.run(run_describe_job(cifar10, DescribeOptions("classname"), tmp_path / "cn.jsonl",
                                         progress=False))
    assert names.described == 10
    assert all(r.ok and r.descriptions == [] for r in read_jsonl(tmp_path / "cn.jsonl"))


def test_queue_flag_says_when_the_queue_is_missing(monkeypatch, tmp_path):
    import argparse

    from gloss_gen.commands import describe_command as command
    from gloss_gen.commands.verb_support import UserError

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["cifar10", "--method", "wordnet", "--queue"])
    monkeypatch.setitem(sys.modules, "gloss_gen.queue", None)  # import fails as if it did not exist
    monkeypatch.delattr(sys.modules["gloss_gen"], "queue", raising=False)  # as if never imported here
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="the queue is not available"):
        command.run(args)


# --------------------------------------------------------------------------- the command line


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _describe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gloss_gen.cli", "describe", *args]


def _vgloss(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180):
    return subprocess.run(_describe_command(*args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _main(*args: str) -> int:
    from gloss_gen.cli import main

    return main(["describe", *args])


def test_cli_wordnet_offline_writes_ten_lines_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert _main("cifar10", "--method", "wordnet") == 0
    out = tmp_path / "cifar10.wordnet.jsonl"
    lines = _raw_lines(out)
    assert len(lines) == 10 and all(len(line["descriptions"]) == 1 for line in lines)
    assert "10/10 classes described" in capsys.readouterr().out

    assert _main("cifar10", "--method", "wordnet", "--no-progress") == 0
    assert "0 in this run, 10 already done" in capsys.readouterr().out
    assert len(_raw_lines(out)) == 10


def test_cli_exits_1_with_a_summary_when_a_class_fails(stub, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stub.set_mode(class_modes={"cat": "500"})
    code = _main("cifar10", "--method", "vgloss", "--llm-model", "stub-model", "--max-retries", "0",
                 "--out", "out.jsonl", "--no-progress")
    printed = capsys.readouterr().out
    assert code == 1
    assert "1 failed" in printed and "failed: cat (cat): HTTP 500" in printed
    lines = _raw_lines(tmp_path / "out.jsonl")
    assert len(lines) == 10 and sum("error" in line for line in lines) == 1
    assert all(line["provenance"]["llm_model"] == "stub-model" for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cifar10", "--method", "import"], "--method import needs --import FILE"),
        (["cifar10", "--method", "wordnet", "--import", "x.json"], "--import is only read by --method import"),
        (["no-such-set", "--method", "wordnet"], "unknown class set"),
        (["cifar10", "--method", "vgloss"], "OPENAI_API_KEY is not set"),
        (["cifar10", "--method", "vgloss", "--concurrency", "0"], "concurrency must be at least 1"),
        (["cifar10", "--method", "import", "--import", "missing.json"], "missing.json does not exist"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert _main(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vgloss describe: error:") and message in err and "\n" not in err
    assert not list(tmp_path.glob("*.jsonl"))


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def test_cli_import_of_cupl_onto_imagenet_reports_collisions_and_keeps_classes_apart(tmp_path, monkeypatch,
                                                                                    capsys, data_dir):
    """Needs the published CuPL ImageNet file from ../shared (skips without it)."""
    monkeypatch.chdir(tmp_path)
    assert _main("imagenet1k", "--method", "import", "--import", str(CUPL_IMAGENET), "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "name collision: file key 'missile' matches 2 classes" in printed
    assert "name collision: file key 'sunglasses' matches 2 classes" in printed

    source = json.loads(CUPL_IMAGENET.read_text())
    imagenet = load_class_set("imagenet1k")
    records = latest_by_class(read_jsonl(tmp_path / "imagenet1k.import.jsonl"))
    assert set(records) == set(imagenet.ids)
    collided = {"n03773504", "n04008634", "n04355933", "n04356056"}
    for spec in imagenet.classes:
        record = records[spec.id]
        if spec.id in collided:
            assert record.descriptions == [] and "collision" in record.provenance["fallback"]
            continue
        key = record.provenance["source_key"]
        lemmas = {_norm(lemma) for lemma in wordnet.get_synset(spec.synset).lemma_names()}
        assert _norm(key) == _norm(spec.name) or _norm(key) in lemmas, (spec.name, key)
        assert record.descriptions == [t.strip() for t in source[key]]  # every sentence, as CuPL averages them
    assert records["n01440764"].descriptions[0] == source["tench"][0]


def test_kill_and_resume_redoes_nothing_that_finished(tmp_path):
    """SIGKILL a running ``vgloss describe`` and re-run it: every class ends up in the file exactly
    once, and no class finished before the kill is asked of the LLM again."""
    log = tmp_path / "requests.jsonl"
    out = tmp_path / "out.jsonl"
    # Started by file path, the stub imports only the standard library (``-m`` would import the
    # gloss_gen package and torch with it): same server, faster start.
    stub = subprocess.Popen(
        [sys.executable, str(REPO / "gloss_gen" / "testing" / "llm_stub.py"), "--port", "0",
         "--latency-ms", "700", "--log", str(log)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = stub.stdout.readline()
        assert "listening on" in banner, stub.stderr.read()
        env = _env(OPENAI_BASE_URL=banner.split()[-1])
        args = ["cifar10", "--method", "vgloss", "--concurrency", "2", "--out", str(out), "--no-progress"]

        job = subprocess.Popen(_describe_command(*args), cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:
            if out.is_file() and len(read_jsonl(out)) >= 3:
                break
            time.sleep(0.02)
        assert job.poll() is None, f"the job ended before it could be killed: {job.stderr.read()}"
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)

        finished_before = {r.class_id for r in read_jsonl(out) if r.ok}
        assert 3 <= len(finished_before) < 10
        requested_before = Counter(json.loads(line)["class"] for line in log.read_text().splitlines())

        rerun = _vgloss(*args, cwd=tmp_path, env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert f"{len(finished_before)} already done" in rerun.stdout
    finally:
        stub.terminate()
        stub.wait(timeout=30)

    records = read_jsonl(out)
    ok_lines = Counter(r.class_id for r in records if r.ok)
    assert ok_lines == Counter({class_id: 1 for class_id in load_class_set("cifar10").ids})
    requested = Counter(json.loads(line)["class"] for line in log.read_text().splitlines())
    for class_id in finished_before:
        assert requested[class_id] == requested_before[class_id] == 1, class_id
    assert set(requested) == set(ok_lines)
