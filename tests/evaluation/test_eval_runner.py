"""The evaluation run with the tiny random-weight CLIP: counts, caching, and exact bookkeeping.

Random weights put accuracy near chance on real images, so these tests check mechanics there and
prove the scoring bookkeeping on a synthetic set whose right answers are known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gloss_gen.data.classifier import Classifier, classifier_key, normalize_rows
from gloss_gen.data.classsets import ClassSet, ClassSpec, load_class_set
from gloss_gen.data.descriptions import (
    DescriptionRecord,
    describe_classname,
    describe_wordnet,
    write_jsonl,
)
from gloss_gen.evaluation.datasets import open_dataset, resolve_labels
from gloss_gen.evaluation.eval_report import (
    CHART_FILE,
    RESULTS_FILE,
    format_table,
    write_outputs,
)
from gloss_gen.evaluation.metrics import wilson_interval
from gloss_gen.evaluation.runner import (
    EMBEDDINGS_KIND,
    EvalConfig,
    EvalError,
    ModelSource,
    embed_images,
    embeddings_cache_key,
    evaluate,
    parse_methods,
)
from gloss_gen.imaging import ImageLimits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def config(data: Path, class_set: ClassSet, methods: str, **options) -> EvalConfig:
    return EvalConfig(data=data, class_set=class_set, methods=parse_methods(methods), workers=2, **options)


# --------------------------------------------------------------------------- methods


def test_method_specs_are_labelled_by_kind_and_file_name():
    specs = parse_methods("classname, wordnet,vgloss:out/a.jsonl,import:../x/cupl_cifar10.json")
    assert [s.label for s in specs] == ["classname", "wordnet", "vgloss:a.jsonl", "import:cupl_cifar10.json"]
    assert specs[3].path == Path("../x/cupl_cifar10.json")
    same_name = parse_methods("import:a/d.json,import:b/d.json")
    assert [s.label for s in same_name] == ["import:a/d.json", "import:b/d.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clip", "unknown method 'clip'"),
        ("vgloss", "needs a file"),
        ("classname,classname", "twice"),
        ("", "lists no method"),
    ],
)
def test_bad_method_specs_say_what_is_wrong(text: str, message: str):
    with pytest.raises(EvalError, match=message):
        parse_methods(text)


# --------------------------------------------------------------------------- real samples


def test_adding_methods_or_changing_scoring_encodes_no_image_again(
    counted_model, dir_store, cifar_sample: Path, cupl_cifar10: Path
):
    cifar10 = load_class_set("cifar10")
    models = ModelSource.of(counted_model)

    first = evaluate(config(cifar_sample, cifar10, "classname"), models, dir_store)
    assert first.images_encoded == 500
    assert counted_model.counter.images == 500

    methods = f"classname,wordnet,import:{cupl_cifar10}"
    second = evaluate(config(cifar_sample, cifar10, methods), models, dir_store)
    third = evaluate(config(cifar_sample, cifar10, methods, scoring="mean-description"), models, dir_store)
    assert counted_model.counter.images == 500, "the cached embeddings must be reused"
    assert second.images_encoded == third.images_encoded == 0

    assert [m.spec.label for m in second.methods] == ["classname", "wordnet", "import:cupl_cifar10.json"]
    assert second.num_images == 500 and len(second.class_set) == 10
    for method in second.methods + third.methods:
        top1, top5 = method.scores.top1, method.scores.topk
        assert top1.n == top5.n == 500 and method.scores.k == 5
        assert 0 <= top1.correct <= top5.correct <= 500
        assert (top1.low, top1.high) == wilson_interval(top1.correct, 500)
        assert [row["n"] for row in method.scores.per_class] == [50] * 10
        assert sum(c["count"] for c in method.scores.top_confusions) <= 500 - top1.correct

    # The cached classifier gives exactly the numbers the freshly built one gave.
    assert not first.methods[0].classifier_cached and second.methods[0].classifier_cached
    assert second.methods[0].scores.top1 == first.methods[0].scores.top1
    assert second.methods[0].scores.topk == first.methods[0].scores.topk
    # Evaluating must not change which classifier the server serves for cifar10.
    assert dir_store.get_active_key(models.id, "cifar10") is None


def test_imagenet_sample_flat_wnid_files(counted_model, dir_store, imagenet_sample: Path):
    imagenet = load_class_set("imagenet1k")
    result = evaluate(config(imagenet_sample, imagenet, "wordnet"), ModelSource.of(counted_model), dir_store)
    assert (result.layout, result.num_images, len(result.class_set)) == ("wnid-files", 250, 1000)
    scores = result.methods[0].scores
    assert scores.top1.n == 250
    assert len(scores.per_class) == 1000
    assert sum(row["n"] for row in scores.per_class) == 250
    assert counted_model.counter.images == 250

    limited = evaluate(config(imagenet_sample, imagenet, "wordnet", limit=40), ModelSource.of(counted_model), dir_store)
    assert limited.num_images == limited.methods[0].scores.top1.n == 40
    assert counted_model.counter.images == 250 + 40


def test_vgloss_description_file_as_a_method(counted_model, dir_store, cifar_sample: Path, tmp_path: Path):
    cifar10 = load_class_set("cifar10")
    records = []
    for index, spec in enumerate(cifar10.classes[:8]):
        record = DescriptionRecord.for_class(spec, cifar10, index, "vgloss")
        record.descriptions = [f"a {spec.name} seen from the side", f"a {spec.name} with sharp outlines"]
        record.provenance = {"prompt_style": "dclip"}
        records.append(record)
    path = tmp_path / "cifar10.vgloss.jsonl"
    write_jsonl(path, records)
    notes: list[str] = []
    result = evaluate(
        config(cifar_sample, cifar10, f"vgloss:{path}"), ModelSource.of(counted_model), dir_store, notes.append
    )
    method = result.methods[0]
    assert method.spec.label == "vgloss:cifar10.vgloss.jsonl"
    assert method.prompt_style == "dclip" and method.scores.top1.n == 500
    assert any("2 classes have no descriptions" in note and "ship, truck" in note for note in notes)


def test_binary_cifar_batch_runs_through_the_same_pipeline(counted_model, dir_store, tmp_path: Path):
    rng = np.random.default_rng(3)
    codes = [index % 10 for index in range(20)]
    with (tmp_path / "test_batch.bin").open("wb") as fh:
        for code in codes:
            fh.write(bytes([code]) + rng.integers(0, 256, size=3072, dtype=np.uint8).tobytes())
    cifar10 = load_class_set("cifar10")
    simple_templates = config(tmp_path, cifar10, "classname", template_set="simple")
    result = evaluate(simple_templates, ModelSource.of(counted_model), dir_store)
    assert (result.layout, result.num_images, result.images_encoded) == ("cifar10", 20, 20)
    assert counted_model.counter.images == 20
    assert [row["n"] for row in result.methods[0].scores.per_class] == [2] * 10


# --------------------------------------------------------------------------- exact bookkeeping


def synthetic_class_set() -> ClassSet:
    return ClassSet("synthetic", [ClassSpec(f"c{i}", f"pattern {i}") for i in range(4)])


def store_classifier(store, models: ModelSource, descriptions, prototypes: np.ndarray) -> None:
    """Put a classifier with the given prototypes where ``evaluate`` will look for this method's."""
    key = classifier_key(models.id, descriptions.id, descriptions.prompt_style, "openai")
    classifier = Classifier(
        key=key,
        model_id=models.id,
        class_set=descriptions.class_set,
        descriptions_id=descriptions.id,
        method=descriptions.method,
        prompt_style=descriptions.prompt_style,
        template_set="openai",
        prototypes=prototypes.astype(np.float32),
        evidence=prototypes.astype(np.float32),
        offsets=np.arange(len(prototypes) + 1),
        evidence_texts=[c.name for c in descriptions.class_set.classes],
        logit_scale=100.0,
    )
    store.put_classifier(classifier, activate=False)


