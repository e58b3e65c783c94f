import subprocess
import sys
from pathlib import Path

import pytest

from gloss_gen.data import wordnet
from gloss_gen.data.wordnet import DEBIAN_WORDNET_DIR, WordNetMissingError


def test_tench_by_wnid_and_by_name():
    synset = wordnet.get_synset("n01440764")
    assert synset.name() == "tench.n.01"
    assert "freshwater dace-like game fish" in synset.definition()
    assert wordnet.synset_id(wordnet.get_synset("tench.n.01")) == "n01440764"


def test_label_resolution_picks_common_noun_and_flags_ambiguity():
    crane = wordnet.resolve_label("crane")
    assert crane.ambiguous
    chosen = wordnet.get_synset(crane.synset)
    assert not chosen.instance_hypernyms(), "a named person must not win over a common noun"
    alternatives = {a["name"] for a in crane.alternatives}
    assert "crane.n.05" in alternatives  # the bird is offered for review


def test_label_resolution_normalises_spaces_and_plurals():
    assert wordnet.get_synset(wordnet.resolve_label("Granny Smith").synset).name() == "granny_smith.n.01"
    assert wordnet.get_synset(wordnet.resolve_label("horses").synset).name() == "horse.n.01"


def test_explicit_synset_wins_and_unknown_label_has_none():
    pinned = wordnet.resolve_label("crane", "crane.n.05")
    assert pinned.pinned and wordnet.get_synset(pinned.synset).name() == "crane.n.05"
    assert wordnet.resolve_label("zzqx flurbleware").synset is None
    with pytest.raises(KeyError):
        wordnet.resolve_label("crane", "n99999999")


def test_hypernym_chain_two_levels():
    chain = wordnet.hypernym_chain(wordnet.get_synset("n01440764"), levels=2)
    assert [s.name() for s in chain] == ["cyprinid.n.01", "cypriniform_fish.n.01"]


@pytest.mark.skipif(not DEBIAN_WORDNET_DIR.is_dir(), reason="Debian wordnet-base not installed")
def test_setup_lays_out_nltk_corpus(tmp_path: Path):
    corpus = wordnet.setup_nltk_wordnet(tmp_path)
    assert corpus == tmp_path / "corpora" / "wordnet"
    lexnames = (corpus / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45
    assert lexnames[3].split("\t") == ["03", "noun.Tops", "1"]
    assert (corpus / "data.noun").is_file() and not (corpus / "data.noun").is_symlink()
    out = subprocess.run(
        [sys.executable, "-m", "gloss_gen.data.wordnet", "--setup", str(tmp_path / "again")],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip().endswith("corpora/wordnet")


def test_missing_wordnet_names_the_fix(tmp_path: Path):
    with pytest.raises(WordNetMissingError) as err:
        wordnet.setup_nltk_wordnet(tmp_path / "root", source=tmp_path / "empty")
    assert "apt-get install wordnet-base" in str(err.value)
    assert "nltk.downloader wordnet" in str(err.value)
