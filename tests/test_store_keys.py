"""The directory store cannot leave its root, whatever key it is given (red-team issue #9, item 1)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from gloss_gen.data.store import DirectoryBackend, InvalidStoreKey, Store, decode_key_part, encode_key_part

HOSTILE_PARTS = [
    "..", ".", "", "/", "\\", "\0", "../..", "..\\..", "/etc/passwd", "a/../../b", "%2e%2e", "%2F",
    "%", "%%", ".tmp-x", "~", "$HOME", "con", "a\nb", "é", "😀", " ", "..." , "x" * 200,
]


def _files_outside(root: Path, before: set[Path]) -> set[Path]:
    return {p for p in root.parent.rglob("*") if p not in before and root not in p.parents and p != root}


def _assert_only_under_root(tmp_path: Path, root: Path, before: set[Path]) -> None:
    assert _files_outside(root, before) == set(), "a write landed outside the store's root"
    for path in root.rglob("*"):
        assert root.resolve() in path.resolve().parents


def test_the_red_team_job_id_cannot_read_a_file_outside_the_store(tmp_path):
    secret = tmp_path / "etc" / "passwd"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"state": "done", "secret": "root:x:0:0"}))
    store = Store(DirectoryBackend(tmp_path / "data" / "store"))
    depth = len((tmp_path / "data" / "store").parts) + 3
    for job_id in ("..:..:..:etc:passwd", ":".join([".."] * depth + ["etc", "passwd"]),
                   "..:..:..:etc:passwd\0", "%2e%2e:%2e%2e:%2e%2e:etc:passwd"):
        assert store.get_job(job_id) is None
        key = store._k("job", job_id)
        store.backend.set(key, b'{"state": "x"}')
        assert store.backend.get(key) == b'{"state": "x"}'
        assert set(store.backend.keys(store._k("job") + ":")) >= {key}
    assert json.loads(secret.read_text())["secret"] == "root:x:0:0"


def test_hostile_key_parts_round_trip_and_stay_inside_the_root(tmp_path):
    root = tmp_path / "store"
    backend = DirectoryBackend(root)
    before = set(tmp_path.rglob("*"))
    stored = {}
    for i, part in enumerate(HOSTILE_PARTS):
        key = f"ns:job:{part}:{i}"
        backend.set(key, part.encode())
        stored[key] = part.encode()
        assert decode_key_part(encode_key_part(part)) == part
    for key, value in stored.items():
        assert backend.get(key) == value
    assert sorted(backend.keys("ns:job:")) == sorted(stored)
    _assert_only_under_root(tmp_path, root, before)
    for key in stored:
        backend.delete(key)
        assert backend.get(key) is None


def test_random_hostile_keys_never_escape_or_crash(tmp_path):
    """Fuzz: keys built from separators, dots, slashes, NULs and random unicode."""
    root = tmp_path / "a" / "store"
    backend = DirectoryBackend(root)
    before = set(tmp_path.rglob("*"))
    rng = random.Random(9)
    alphabet = [":", ".", "..", "/", "\\", "\0", "%", "%2e", "%2f", "a", "Z", "-", "é", "\ud800", "\n", " ", "~"]
    written = {}
    for _ in range(1500):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.05:
            key += "x" * rng.randint(200, 5000)
        value = os.urandom(4)
        assert backend.get(key) in (None, written.get(key))
        try:
            backend.set(key, value)
        except InvalidStoreKey:
            assert backend.get(key) is None or key in written
            continue
        written[key] = value
        assert backend.get(key) == value
    assert written, "the fuzz wrote nothing"
    _assert_only_under_root(tmp_path, root, before)
    assert set(backend.keys("")) == set(written)
    assert all(backend.get(k) == v for k, v in written.items())


def test_a_symlink_planted_in_the_store_does_not_lead_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text('{"leak": true}')
    root = tmp_path / "store"
    backend = DirectoryBackend(root)
    (root / "job").mkdir()
    (root / "job" / "evil").symlink_to(outside)
    assert backend.get("job:evil:secret") is None
    with pytest.raises(InvalidStoreKey):
        backend.set("job:evil:new", b"x")
    assert not (outside / "new").exists()


def test_a_key_part_too_long_for_a_file_name_is_absent_and_refused_with_a_code(tmp_path):
    backend = DirectoryBackend(tmp_path / "store")
    key = "ns:job:" + "j" * 5000
    assert backend.get(key) is None
    with pytest.raises(InvalidStoreKey) as err:
        backend.set(key, b"x")
    assert err.value.code == "invalid_store_key" and "too long" in err.value.message


def test_existing_store_layout_is_unchanged_for_ordinary_keys(tmp_path):
    """Stores written before the hardening keep working: ordinary parts map to the same files."""
    root = tmp_path / "store"
    backend = DirectoryBackend(root)
    backend.set("vgloss:v1:active:ViT-B-32/openai:imagenet1k", b"{}")
    assert (root / "vgloss" / "v1" / "active" / "ViT-B-32%2Fopenai" / "imagenet1k").read_bytes() == b"{}"