@pytest.mark.parametrize("scoring", ["prototype", "mean-description"])
def test_known_answers_give_exactly_known_accuracy_and_confusions(
    counted_model, dir_store, synthetic_folder: Path, tmp_path: Path, scoring: str
):
    """Classifier rows = each class's own image embedding: every image must be right. The same
    rows shifted by one class: every image must be wrong, confused with the previous class."""
    class_set = synthetic_class_set()
    models = ModelSource.of(counted_model)
    dataset = open_dataset(synthetic_folder)
    embeddings = embed_images(dataset, models, dir_store, ImageLimits(jpeg_draft=EvalConfig.jpeg_draft))
    truth = resolve_labels(dataset.labels, class_set)
    own = normalize_rows(np.stack([embeddings.vectors[truth == c].mean(axis=0) for c in range(4)]))
    store_classifier(dir_store, models, describe_classname(class_set), own)
    store_classifier(dir_store, models, describe_wordnet(class_set), np.roll(own, -1, axis=0))

    result = evaluate(config(synthetic_folder, class_set, "classname,wordnet", scoring=scoring), models, dir_store)
    assert result.images_encoded == 0 and counted_model.counter.images == 12

    right, shifted = result.methods
    assert right.classifier_cached and shifted.classifier_cached
    assert (right.scores.top1.correct, right.scores.top1.n) == (12, 12)
    assert right.scores.top1.high == 1.0 and right.scores.top1.low == pytest.approx(12 / (12 + 1.96**2), abs=1e-3)
    assert [row["top1"] for row in right.scores.per_class] == [1.0] * 4
    assert right.scores.top_confusions == []

    assert shifted.scores.top1.correct == 0
    assert shifted.scores.k == 4 and shifted.scores.topk.correct == 12
    assert [(c["true"], c["predicted"], c["count"]) for c in shifted.scores.top_confusions] == [
        ("c0", "c3", 3),
        ("c1", "c0", 3),
        ("c2", "c1", 3),
        ("c3", "c2", 3),
    ]

    json_path, chart_path = write_outputs(result, tmp_path / "out")
    assert (json_path.name, chart_path.name) == (RESULTS_FILE, CHART_FILE)
    assert chart_path.read_bytes()[:8] == PNG_MAGIC
    data = json.loads(json_path.read_text())
    assert data["scoring"] == scoring and data["interval"] == {"method": "wilson", "confidence": 0.95}
    assert data["data"]["num_images"] == 12 and data["class_set"] == {"name": "synthetic", "num_classes": 4}
    assert list(data["methods"]) == ["classname", "wordnet"]
    perfect = data["methods"]["classname"]
    assert perfect["top1"]["accuracy"] == 1.0 and perfect["top1"]["ci95"][1] == 1.0
    assert perfect["top4"]["correct"] == 12
    assert perfect["per_class"][0] == {"class_id": "c0", "name": "pattern 0", "n": 3, "top1": 1.0, "top4": 1.0}
    assert data["methods"]["wordnet"]["top_confusions"][0] == {
        "true": "c0", "true_name": "pattern 0", "predicted": "c3", "predicted_name": "pattern 3", "count": 3
    }

    table = format_table(result).splitlines()
    assert table[0].startswith("12 images, 4 classes (synthetic)")
    assert table[3].split()[:2] == ["classname", "100.00"] and table[4].split()[:2] == ["wordnet", "0.00"]


