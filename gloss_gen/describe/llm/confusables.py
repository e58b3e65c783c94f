"""Confusable classes: for each class of a set, the most similar others (Wu-Palmer similarity
over WordNet nouns, character-trigram name similarity for classes WordNet does not know)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from gloss_gen.data import wordnet
from gloss_gen.data.classsets import ClassSet
from gloss_gen.describe.llm.facts import synset_of

DEFAULT_K_CONFUSABLES = 5


class WuPalmer:
    """Wu-Palmer similarity with exactly the numbers of :func:`gloss_gen.data.wordnet.similarity`
    (NLTK's ``wup_similarity``), computed from per-synset ancestor tables kept across pairs.

    NLTK rebuilds those tables on every call (~240 µs a pair: two minutes for the 500k pairs of
    ImageNet-1k); cached, a pair is a set intersection and two dictionary look-ups. Noun pairs
    only (the noun taxonomy has one root); anything else goes to ``wordnet.similarity``.
    """

    def __init__(self) -> None:
        self._ancestors: dict[Any, dict[Any, int]] = {}
        self._distances: dict[tuple[Any, Any], int] = {}

    def ancestors(self, synset) -> dict[Any, int]:
        """The synset and all its (instance) hypernyms, each with its shortest distance upwards."""
        table = self._ancestors.get(synset)
        if table is None:
            table = {}
            frontier, depth = [synset], 0
            while frontier:
                nxt = []
                for s in frontier:
                    if s not in table:
                        table[s] = depth
                        nxt.extend(s.hypernyms())
                        nxt.extend(s.instance_hypernyms())
                frontier, depth = nxt, depth + 1
            self._ancestors[synset] = table
        return table

    def _distance(self, synset, ancestor) -> int:
        # NLTK's shortest_path_distance: the path may go up past the ancestor and down again
        # when multiple inheritance gives a shortcut, so it is a minimum over shared ancestors.
        if synset == ancestor:
            return 0
        key = (synset, ancestor)
        cached = self._distances.get(key)
        if cached is None:
            up = self.ancestors(synset)
            up_anc = self.ancestors(ancestor)
            cached = min(d + up_anc[x] for x, d in up.items() if x in up_anc)
            self._distances[key] = cached
        return cached

    def __call__(self, a, b) -> float:
        if a.pos() != "n" or b.pos() != "n":
            return wordnet.similarity(a, b)
        up_a, up_b = self.ancestors(a), self.ancestors(b)
        common = up_a.keys() & up_b.keys()
        if not common:
            return 0.0
        deepest = max(s.min_depth() for s in common)
        lowest = sorted(s for s in common if s.min_depth() == deepest)
        subsumer = a if a in lowest else lowest[0]
        depth = subsumer.max_depth() + 1
        len_a = self._distance(a, subsumer) + depth
        len_b = self._distance(b, subsumer) + depth
        return 2.0 * depth / (len_a + len_b)


def _trigrams(text: str) -> Counter:
    padded = f"  {re.sub(r'[^a-z0-9]+', ' ', text.lower()).strip()} "
    return Counter(padded[i : i + 3] for i in range(len(padded) - 2))


def name_similarity(a: str, b: str) -> float:
    """Cosine of character-trigram counts: 1.0 for equal names, 0.0 for nothing in common."""
    ga, gb = _trigrams(a), _trigrams(b)
    dot = sum(count * gb[g] for g, count in ga.items())
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(v * v for v in ga.values()) * sum(v * v for v in gb.values()))


def wu_palmer_matrix(synsets: Sequence[Any]) -> np.ndarray:
    """(C, C) Wu-Palmer similarities of noun synsets, equal to ``wordnet.similarity(s[i], s[j])``
    for ``i < j`` (mirrored below the diagonal; the diagonal is 1).

    Vectorised over the union of the classes' ancestors: a pair's lowest common subsumer is the
    first shared ancestor in NLTK's order (greatest minimum depth, then smallest name), found by
    visiting ancestors in that order and claiming the still-unclaimed pairs among the classes
    below each. ImageNet-1k takes about a second instead of minutes.
    """
    wup = WuPalmer()
    count = len(synsets)
    node_index: dict[Any, int] = {}
    for synset in synsets:
        for ancestor in wup.ancestors(synset):
            node_index.setdefault(ancestor, len(node_index))
    nodes = list(node_index)
    members: list[list[int]] = [[] for _ in nodes]
    distance = np.zeros((count, len(nodes)), dtype=np.float64)
    for i, synset in enumerate(synsets):
        for ancestor in wup.ancestors(synset):
            members[node_index[ancestor]].append(i)
            distance[i, node_index[ancestor]] = wup._distance(synset, ancestor)

    order = sorted(range(len(nodes)), key=lambda n: (-nodes[n].min_depth(), nodes[n].name()))
    lcs = np.full((count, count), -1, dtype=np.int64)
    for n in order:
        rows = np.asarray(members[n])
        grid = np.ix_(rows, rows)
        block = lcs[grid]
        unclaimed = block < 0
        if unclaimed.any():
            block[unclaimed] = n
            lcs[grid] = block
    if (lcs < 0).any():  # pragma: no cover - every noun descends from entity.n.01
        raise ValueError("synsets without a common ancestor; use WuPalmer for them")

    depth = np.array([node.max_depth() + 1 for node in nodes], dtype=np.float64)[lcs]
    rows, cols = np.indices((count, count))
    scores = 2.0 * depth / (distance[rows, lcs] + distance[cols, lcs] + 2.0 * depth)

    # NLTK prefers the first synset itself as the subsumer when it ties with another ancestor,
    # which makes those (rare) pairs order-dependent: recompute them the scalar way.
    own_node = np.array([node_index[s] for s in synsets])
    for i, j in zip(*np.nonzero((lcs == own_node[:, None]) | (lcs == own_node[None, :]))):
        if i < j:
            scores[i, j] = scores[j, i] = wup(synsets[i], synsets[j])
    return scores.astype(np.float32)


def similarity_matrix(class_set: ClassSet) -> np.ndarray:
    """(C, C) class similarities: Wu-Palmer where both classes have noun synsets, name
    similarity otherwise. The diagonal is 0."""
    synsets = [synset_of(spec) for spec in class_set.classes]
    names = class_set.names
    count = len(names)
    scores = np.zeros((count, count), dtype=np.float32)
    nouns = [i for i, s in enumerate(synsets) if s is not None and s.pos() == "n"]
    if nouns:
        scores[np.ix_(nouns, nouns)] = wu_palmer_matrix([synsets[i] for i in nouns])
    noun_set = set(nouns)
    wup = WuPalmer()
    for i in (i for i in range(count) if i not in noun_set):
        for j in range(count):
            if j == i or (j not in noun_set and j < i):
                continue  # the diagonal, or a pair already done from j's side
            a, b = (i, j) if i < j else (j, i)
            if synsets[a] is not None and synsets[b] is not None:
                value = wup(synsets[a], synsets[b])
            else:
                value = name_similarity(names[a], names[b])
            scores[a, b] = scores[b, a] = value
    np.fill_diagonal(scores, 0.0)
    return scores


def find_confusables(class_set: ClassSet, k: int = DEFAULT_K_CONFUSABLES) -> list[list[int]]:
    """For each class, the indices of up to ``k`` most similar other classes of the set, most
    similar first (ties: class-set order). Classes with nothing in common are left out."""
    if k <= 0 or len(class_set) < 2:
        return [[] for _ in class_set.classes]
    scores = similarity_matrix(class_set)
    result = []
    for i, row in enumerate(scores):
        row = row.copy()
        row[i] = -1.0
        order = np.argsort(-row, kind="stable")[:k]
        result.append([int(j) for j in order if row[j] > 0])
    return result

