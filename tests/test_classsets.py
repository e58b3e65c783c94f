import json
import logging
from pathlib import Path

import pytest

from gloss_gen.data.classsets import ClassSetError, build_class_set, load_class_set


def test_imagenet1k_follows_the_standard_index(data_dir: Path):
    index = json.loads((data_dir / "imagenet_class_index.json").read_text())
    imagenet = load_class_set("imagenet1k")
    assert len(imagenet) == 1000
    assert imagenet.ids == [index[str(i)][0] for i in range(1000)]
    assert all(c.synset == c.id for c in imagenet.classes)
    names = imagenet.names
    assert names[0] == "tench" and "_" not in "".join(names)
    assert names[imagenet.ids.index("n01601694")] == "American dipper"  # not "water_ouzel"


@pytest.mark.parametrize("name", ["cifar10", "stl10"])
def test_small_builtins_have_hand_mapped_synsets(name):
    from gloss_gen.data.wordnet import get_synset

    class_set = load_class_set(name)
    assert len(class_set) == 10
    for spec in class_set.classes:
        lemmas = {lemma.replace("_", " ") for lemma in get_synset(spec.synset).lemma_names()}
        assert spec.name in lemmas or spec.name == "automobile" and "car" in lemmas


def test_custom_txt_json_yaml(tmp_path: Path, caplog):
    (tmp_path / "pets.txt").write_text("# my pets\ngolden retriever\n\ncrane\nzzqx flurbleware\n")
    with caplog.at_level(logging.WARNING):
        pets = load_class_set(tmp_path / "pets.txt")
    assert pets.name == "pets" and pets.ids == ["golden-retriever", "crane", "zzqx-flurbleware"]
    assert pets.classes[1].ambiguous and pets.classes[1].alternatives
    assert pets.classes[2].synset is None
    assert "zzqx flurbleware" in caplog.text

    entries = [{"name": "crane", "synset": "crane.n.05"}, {"name": "Bird", "id": "b1"}]
    (tmp_path / "birds.json").write_text(json.dumps(entries))
    (tmp_path / "birds.yaml").write_text("classes:\n  - name: crane\n    synset: crane.n.05\n  - {name: Bird, id: b1}\n")
    for path in ("birds.json", "birds.yaml"):
        birds = load_class_set(tmp_path / path)
        assert birds.classes[0].synset == "n02012849" and not birds.classes[0].ambiguous
        assert birds.classes[1].id == "b1"


def test_duplicate_labels_get_unique_ids():
    class_set = build_class_set("dupes", ["cat", "cat"])
    assert class_set.ids == ["cat", "cat-2"]
    # a label whose slug is a suffix already given, or an explicit id that takes one
    class_set = build_class_set("dupes", ["cat-3", "cat", "cat", {"name": "cat", "id": "cat-5"}, "cat", "cat", "cat-2"])
    assert class_set.ids == ["cat-3", "cat", "cat-2", "cat-5", "cat-4", "cat-6", "cat-2-2"]


@pytest.mark.timeout(60)
def test_many_copies_of_one_label_get_their_ids_without_a_quadratic_search():
    # schemathesis: POST /v1/class-sets with 10,000 classes "0" was answered after 61 s
    # (20,000 here: a quadratic search takes minutes, the linear one under a second after WordNet loads)
    class_set = build_class_set("dupes", ["0"] * 20_000)
    assert class_set.ids[:3] == ["0", "0-2", "0-3"] and class_set.ids[-1] == "0-20000"
    assert len(set(class_set.ids)) == 20_000


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("[1, 2", ".json", "not valid JSON"),
        ('{"classes": 3}', ".json", "expected a list"),
        ('[{"synset": "n01440764"}]', ".json", "needs a non-empty 'name'"),
        ('[{"name": "x", "synset": "n99999999"}]', ".json", "unknown WordNet synset"),
        ("", ".txt", "has no classes"),
    ],
)
def test_bad_custom_files_are_explained(tmp_path: Path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(ClassSetError, match=message):
        load_class_set(path)


def test_unknown_builtin_and_missing_file():
    with pytest.raises(ClassSetError, match="unknown class set 'imagenet22k'"):
        load_class_set("imagenet22k")
    with pytest.raises(ClassSetError, match="does not exist"):
        load_class_set("nope/none.txt")


def test_class_sets_carry_their_template_set(tmp_path: Path):
    assert [load_class_set(n).templates for n in ("imagenet1k", "cifar10", "stl10")] == ["openai", "cifar10", "stl10"]
    (tmp_path / "pets.txt").write_text("golden retriever\n")
    assert load_class_set(tmp_path / "pets.txt").templates == "openai"
    (tmp_path / "vehicles.json").write_text(json.dumps({"templates": "stl10", "classes": ["car", "ship"]}))
    vehicles = load_class_set(tmp_path / "vehicles.json")
    assert vehicles.templates == "stl10"
    assert type(vehicles).from_dict(vehicles.to_dict()).templates == "stl10"
    (tmp_path / "bad.json").write_text(json.dumps({"templates": "cifar100", "classes": ["car"]}))
    with pytest.raises(ClassSetError, match="unknown template set 'cifar100'"):
        load_class_set(tmp_path / "bad.json")
