"""NegLabel's negative labels, mined from our WordNet 3.0, in two steps around the text encoder.

1. :func:`negative_candidates` lists the words that may serve as negatives for a class set, each with
   the prompt NegLabel embeds it in (XueJiang16/NegLabel ``mmcls/models/classifiers/multi_modal.py``
   ``CLIPScalableClassifier``; ``custom_config/clip.py`` picks ``prompt_templates[85]``, "the nice
   {}", for nouns; adjectives read "This is a {} photo"). One word per synset, its first lemma,
   lower-cased, from the lexicographer files of their shipped database ``txtfiles/`` (every noun and
   adjective file but noun.animal and noun.food); the first spelling of a word wins.
   NegRefine's fix on top: words of the in-set synsets, of all their hypernyms and of all their
   hyponyms are not negatives (a "puppy" or a "canine" negative rejects dog photos), nor are proper
   nouns (instances, or capitalised lemmas).
2. :func:`select_negatives`, given the candidates' and the in-set labels' text embeddings, keeps per
   part of speech the ``keep`` share (0.15, ``neg_topk``) whose ``eta`` quantile (0.95,
   ``pencentile``) of cosines to the in-set labels is lowest, least similar first, nouns then
   adjectives, the order NegLabel's grouping relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..core.errors import InputError
from .wordnet import get_synset, get_wordnet, synset_id

NOUN_PROMPT = "the nice {}"
ADJECTIVE_PROMPT = "This is a {} photo"
NEGLABEL_QUANTILE = 0.95
NEGLABEL_KEEP_SHARE = 0.15
NOUN, ADJECTIVE = "noun", "adjective"

# The lexicographer files NegLabel's database holds, in WordNet's file-number order.
NEGLABEL_NOUN_FILES = (
    "noun.Tops", "noun.act", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
NEGLABEL_ADJECTIVE_FILES = ("adj.all", "adj.pert", "adj.ppl")

_QUANTILE_ELEMENTS = 1 << 22  # cosines per torch.quantile call (it refuses inputs over 2**24)


class NegativeLabelError(InputError):
    """Negative labels cannot be mined or selected from these inputs."""

    code = "invalid_negative_labels"


@dataclass(frozen=True)
class Candidate:
    """A possible negative label: the word, its part of speech, the prompt to embed and its synset."""

    word: str
    pos: str  # NOUN or ADJECTIVE
    prompt: str
    synset: str  # wnid of the synset the word was taken from


def _word(lemma_name: str) -> str:
    return lemma_name.replace("_", " ").lower()


def _closure(synset, relations) -> set:
    seen, stack = set(), [synset]
    while stack:
        for related in relations(stack.pop()):
            if related not in seen:
                seen.add(related)
                stack.append(related)
    return seen


def inset_exclusions(class_set) -> tuple[set, set[str]]:
    """The synsets and words no negative may come from: every in-set synset with all its hypernyms
    and hyponyms (instance links included), and every lemma of those synsets and every class name."""
    synsets: set = set()
    words = {_word(spec.name.strip()) for spec in class_set.classes}
    for spec in class_set.classes:
        if not spec.synset:
            continue
        inset = get_synset(spec.synset)
        synsets.add(inset)
        synsets |= _closure(inset, lambda s: s.hypernyms() + s.instance_hypernyms())
        synsets |= _closure(inset, lambda s: s.hyponyms() + s.instance_hyponyms())
    for synset in synsets:
        words.update(_word(lemma) for lemma in synset.lemma_names())
    return synsets, words


def _is_proper(synset) -> bool:
    return bool(synset.instance_hypernyms()) or synset.lemma_names()[0][:1].isupper()


@lru_cache(maxsize=4)
def _wordnet_words(noun_files: tuple[str, ...], adjective_files: tuple[str, ...]) -> tuple[tuple, ...]:
    """(word, pos, synset) for every common noun and adjective of the files, the first synset of
    each word, nouns then adjectives, each by lexicographer file then offset (the class-set-free part)."""
    wn = get_wordnet()
    seen: set[str] = set()
    words = []
    for pos, files, wordnet_pos in ((NOUN, noun_files, "n"), (ADJECTIVE, adjective_files, "a")):
        rank = {name: i for i, name in enumerate(files)}
        synsets = [s for s in wn.all_synsets(wordnet_pos) if s.lexname() in rank and not _is_proper(s)]
        synsets.sort(key=lambda s: (rank[s.lexname()], s.offset()))
        for synset in synsets:
            word = _word(synset.lemma_names()[0])
            if word not in seen:
                seen.add(word)
                words.append((word, pos, synset))
    return tuple(words)


def negative_candidates(class_set, noun_files: Sequence[str] = NEGLABEL_NOUN_FILES,
                        adjective_files: Sequence[str] = NEGLABEL_ADJECTIVE_FILES) -> list[Candidate]:
    """The candidate negatives for ``class_set`` (anything with ``.classes`` of ``name``/``synset``):
    nouns then adjectives, each by lexicographer file then WordNet offset; the same order every run."""
    excluded_synsets, excluded_words = inset_exclusions(class_set)
    prompts = {NOUN: NOUN_PROMPT, ADJECTIVE: ADJECTIVE_PROMPT}
    return [
        Candidate(word=word, pos=pos, prompt=prompts[pos].format(word), synset=synset_id(synset))
        for word, pos, synset in _wordnet_words(tuple(noun_files), tuple(adjective_files))
        if word not in excluded_words and synset not in excluded_synsets
    ]


def select_negatives(candidate_embeddings, inset_embeddings, eta: float = NEGLABEL_QUANTILE,
                     keep: float = NEGLABEL_KEEP_SHARE, parts_of_speech: Sequence[str] | None = None):
    """Indices of the negatives NegLabel keeps: (N, D) candidate and (C, D) in-set text embeddings in.

    Each candidate is scored by the ``eta`` quantile (linear interpolation, ``torch.quantile``) of its
    cosines to the in-set labels. Within each part of speech (all one group when ``parts_of_speech``
    is None; groups in order of first appearance) the ``int(size * keep)`` lowest are kept, lowest
    first; equal scores keep the candidates' order (a stable sort: the authors' GPU sort leaves ties
    unordered). Returns a LongTensor of candidate indices, one part of speech after the other.
    """
    import torch

    candidates = torch.as_tensor(candidate_embeddings, dtype=torch.float32)
    inset = torch.as_tensor(inset_embeddings, dtype=torch.float32)
    if candidates.dim() != 2 or candidates.shape[0] == 0:
        raise NegativeLabelError("there are no candidate negative labels to select from")
    if inset.dim() != 2 or inset.shape[0] == 0:
        raise NegativeLabelError("negative labels are selected against in-set labels and there are none")
    if candidates.shape[1] != inset.shape[1]:
        raise NegativeLabelError(
            f"candidate and in-set embeddings differ in width ({candidates.shape[1]} and {inset.shape[1]})"
        )
    if not 0.0 <= eta <= 1.0:
        raise NegativeLabelError(f"the similarity quantile must be between 0 and 1, got {eta}")
    if not 0.0 < keep <= 1.0:
        raise NegativeLabelError(f"the share of candidates to keep must be in (0, 1], got {keep}")
    if parts_of_speech is not None and len(parts_of_speech) != candidates.shape[0]:
        raise NegativeLabelError(f"{len(parts_of_speech)} parts of speech for {candidates.shape[0]} candidates")

    candidates = torch.nn.functional.normalize(candidates, dim=1)
    inset = torch.nn.functional.normalize(inset, dim=1)
    rows = max(1, _QUANTILE_ELEMENTS // inset.shape[0])
    quantiles = torch.cat([
        torch.quantile(candidates[start:start + rows] @ inset.T, q=eta, dim=1)
        for start in range(0, candidates.shape[0], rows)
    ])
    labels = list(parts_of_speech) if parts_of_speech is not None else [None] * candidates.shape[0]
    kept = []
    for pos in dict.fromkeys(labels):
        members = torch.tensor([i for i, label in enumerate(labels) if label == pos], dtype=torch.long)
        ranked = members[torch.argsort(quantiles[members], stable=True)]
        kept.append(ranked[: int(len(members) * keep)])
    selected = torch.cat(kept)
    if selected.numel() == 0:
        raise NegativeLabelError(
            f"keeping {keep:.0%} of {candidates.shape[0]} candidates leaves no negative label"
        )
    return selected
