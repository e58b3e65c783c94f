"""Classifiers against the published constructions (tests/reference_constructions.py): CLIP's
per-dataset templates and CuPL's sentences through CLIP_benchmark's ``zero_shot_classifier``,
DCLIP's prompts and mean-of-descriptor scores; on random weights, on files the tests write and on
the published files in ../shared when present."""

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from reference_constructions import (
    CLIP_CIFAR10_TEMPLATES,
    CLIP_STL10_TEMPLATES,
    clip_benchmark_zero_shot_classifier,
    dclip_description_encodings,
    dclip_scores,
)

from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import Classifier, ClassifierUnreadableError, build_classifier, classifier_key
from gloss_gen.data.classsets import ClassSet, load_class_set
from gloss_gen.data.description_importers import describe_import
from gloss_gen.data.descriptions import DescriptionSet, describe_classname, describe_wordnet

TOLERANCE = 1e-4


# --------------------------------------------------------------------------- the references


def random_images(dim: int, n: int = 500, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def assert_same_classifier(ours: np.ndarray, reference: torch.Tensor, images: torch.Tensor) -> None:
    reference = reference.numpy()
    assert np.abs(ours - reference).max() <= TOLERANCE
    x = images.numpy()
    assert np.array_equal((x @ ours.T).argmax(1), (x @ reference.T).argmax(1))


def _subset(description_set: DescriptionSet, every: int) -> DescriptionSet:
    """Every ``every``-th class, to keep the published ImageNet files affordable to embed twice."""
    records = description_set.records[::every]
    class_set = ClassSet(f"{description_set.class_set.name}-every-{every}", [description_set.class_set.classes[
        i] for i in range(0, len(description_set.class_set), every)], templates=description_set.class_set.templates)
    return DescriptionSet(class_set, description_set.method, records, description_set.prompt_style)


# --------------------------------------------------------------------------- class-name templates


def test_classname_parity_with_open_clip_zero_shot_classifier(tiny_model):
    imagenet_slice = ClassSet("slice", load_class_set("imagenet1k").classes[:10])
    ours = build_classifier(tiny_model, describe_classname(imagenet_slice))
    assert ours.template_set == "openai"
    reference = open_clip.build_zero_shot_classifier(
        tiny_model.model, tiny_model.tokenizer, imagenet_slice.names, open_clip.OPENAI_IMAGENET_TEMPLATES
    )
    assert_same_classifier(ours.prototypes, reference.T, random_images(tiny_model.embed_dim))
    assert np.allclose(np.linalg.norm(ours.prototypes, axis=1), 1.0, atol=1e-5)


def test_cifar10_classname_is_clip_benchmarks_18_template_classifier(tiny_model):
    cifar = load_class_set("cifar10")
    ours = build_classifier(tiny_model, describe_classname(cifar))
    assert ours.template_set == "cifar10"
    reference = clip_benchmark_zero_shot_classifier(tiny_model, cifar.names, CLIP_CIFAR10_TEMPLATES)
    assert_same_classifier(ours.prototypes, reference, random_images(tiny_model.embed_dim))
    # --templates overrides the class set's own, and the key says which was used
    imagenet_templates = build_classifier(tiny_model, describe_classname(cifar), template_set="openai")
    assert imagenet_templates.template_set == "openai" and imagenet_templates.key != ours.key
    assert np.abs(imagenet_templates.prototypes - ours.prototypes).max() > 1e-3


@pytest.mark.slow
def test_stl10_classname_parity_on_the_real_vit_b_32_architecture():
    from gloss_gen.model.clip_models import load_clip

    model = load_clip("ViT-B-32", "none")
    assert model.embed_dim == 512
    stl10 = load_class_set("stl10")
    ours = build_classifier(model, describe_classname(stl10))  # 10 classes x CLIP's 2 STL-10 templates
    reference = clip_benchmark_zero_shot_classifier(model, stl10.names, CLIP_STL10_TEMPLATES)
    assert_same_classifier(ours.prototypes, reference, random_images(512))


# --------------------------------------------------------------------------- CuPL


def _write_cupl(path: Path, names: list[str]) -> dict[str, list[str]]:
    cupl = {
        name: [f"A {name} has a shape.", f"A {name} is usually grey.", f"A {name} has a shape.",
               f" A photo of a {name}.\n", f"A {name} has a shape."]
        for name in names
    }
    path.write_text(json.dumps(cupl))
    return cupl


def test_cupl_import_is_cupls_average_of_every_sentence(tiny_model, tmp_path):
    cifar = load_class_set("cifar10")
    cupl = _write_cupl(tmp_path / "cupl_cifar10.json", cifar.names)
    ds, _ = describe_import(cifar, tmp_path / "cupl_cifar10.json")
    ours = build_classifier(tiny_model, ds)
    reference = clip_benchmark_zero_shot_classifier(tiny_model, cifar.names, cupl)
    assert_same_classifier(ours.prototypes, reference, random_images(tiny_model.embed_dim))
    deduped = build_classifier(tiny_model, describe_import(cifar, tmp_path / "cupl_cifar10.json", dedupe=True)[0])
    assert np.abs(deduped.prototypes - reference.numpy()).max() > 1e-3  # repeats do count


def test_cupl_published_files_match_cupls_construction(tiny_model, data_dir):
    images = random_images(tiny_model.embed_dim)
    path = data_dir / "descriptions" / "cupl_cifar10.json"
    cupl = json.loads(path.read_text())
    cifar = load_class_set("cifar10")
    ours = build_classifier(tiny_model, describe_import(cifar, path)[0])
    assert_same_classifier(ours.prototypes, clip_benchmark_zero_shot_classifier(tiny_model, cifar.names, cupl), images)

    path = data_dir / "descriptions" / "cupl_imagenet_base.json"
    cupl = json.loads(path.read_text())
    ds, report = describe_import(load_class_set("imagenet1k"), path)
    ds = _subset(ds, 25)  # 40 classes, ~1,200 sentences
    matched = [i for i, r in enumerate(ds.records) if r.descriptions]
    assert len(matched) >= 38
    ours = build_classifier(tiny_model, ds)
    keys = [ds.records[i].provenance["source_key"] for i in matched]
    reference = clip_benchmark_zero_shot_classifier(tiny_model, keys, cupl)
    assert_same_classifier(ours.prototypes[matched], reference, images)


# --------------------------------------------------------------------------- DCLIP


def test_dclip_import_is_dclips_prompts_and_scores(tiny_model, tmp_path):
    imagenet = load_class_set("imagenet1k")
    wnids = ["n01440764", "n01631663", "n03773504", "n04008634", "n02123045"]
    class_set = ClassSet("slice", [imagenet.classes[imagenet.ids.index(w)] for w in wnids])
    descriptors = {
        "tench": ["a freshwater fish", "olive green or brown in color", "has a small mouth"],
        "eft": ["a small amphibian", "bright orange skin", "often found in damp forests"],
        "missile": ["a long, cylindrical body", "fins at the rear", "used for warfare"],
        "projectile": ["a pointed tip", "typically launched from a weapon"],
        "tabby": ["antlers", "striped fur", "may purr", "can climb"],
    }
    path = tmp_path / "descriptors_slice.json"
    path.write_text(json.dumps(descriptors))
    ds, report = describe_import(class_set, path)
    assert report.by_position
    ours = build_classifier(tiny_model, ds)
    encodings = dclip_description_encodings(tiny_model, descriptors)
    images = random_images(tiny_model.embed_dim)

    ours_scores = ScoringHead(ours).similarities(images, "mean-description")
    reference_scores = dclip_scores(images, encodings)
    assert (ours_scores - reference_scores).abs().max() <= TOLERANCE
    assert torch.equal(ours_scores.argmax(1), reference_scores.argmax(1))
    assert ours.evidence_texts == [d for v in descriptors.values() for d in v]
    # prototype scoring of the same prompts: the renormalised mean of DCLIP's description encodings
    assert_same_classifier(ours.prototypes, torch.stack([F.normalize(e.mean(0), dim=0) for e in encodings.values()]),
                           images)


def test_dclip_published_file_matches_dclips_construction(tiny_model, data_dir):
    path = data_dir / "descriptions" / "dclip_imagenet.json"
    descriptors = json.loads(path.read_text())
    ds, _ = describe_import(load_class_set("imagenet1k"), path)
    ds = _subset(ds, 10)  # 100 classes, ~580 descriptors
    ours = build_classifier(tiny_model, ds)
    keys = list(descriptors)[::10]
    encodings = dclip_description_encodings(tiny_model, {k: descriptors[k] for k in keys})
    images = random_images(tiny_model.embed_dim)
    ours_scores = ScoringHead(ours).similarities(images, "mean-description")
    reference_scores = dclip_scores(images, encodings)
    assert (ours_scores - reference_scores).abs().max() <= TOLERANCE
    assert torch.equal(ours_scores.argmax(1), reference_scores.argmax(1))


# --------------------------------------------------------------------------- keys and storage


def test_prototype_is_mean_of_normalised_description_embeddings(tiny_model, tmp_path):
    cifar = load_class_set("cifar10")
    _write_cupl(tmp_path / "cupl.json", cifar.names)
    ds, _ = describe_import(cifar, tmp_path / "cupl.json")
    clf = build_classifier(tiny_model, ds)
    cat = ds.class_set.ids.index("cat")
    rows = tiny_model.encode_text(ds.records[cat].descriptions)
    expected = rows.mean(0) / np.linalg.norm(rows.mean(0))
    assert np.abs(clf.prototypes[cat] - expected).max() < 1e-5
    lo, hi = clf.offsets[cat], clf.offsets[cat + 1]
    assert clf.evidence_texts[lo:hi] == ds.records[cat].descriptions
    assert np.abs(clf.evidence[lo:hi] - rows).max() < 1e-5


def test_key_changes_with_model_descriptions_prompt_style_and_templates(tiny_model):
    cifar = load_class_set("cifar10")
    by_name = build_classifier(tiny_model, describe_classname(cifar))
    by_gloss = build_classifier(tiny_model, describe_wordnet(cifar))
    assert by_name.key != by_gloss.key
    assert classifier_key("ViT-B-32/openai", "d", "dclip") != classifier_key("ViT-B-32/laion", "d", "dclip")
    assert classifier_key("m", "d", "dclip") != classifier_key("m", "d", "sentence")
    assert classifier_key("m", "d", "templates", "cifar10") != classifier_key("m", "d", "templates", "openai")
    assert by_name.key == classifier_key(tiny_model.id, by_name.descriptions_id, "templates", "cifar10")
    assert build_classifier(tiny_model, describe_classname(cifar)).key == by_name.key


def test_serialisation_roundtrip_is_safetensors_not_pickle_and_exact(tiny_model, tmp_path):
    cifar = load_class_set("cifar10")
    _write_cupl(tmp_path / "cupl.json", cifar.names)
    clf = build_classifier(tiny_model, describe_import(cifar, tmp_path / "cupl.json")[0])
    data = clf.to_bytes()
    assert b"\x80\x04" not in data[:2] and data[8:9] == b"{"  # safetensors JSON header
    back = Classifier.from_bytes(data)
    assert back.key == clf.key and back.class_set.ids == clf.class_set.ids
    assert back.class_set.templates == "cifar10" and back.template_set == "cifar10"
    assert np.array_equal(back.prototypes, clf.prototypes)
    assert np.array_equal(back.evidence, clf.evidence)  # float32 evidence: mean-description scores exact
    assert back.logit_scale == pytest.approx(clf.logit_scale)

    half = Classifier.from_bytes(clf.to_bytes(evidence_dtype="float16"))  # the opt-in half-size form
    assert 0 < np.abs(half.evidence - clf.evidence).max() < 1e-3
    assert len(clf.to_bytes(evidence_dtype="float16")) < len(data)
    with pytest.raises(ValueError, match="evidence_dtype"):
        clf.to_bytes(evidence_dtype="int8")

    from safetensors.numpy import save  # a format-1 entry (float16 evidence) written before the bump

    old = save({"prototypes": clf.prototypes, "evidence": clf.evidence.astype("<f2"), "offsets": clf.offsets},
               metadata={"vgloss": json.dumps({**clf.header(), "format": 1, "template_set": "openai"})})
    assert Classifier.from_bytes(old).evidence.dtype == np.float32
    future = save({"prototypes": clf.prototypes}, metadata={"vgloss": json.dumps({**clf.header(), "format": 9})})
    with pytest.raises(ClassifierUnreadableError, match="format 9"):
        Classifier.from_bytes(future)
    with pytest.raises(ClassifierUnreadableError):
        Classifier.from_bytes(b"\x00" * 4)
