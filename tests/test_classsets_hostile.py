"""Hostile class-set files (red-team issue #9, items 17-19): one line naming the line, never a hang."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gloss_gen.data.classsets import ClassSetError, build_class_set, load_class_set

REPO_ROOT = Path(__file__).resolve().parents[1]

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
classes: [{name: *i}]
"""


def test_yaml_billion_laughs_is_refused_at_the_first_alias(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.encode()) < 600
    with pytest.raises(ClassSetError) as err:
        load_class_set(path)
    assert "line 2" in err.value.message and "aliases" in err.value.message and "\n" not in err.value.message


def test_billion_laughs_through_the_cli_is_one_line_and_bounded(tmp_path):
    """The CLI as a user runs it, under a 1 GiB address-space cap: exit 2 with one line, fast."""
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    result = subprocess.run(
        [sys.executable, "-m", "gloss_gen.cli", "describe", str(path), "--method", "classname",
         "--out", str(tmp_path / "out.jsonl"), "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, preexec_fn=cap_memory, check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "aliases" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ('[{"name": "cat", "synset": 123}]', ".json", "class #1 (line 1) of 'bad': 'synset' must be text, not int"),
        ('[\n  "dog",\n  {"name": "cat", "synset": ["n1"]}\n]', ".json", "class #2 (line 3) of 'bad': 'synset' must"),
        ('[{"name": "cat", "id": {"x": 1}}]', ".json", "'id' must be text, not dict"),
        ('[{"name": ["cat"]}]', ".json", "class #1 (line 1) of 'bad' needs a non-empty 'name'"),
        ("- {name: cat, synset: 12}\n", ".yaml", "class #1 (line 1) of 'bad': 'synset' must be text"),
        ('{"classes": [\n {"name": "a", "id": "x"},\n {"name": "b", "id": "y"},\n {"name": "c", "id": "x"}\n]}',
         ".json", "class #3 (line 4) of 'bad': id 'x' is already the id of class #1 (line 2)"),
        ("classes:\n  - {name: a, id: x}\n  - {name: b, id: x}\n", ".yaml", "class #2 (line 3) of 'bad': id 'x'"),
        ("[" * 100_000, ".json", "not valid JSON"),
        ("[" * 100_000, ".yaml", "not valid YAML"),
        ('[{"name": "' + "n" * 400 + '"}]', ".json", "over 300 characters"),
    ],
)
def test_bad_entries_are_one_line_naming_the_line(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(ClassSetError) as err:
        load_class_set(path)
    assert message in err.value.message
    assert "\n" not in err.value.message and len(err.value.message) < 600


def test_duplicate_explicit_ids_are_refused_but_duplicate_labels_still_get_slugs():
    with pytest.raises(ClassSetError, match="id 'x' is already the id of class #1"):
        build_class_set("dupes", [{"name": "a", "id": "x"}, {"name": "b", "id": "x"}])
    # a label whose slug an explicit id already took gets the next slug, not the explicit one
    assert build_class_set("mixed", ["cat", {"name": "dog", "id": "cat"}]).ids == ["cat-2", "cat"]
    assert build_class_set("dupes", ["cat", "cat"]).ids == ["cat", "cat-2"]


def test_good_files_keep_working(tmp_path):
    path = tmp_path / "pets.json"
    path.write_text(json.dumps({"description": "d", "classes": ["cat", {"name": 1984}, {"name": "x", "id": "y"}]}))
    pets = load_class_set(path)
    assert pets.names == ["cat", "1984", "x"] and pets.ids == ["cat", "1984", "y"] and pets.description == "d"
