"""The embeddings of a class set's pairwise differential descriptions (FuDD), built once per model
and pair file, stored beside the classifier, served by the re-rank (:mod:`gloss_gen.classify.pair_rerank`).

Every distinct text of a class is one row: first the class-name prompt ``a photo of a {name}.``
that stands in for a missing pair (FuDD's ``default_template``), then the texts of its pairs in
file order; a text a class shares between two of its pairs is one row, as FuDD's ``set()`` keeps it
once. Each pair names the rows of each side.

Keyed by a content hash of (format, model id, pair-set id) and stored as safetensors with a JSON
header (never pickle) under ``{ns}:pairs:{key}``, sealed with the classifier checksum; the pairs a
class set serves are named by ``{ns}:active-pairs:{model_id}:{class_set}``. Damaged bytes or a
damaged pointer raise :class:`PairEmbeddingsDamagedError` in one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from gloss_gen.core.errors import CorruptDataError
from gloss_gen.data.classifier import normalize_rows, read_safetensors_metadata
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import utc_now
from gloss_gen.data.integrity import CHECKSUM_FIELD, classifier_digest
from gloss_gen.data.pair_descriptions import PairDescriptionSet, fallback_prompt

FORMAT_VERSION = 1
RECORD_KIND = "pairs"
ACTIVE_KIND = "active-pairs"
HEADER_FIELD = "vgloss-pairs"


class PairEmbeddingsDamagedError(CorruptDataError):
    """Pair-embedding bytes (or an active-pairs pointer) that cannot be trusted as what they claim."""

    code = "pairs_corrupt"


def pair_embeddings_key(model_id: str, pairs_id: str) -> str:
    payload = json.dumps([FORMAT_VERSION, model_id, pairs_id])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class PairEmbeddings:
    """Rows (R, D) of unit text embeddings; ``row_class`` (R,) the class of each row;
    ``fallback_row`` (C,) each class's class-name row; pair ``p`` = ``pair_index[p]`` = (i, j),
    ``i < j``, whose side ``s`` owns ``side_rows[side_offsets[2p+s]:side_offsets[2p+s+1]]``."""

    key: str
    model_id: str
    pairs_id: str
    class_set: ClassSet
    texts: list[str]
    embeddings: np.ndarray
    row_class: np.ndarray
    fallback_row: np.ndarray
    pair_index: np.ndarray
    side_offsets: np.ndarray
    side_rows: np.ndarray
    created_at: str = field(default_factory=utc_now)

    @property
    def num_pairs(self) -> int:
        return int(len(self.pair_index))

    def sides(self) -> dict[tuple[int, int], tuple[tuple[int, ...], tuple[int, ...]]]:
        """``{(i, j): (rows of i, rows of j)}``."""
        offsets, rows = self.side_offsets.tolist(), self.side_rows.tolist()
        return {
            (int(i), int(j)): (tuple(rows[offsets[2 * p]:offsets[2 * p + 1]]),
                               tuple(rows[offsets[2 * p + 1]:offsets[2 * p + 2]]))
            for p, (i, j) in enumerate(self.pair_index.tolist())
        }

    def header(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "key": self.key,
            "model_id": self.model_id,
            "pairs_id": self.pairs_id,
            "class_set": self.class_set.to_dict(),
            "texts": self.texts,
            "created_at": self.created_at,
        }

    def summary(self) -> dict:
        return {"key": self.key, "pairs": self.num_pairs, "texts": len(self.texts), "created_at": self.created_at}

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        tensors = {
            "embeddings": np.ascontiguousarray(self.embeddings, dtype="<f4"),
            "row_class": np.ascontiguousarray(self.row_class, dtype="<i8"),
            "fallback_row": np.ascontiguousarray(self.fallback_row, dtype="<i8"),
            "pair_index": np.ascontiguousarray(self.pair_index, dtype="<i8").reshape(-1, 2),
            "side_offsets": np.ascontiguousarray(self.side_offsets, dtype="<i8"),
            "side_rows": np.ascontiguousarray(self.side_rows, dtype="<i8"),
        }
        header = json.dumps(self.header(), ensure_ascii=False)
        return save(tensors, metadata={HEADER_FIELD: header, CHECKSUM_FIELD: classifier_digest(header, tensors)})

    @classmethod
    def from_bytes(cls, data: bytes) -> PairEmbeddings:
        try:
            record = cls._parse(data)
        except PairEmbeddingsDamagedError:
            raise
        except Exception as exc:  # whatever damaged bytes make the parser raise, in one line
            raise PairEmbeddingsDamagedError(
                f"the pair embeddings cannot be read: {type(exc).__name__}: {str(exc)[:200]}") from None
        record._check()
        return record

    @classmethod
    def _parse(cls, data: bytes) -> PairEmbeddings:
        from safetensors.numpy import load

        metadata = read_safetensors_metadata(data)
        header = metadata.get(HEADER_FIELD)
        if header is None:
            raise PairEmbeddingsDamagedError(f"not vgloss pair embeddings (no {HEADER_FIELD!r} metadata)")
        meta = json.loads(header)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise PairEmbeddingsDamagedError(f"the pair embeddings' format is not {FORMAT_VERSION}")
        arrays = load(data)
        if classifier_digest(header, arrays) != metadata.get(CHECKSUM_FIELD):
            raise PairEmbeddingsDamagedError(
                f"pair embeddings {meta.get('key')} do not match their checksum: header or arrays were changed")
        return cls(
            key=str(meta["key"]), model_id=str(meta["model_id"]), pairs_id=str(meta["pairs_id"]),
            class_set=ClassSet.from_dict(meta["class_set"]), texts=[str(t) for t in meta["texts"]],
            embeddings=arrays["embeddings"].astype(np.float32), row_class=arrays["row_class"].astype(np.int64),
            fallback_row=arrays["fallback_row"].astype(np.int64), pair_index=arrays["pair_index"].astype(np.int64),
            side_offsets=arrays["side_offsets"].astype(np.int64), side_rows=arrays["side_rows"].astype(np.int64),
            created_at=str(meta.get("created_at", "")),
        )

    def _check(self) -> None:
        def damaged(why: str) -> PairEmbeddingsDamagedError:
            return PairEmbeddingsDamagedError(f"pair embeddings {self.key} are damaged: {why}")

        rows, classes, pairs = len(self.texts), len(self.class_set), len(self.pair_index)
        if self.embeddings.ndim != 2 or len(self.embeddings) != rows or self.row_class.shape != (rows,):
            raise damaged(f"{self.embeddings.shape} embeddings for {rows} texts")
        if not np.isfinite(self.embeddings).all():
            raise damaged("non-finite embeddings")
        if self.fallback_row.shape != (classes,) or self.side_offsets.shape != (2 * pairs + 1,):
            raise damaged("the pair index does not match the class set")
        for name, values, bound in (("row_class", self.row_class, classes), ("fallback_row", self.fallback_row, rows),
                                    ("pair_index", self.pair_index, classes), ("side_rows", self.side_rows, rows)):
            if values.size and (values.min() < 0 or values.max() >= bound):
                raise damaged(f"{name} out of range")
        if (pairs and (self.pair_index[:, 0] >= self.pair_index[:, 1]).any()) or (np.diff(self.side_offsets) < 0).any() \
                or self.side_offsets[0] != 0 or self.side_offsets[-1] != len(self.side_rows):
            raise damaged("the pair index is malformed")


def build_pair_embeddings(model, pair_set: PairDescriptionSet, batch_size: int = 256,
                          progress: bool = False) -> PairEmbeddings:
    """Embed every distinct text of every class of ``pair_set`` with ``model`` (anything with ``id``
    and ``encode_text``, e.g. :class:`~gloss_gen.model.clip_models.ClipModel`)."""
    class_set = pair_set.class_set
    texts: list[str] = []
    row_class: list[int] = []
    row_of: dict[tuple[int, str], int] = {}

    def row(cls: int, text: str) -> int:
        if (cls, text) not in row_of:
            row_of[(cls, text)] = len(texts)
            texts.append(text)
            row_class.append(cls)
        return row_of[(cls, text)]

    fallback = [row(c, fallback_prompt(name)) for c, name in enumerate(class_set.names)]
    pair_index, side_offsets, side_rows = [], [0], []
    for (i, j), (texts_i, texts_j) in sorted(pair_set.pairs.items()):
        pair_index.append((i, j))
        for cls, side in ((i, texts_i), (j, texts_j)):
            side_rows.extend(dict.fromkeys(row(cls, t) for t in side))
            side_offsets.append(len(side_rows))
    embeddings = model.encode_text(texts, batch_size=batch_size, progress=progress)
    return PairEmbeddings(
        key=pair_embeddings_key(model.id, pair_set.id),
        model_id=model.id,
        pairs_id=pair_set.id,
        class_set=class_set,
        texts=texts,
        embeddings=normalize_rows(np.asarray(embeddings, dtype=np.float32)),
        row_class=np.asarray(row_class, dtype=np.int64),
        fallback_row=np.asarray(fallback, dtype=np.int64),
        pair_index=np.asarray(pair_index, dtype=np.int64).reshape(-1, 2),
        side_offsets=np.asarray(side_offsets, dtype=np.int64),
        side_rows=np.asarray(side_rows, dtype=np.int64),
    )


def put_pair_embeddings(store, pairs: PairEmbeddings, activate: bool = True) -> None:
    store.put_bytes(RECORD_KIND, pairs.key, pairs.to_bytes())
    if activate:
        set_active_pair_embeddings(store, pairs.model_id, pairs.class_set.name, pairs.key)


def get_pair_embeddings(store, key: str) -> PairEmbeddings | None:
    raw = store.get_bytes(RECORD_KIND, key)
    return None if raw is None else PairEmbeddings.from_bytes(raw)


def set_active_pair_embeddings(store, model_id: str, class_set: str, key: str | None) -> None:
    """Make ``key`` the pairs the class set re-ranks with (``None``: no re-rank)."""
    store.set_pointer(ACTIVE_KIND, model_id, class_set, key)


def get_active_pair_embeddings(store, model_id: str, class_set: str,
                               loaded: PairEmbeddings | None = None) -> PairEmbeddings | None:
    """The pair embeddings a class set re-ranks with under a model, if it has any; ``loaded`` is
    returned as it is while the pointer still names it (a refresh reads the pointer, not the rows)."""
    key = store.get_pointer(ACTIVE_KIND, model_id, class_set, lambda: PairEmbeddingsDamagedError(
        f"the active-pairs pointer of class set {class_set} is damaged"))
    if key is None:
        return None
    return loaded if loaded is not None and loaded.key == key else get_pair_embeddings(store, key)
