import json
from pathlib import Path

import pytest

from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.description_importers import describe_import
from gloss_gen.data.descriptions import (
    DescriptionError,
    JsonlWriter,
    assemble,
    describe_classname,
    describe_wordnet,
    load_description_set,
    read_jsonl,
)


def test_wordnet_method_uses_definitions_and_falls_back_without_synset(tmp_path: Path):
    from gloss_gen.data.classsets import build_class_set

    class_set = build_class_set("mixed", ["tench", "zzqx flurbleware"])
    ds = describe_wordnet(class_set)
    assert ds.prompt_style == "gloss"
    assert ds.records[0].descriptions == [
        "freshwater dace-like game fish of Europe and western Asia noted for ability to survive outside water"
    ]
    assert ds.records[1].descriptions == [] and "fallback" in ds.records[1].provenance


def _imagenet_slice(*wnids: str):
    from gloss_gen.data.classsets import ClassSet

    imagenet = load_class_set("imagenet1k")
    return ClassSet("imagenet-slice", [imagenet.classes[imagenet.ids.index(w)] for w in wnids])


def test_cupl_import_keeps_every_sentence_as_published(tmp_path: Path):
    path = tmp_path / "cupl_prompts.json"
    cifar = load_class_set("cifar10")
    cupl = {name: [f"A {name} is a thing.", f"\n\nA photo of a {name}.", f"A {name} is a thing."]
            for name in cifar.names}
    path.write_text(json.dumps(cupl))
    ds, report = describe_import(cifar, path)
    assert ds.prompt_style == "sentence" and report.by_position
    assert any("mapped by position" in line for line in report.lines())
    assert ds.records[3].descriptions == ["A cat is a thing.", "A photo of a cat.", "A cat is a thing."]
    deduped, _ = describe_import(cifar, path, dedupe=True)
    assert deduped.records[3].descriptions == ["A cat is a thing.", "A photo of a cat."]
    assert deduped.records[3].provenance["repeats_dropped"] == 1 and deduped.id != ds.id


def test_cupl_cifar10_import(data_dir: Path):
    source = json.loads((data_dir / "descriptions" / "cupl_cifar10.json").read_text())
    ds, report = describe_import(load_class_set("cifar10"), data_dir / "descriptions" / "cupl_cifar10.json")
    assert report.matched == 10 and not report.collisions and report.by_position
    assert ds.prompt_style == "sentence"
    for record in ds.records:  # 30 sentences each, repeats included, as CuPL averages them
        assert record.descriptions == [t.strip() for t in source[record.name]]
    assert len(ds.records[0].descriptions) == 30


def test_dclip_file_in_class_order_is_mapped_by_position_with_its_own_names(tmp_path: Path):
    # two classes named "missile" and a lemma-named class, as in DCLIP's ImageNet file
    class_set = _imagenet_slice("n01440764", "n01631663", "n03773504", "n04008634")
    assert class_set.names == ["tench", "newt", "missile", "missile"]
    descriptors = {"tench": ["a freshwater fish"], "eft": ["a small lizard-like amphibian"],
                   "missile": ["a long, cylindrical body"], "projectile": ["a pointed tip", "a pointed tip"]}
    path = tmp_path / "descriptors_slice.json"
    path.write_text(json.dumps(descriptors))
    ds, report = describe_import(class_set, path)
    assert report.by_position and report.matched == 4 and not report.collisions
    assert ds.prompt_style == "dclip"
    assert [r.descriptions for r in ds.records] == list(descriptors.values())
    assert [r.prompt_name for r in ds.records] == ["tench", "eft", "missile", "projectile"]
    assert report.renamed == {"n01631663": "eft", "n04008634": "projectile"}

    # the same keys in another order are matched by name: the repeated name goes to no class
    path.write_text(json.dumps(dict(reversed(list(descriptors.items())))))
    ds, report = describe_import(class_set, path)
    assert not report.by_position and "missile" in report.collisions
    assert ds.records[2].descriptions == [] and "collision" in ds.records[2].provenance["fallback"]
    assert ds.records[3].descriptions == ["a pointed tip", "a pointed tip"]  # by the lemma "projectile"


def test_cupl_imagenet_collisions_never_give_a_class_another_class_text(data_dir: Path):
    path = data_dir / "descriptions" / "cupl_imagenet_base.json"
    source = json.loads(path.read_text())
    assert len(source) == 998  # the published file: 998 keys for 1000 classes
    imagenet = load_class_set("imagenet1k")
    ds, report = describe_import(imagenet, path)
    collided = {cid for ids in report.collisions.values() for cid in ids}
    assert report.collisions, "the published file's duplicate names must be reported"
    assert any("name collision" in line for line in report.lines())
    for record in ds.records:
        if record.class_id in collided:
            assert record.descriptions == [] and "collision" in record.provenance["fallback"]
        elif record.descriptions:
            key = record.provenance["source_key"]
            # the text came from the key naming this class, never a neighbour's
            assert record.name == key or record.name.lower() == key.lower()
    assert report.matched + len(report.classes_without) == 1000


def test_dclip_imagenet_maps_all_1000_classes_by_position(data_dir: Path):
    path = data_dir / "descriptions" / "dclip_imagenet.json"
    source = json.loads(path.read_text())
    ds, report = describe_import(load_class_set("imagenet1k"), path)
    assert ds.prompt_style == "dclip"
    assert report.by_position and report.matched == 1000 and not report.collisions
    assert [r.prompt_name for r in ds.records] == list(source)  # DCLIP's own names in its prompts
    assert [r.descriptions for r in ds.records] == list(source.values())


def test_bad_import_files(tmp_path: Path):
    cifar = load_class_set("cifar10")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DescriptionError, match="expected"):
        describe_import(cifar, tmp_path / "list.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DescriptionError, match="not valid JSON"):
        describe_import(cifar, tmp_path / "broken.json")


def test_jsonl_roundtrip_resume_and_torn_line(tmp_path: Path):
    cifar = load_class_set("cifar10")
    ds = describe_wordnet(cifar)
    out = tmp_path / "d.jsonl"
    with JsonlWriter(out) as writer:
        for record in ds.records[:4]:
            writer.write(record)
    with out.open("a") as fh:
        fh.write('{"class_id": "trunc')  # a crash mid-line
    assert [r.class_id for r in read_jsonl(out)] == cifar.ids[:4]
    with JsonlWriter(out) as writer:  # resume appends after repairing the torn tail
        for record in ds.records[4:]:
            writer.write(record)
    loaded = load_description_set(out)
    assert loaded.class_set.ids == cifar.ids
    assert loaded.id == ds.id and loaded.prompt_style == "gloss"


def test_latest_line_wins_and_missing_classes_are_errors():
    cifar = load_class_set("cifar10")
    ds = describe_classname(cifar)
    failed = ds.records[0].__class__.from_json({**ds.records[0].to_json(), "error": "429"})
    assembled = assemble(cifar, [failed, *ds.records[1:5]])
    assert assembled.records[0].error == "429"
    assert [r.error for r in assembled.records[5:]] == ["no description line for this class"] * 5
    assembled = assemble(cifar, [failed, *ds.records])
    assert not assembled.failed
