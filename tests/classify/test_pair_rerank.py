"""FuDD's re-rank: parity with a transcription of the authors' ``fudd_model.py`` +
``prompt_factory.py`` on fixed tensors and a fixed pair file, the first-pass identity at k = 1,
scores, evidence, storage and damage."""

import itertools
import json

import numpy as np
import pytest
import torch

from gloss_gen.classify.pair_embeddings import (
    PairEmbeddings,
    PairEmbeddingsDamagedError,
    build_pair_embeddings,
    get_active_pair_embeddings,
    put_pair_embeddings,
)
from gloss_gen.classify.pair_rerank import PairRerankError
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import build_classifier
from gloss_gen.data.classsets import ClassSet, ClassSpec, load_class_set
from gloss_gen.data.descriptions import describe_classname
from gloss_gen.data.pair_descriptions import PairDescriptionSet, read_fudd_json
from gloss_gen.data.store import Store
from gloss_gen.data.store_backends import DirectoryBackend

DIM = 32
NAMES = ["japanese chin", "ragdoll", "pug", "scottish terrier", "beagle", "persian", "sphynx", "boxer"]


def fudd_pair_file(path):
    """A FuDD ``*_prompt_pairs.json``: some pairs missing, one text shared by two pairs of a class."""
    def entry(a, b, attributes):
        return {"classes": [a, b], "prompt_pairs": [
            {"attr_type": attr, "prompt_pair": [f"a photo of a {NAMES[a]}, with {attr} {x}.",
                                                 f"a photo of a {NAMES[b]}, with {attr} {y}."]}
            for attr, x, y in attributes]}

    pairs = {
        "0_1": entry(0, 1, [("coat", "white", "cream"), ("ears", "small", "large"), ("eyes", "round", "blue")]),
        "2_3": entry(2, 3, [("coat", "smooth", "wiry"), ("face", "flat", "long")]),
        "0_2": entry(0, 2, [("coat", "white", "fawn"), ("tail", "curled", "curled")]),  # "coat white" repeats for 0
        "1_5": entry(1, 5, [("face", "pointed", "flat")]),
        "3_4": entry(3, 4, [("ears", "erect", "floppy")]),
        "4_7": entry(4, 7, [("size", "small", "large"), ("muzzle", "long", "short")]),
        "5_6": entry(5, 6, [("coat", "long", "none")]),
        "2_7": entry(7, 2, [("jaw", "square", "round")]),  # classes listed high first, as FuDD allows
    }
    path.write_text(json.dumps(pairs))
    return path


class TextTable:
    """A stand-in text encoder: a fixed random unit vector per distinct text (the 'fixed tensors')."""

    id = "fixed-table"

    def __init__(self, seed=0):
        self.gen = torch.Generator().manual_seed(seed)
        self.table: dict[str, torch.Tensor] = {}

    def vector(self, text):
        if text not in self.table:
            self.table[text] = torch.nn.functional.normalize(torch.randn(DIM, generator=self.gen), dim=0)
        return self.table[text]

    def encode_text(self, texts, batch_size=256, progress=False, between_batches=None):
        return torch.stack([self.vector(t) for t in texts]).numpy()


class FuddTranscription:
    """The authors' procedure, transcribed: ``PromptFactory.get_cls_pair_prompts`` /
    ``get_prompts(prompt_type="gpt")`` and ``FuDD.get_text_embeddings`` / ``image_logit_pred``."""

    default_template = "a photo of a {}."

    def __init__(self, prompt_pairs, class_names, encode):
        self.prompt_pairs, self.class_names, self.encode = prompt_pairs, class_names, encode

    def get_cls_pair_prompts(self, classes):
        pair_key = f"{min(classes)}_{max(classes)}"
        if pair_key not in self.prompt_pairs:
            return [[self.default_template.format(self.class_names[c])] for c in classes]
        prompts = [[] for _ in classes]
        data = self.prompt_pairs[pair_key]
        cls_ids = data["classes"]
        for pp in data["prompt_pairs"]:
            prompts[classes.index(cls_ids[0])].append(pp["prompt_pair"][0])
            prompts[classes.index(cls_ids[1])].append(pp["prompt_pair"][1])
        return prompts

    def get_prompts(self, class_ids):
        prompts = [[] for _ in class_ids]
        for idx in itertools.combinations(range(len(class_ids)), 2):
            pair = [class_ids[i] for i in idx]
            pp = self.get_cls_pair_prompts(pair)
            prompts[idx[0]].extend(pp[0])
            prompts[idx[1]].extend(pp[1])
        return [list(set(p)) for p in prompts]  # (their .capitalize() is a no-op for CLIP's lowercasing tokenizer)

    def get_text_embeddings(self, texts):
        embs = []
        for text_list in texts:
            e = torch.stack([self.encode(t) for t in text_list]).double().mean(dim=0)
            embs.append(e / e.norm())
        return torch.stack(embs)

    def image_logit_pred(self, image_features, img_logits, top_k):
        top_preds = torch.argsort(img_logits, descending=True)[:top_k]
        embeddings = self.get_text_embeddings(self.get_prompts(top_preds.tolist()))
        return image_features.double() @ embeddings.T, top_preds