def test_unreadable_images_are_left_out_and_named(counted_model, dir_store, synthetic_folder: Path):
    (synthetic_folder / "c1" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    notes: list[str] = []
    classname = config(synthetic_folder, synthetic_class_set(), "classname")
    result = evaluate(classname, ModelSource.of(counted_model), dir_store, notes.append)
    assert result.num_images == 12 and result.methods[0].scores.top1.n == 12
    assert list(result.unreadable) == ["c1/broken.jpg"]
    assert result.unreadable["c1/broken.jpg"].startswith("invalid_image")
    assert any("1 images could not be read" in note and "c1/broken.jpg" in note for note in notes)
    # The cache remembers which image was unreadable.
    again = evaluate(classname, ModelSource.of(counted_model), dir_store)
    assert again.images_encoded == 0 and list(again.unreadable) == ["c1/broken.jpg"]


def test_unknown_labels_stop_the_run_before_any_image_is_encoded(counted_model, dir_store, synthetic_folder: Path):
    three_classes = ClassSet("three", synthetic_class_set().classes[:3])
    with pytest.raises(EvalError, match=r"1 labels match no class of three: 'c3' \(3 images\)"):
        evaluate(config(synthetic_folder, three_classes, "classname"), ModelSource.of(counted_model), dir_store)
    assert counted_model.counter.calls == 0
    key = embeddings_cache_key(counted_model.id, open_dataset(synthetic_folder), True)
    assert dir_store.get_array(EMBEDDINGS_KIND, key) is None


def test_a_missing_description_file_stops_the_run_before_any_image_is_encoded(
    counted_model, dir_store, synthetic_folder: Path, tmp_path: Path
):
    with pytest.raises(EvalError, match="does not exist"):
        evaluate(
            config(synthetic_folder, synthetic_class_set(), f"classname,import:{tmp_path / 'nope.json'}"),
            ModelSource.of(counted_model),
            dir_store,
        )
    assert counted_model.counter.calls == 0