@pytest.fixture()
def setup(tmp_path):
    class_set = ClassSet(name="pets8", classes=[ClassSpec(id=f"c{i}", name=n) for i, n in enumerate(NAMES)])
    pair_file = fudd_pair_file(tmp_path / "pets8_prompt_pairs.json")
    pair_set = read_fudd_json(pair_file, class_set)
    model = TextTable()
    pairs = build_pair_embeddings(model, pair_set)
    first_pass = torch.nn.functional.normalize(torch.randn(len(NAMES), DIM, generator=torch.Generator().manual_seed(7)),
                                               dim=-1)
    images = torch.nn.functional.normalize(torch.randn(16, DIM, generator=torch.Generator().manual_seed(3)), dim=-1)
    reference = FuddTranscription(json.loads(pair_file.read_text()), NAMES, model.vector)
    return class_set, pair_set, pairs, first_pass, images, reference


def _head(class_set, first_pass, logit_bias=None):
    from gloss_gen.data.classifier import Classifier

    clf = Classifier(key="k", model_id="fixed-table", class_set=class_set, descriptions_id="d", method="classname",
                     prompt_style="templates", template_set="openai", prototypes=first_pass.numpy(),
                     evidence=first_pass.numpy(), offsets=np.arange(len(class_set) + 1), evidence_texts=class_set.names,
                     logit_scale=100.0, logit_bias=logit_bias)
    return ScoringHead(clf)


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_rerank_matches_fudd_transcription(setup, k):
    class_set, _, pairs, first_pass, images, reference = setup
    head = _head(class_set, first_pass)
    head.attach_pairs(pairs)
    scored = head.score(images, top_k=k, rerank_k=k)
    for b, image in enumerate(images):
        logits, preds = reference.image_logit_pred(image, image @ first_pass.T, k)
        order = torch.argsort(logits, descending=True, stable=True)
        ours = scored[b].predictions
        assert [p.class_id for p in ours] == [class_set.ids[int(preds[j])] for j in order]
        assert np.allclose([p.similarity for p in ours], logits[order].numpy(), atol=1e-6)
        assert ours[0].class_id == class_set.ids[int(preds[int(logits.argmax())])]  # FuDD's answer


def test_rerank_k_one_is_the_first_pass_exactly(setup):
    class_set, _, pairs, first_pass, images, _ = setup
    plain = _head(class_set, first_pass).score(images, top_k=5, explain=True)
    head = _head(class_set, first_pass)
    head.attach_pairs(pairs)
    for k in (0, 1):
        assert [[p.to_dict(True) for p in s.predictions] for s in head.score(images, top_k=5, explain=True, rerank_k=k)] \
            == [[p.to_dict(True) for p in s.predictions] for s in plain]


def test_scores_share_the_first_pass_mass_and_the_tail_is_unchanged(setup):
    class_set, _, pairs, first_pass, images, _ = setup
    plain = _head(class_set, first_pass).score(images, top_k=8)
    head = _head(class_set, first_pass)
    head.attach_pairs(pairs)
    reranked = head.score(images, top_k=8, rerank_k=4, explain=True)
    for before, after in zip(plain, reranked):
        b, a = before.predictions, after.predictions
        assert {p.class_id for p in a[:4]} == {p.class_id for p in b[:4]}
        assert sum(p.score for p in a[:4]) == pytest.approx(sum(p.score for p in b[:4]), abs=1e-6)
        assert [p.to_dict() for p in a[4:]] == [p.to_dict() for p in b[4:]]
        assert [p.similarity for p in a[:4]] == sorted((p.similarity for p in a[:4]), reverse=True)
        for p in a[:4]:  # evidence: one of the class's own texts
            assert NAMES[class_set.ids.index(p.class_id)] in p.evidence


def test_sigmoid_models_score_each_candidate_alone(setup):
    class_set, _, pairs, first_pass, images, _ = setup
    head = _head(class_set, first_pass, logit_bias=-10.0)
    head.attach_pairs(pairs)
    for scored in head.score(images, top_k=3, rerank_k=3):
        for p in scored.predictions:
            assert p.score == pytest.approx(float(torch.sigmoid(torch.tensor(100.0 * p.similarity - 10.0))), abs=1e-6)


def test_pairs_of_other_classes_are_refused(setup):
    class_set, pair_set, pairs, first_pass, _, _ = setup
    other = ClassSet(name="pets8", classes=list(reversed(class_set.classes)))
    head = _head(other, first_pass)
    with pytest.raises(PairRerankError, match="rebuild them"):
        head.attach_pairs(pairs)


def test_duplicate_texts_of_a_class_are_one_row(setup):
    _, pair_set, pairs, _, _, _ = setup
    chin_rows = [t for t, c in zip(pairs.texts, pairs.row_class) if c == 0]
    assert chin_rows.count("a photo of a japanese chin, with coat white.") == 1
    assert chin_rows[0] == "a photo of a japanese chin."  # its stand-in for a missing pair


def test_store_round_trip_and_damage(setup, tmp_path):
    _, _, pairs, _, _, _ = setup
    store = Store(DirectoryBackend(tmp_path / "store"))
    put_pair_embeddings(store, pairs)
    loaded = get_active_pair_embeddings(store, pairs.model_id, "pets8")
    assert loaded.key == pairs.key and np.array_equal(loaded.embeddings, pairs.embeddings)
    assert loaded.sides() == pairs.sides()
    assert get_active_pair_embeddings(store, pairs.model_id, "pets8", loaded) is loaded  # no re-read
    raw = bytearray(pairs.to_bytes())
    raw[-5] ^= 0xFF  # one flipped byte in the arrays
    with pytest.raises(PairEmbeddingsDamagedError, match="checksum"):
        PairEmbeddings.from_bytes(bytes(raw))
    for junk in (b"", b"garbage" * 10, raw[: len(raw) // 2]):
        with pytest.raises(PairEmbeddingsDamagedError):
            PairEmbeddings.from_bytes(bytes(junk))
    store.put_bytes("active-pairs", f"{pairs.model_id}:pets8", b"[1, 2]")
    with pytest.raises(PairEmbeddingsDamagedError, match="pointer"):
        get_active_pair_embeddings(store, pairs.model_id, "pets8")


def test_pairs_id_changes_with_any_text(setup):
    class_set, pair_set, _, _, _, _ = setup
    pairs = dict(pair_set.pairs)
    first = next(iter(pairs))
    pairs[first] = (pairs[first][0] + ["one more."], pairs[first][1])
    assert PairDescriptionSet(class_set, pairs).id != pair_set.id


def test_real_model_rows_are_its_unit_text_embeddings(tiny_model, tmp_path):
    cifar = load_class_set("cifar10")
    pair_set = PairDescriptionSet(cifar, {(3, 5): (["a photo of a cat, with pointed ears."],
                                                   ["a photo of a dog, with floppy ears."])})
    pairs = build_pair_embeddings(tiny_model, pair_set)
    expected = tiny_model.encode_text(pairs.texts)
    assert np.allclose(pairs.embeddings, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    head = ScoringHead(build_classifier(tiny_model, describe_classname(cifar)))
    head.attach_pairs(pairs)
    image = torch.nn.functional.normalize(torch.randn(2, head.classifier.dim), dim=-1)
    assert len(head.score(image, top_k=3, rerank_k=10)[0].predictions) == 3
