"""The shard function of ``vgloss label``: items -> decoded tensors -> batched forward -> scored
rows -> one Parquet part per shard. The local engine runs it over every pending shard in one
stream; each Ray actor (:mod:`.ray_engine`) runs it over the shards it is given.

Decoding is the server's and ``vgloss classify``'s: :func:`gloss_gen.imaging.load_tensor` with
the configured :class:`~gloss_gen.imaging.ImageLimits` and the model's
:class:`~gloss_gen.imaging.Preprocessor`, in a thread pool that runs ahead of the model
(:func:`gloss_gen.classify.image_embeddings.load_ahead`, the eval runner's). Scoring is
:class:`gloss_gen.classify.scoring.ScoringHead`. A file that cannot be read or decoded is a row
whose ``error`` holds the code and message the server would answer with.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gloss_gen.classify.image_embeddings import load_ahead
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.data.classifier import Classifier
from gloss_gen.imaging import ImageError, ImageLimits, Preprocessor, check_image_bytes, load_tensor
from gloss_gen.labelling.label_options import LabelOptions
from gloss_gen.labelling.shards import Shard, label_schema, write_part
from gloss_gen.labelling.sources import SourceItem
from gloss_gen.model.clip_models import ClipModel


@dataclass
class ShardOutcome:
    """One part written: its shard, its rows, and the error codes among them."""

    shard: Shard
    path: Path
    rows: int
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Row:
    item: SourceItem
    predictions: list | None = None
    decision: object | None = None  # the open-set verdict (OpenSetDecision), with open-set scoring
    embedding: np.ndarray | None = None
    error: tuple[str, str] | None = None


def read_error(exc: OSError) -> tuple[str, str]:
    """(code, message) for a file the OS would not give us."""
    if isinstance(exc, FileNotFoundError):
        return "file_not_found", "No such file."
    if isinstance(exc, IsADirectoryError):
        return "unreadable_file", "A folder, not a file."
    return "unreadable_file", exc.strerror or str(exc)


class ShardLabeller:
    """A model, a scoring head and the decoding limits: labels shards into Parquet parts."""

    def __init__(self, model: ClipModel, classifier: Classifier, limits: ImageLimits, options: LabelOptions,
                 adapter=None, *, batch_size: int, decode_threads: int = 0, open_set=None) -> None:
        self.model = model
        self.head = ScoringHead(classifier, model.device, adapter)
        self.open_set = open_set  # an OpenSetScorer with its threshold, or None
        self.limits = limits
        self.options = options
        self.batch_size = batch_size
        self.decode_threads = decode_threads or max(1, os.cpu_count() or 1)
        self.preprocessor = Preprocessor.from_open_clip(model.model)
        self.schema = label_schema(options.embedding_dtype, open_set is not None)

    def load(self, item: SourceItem):
        """The item's tensor, or (code, message) saying why it has none."""
        try:
            check_image_bytes(item.byte_size(), self.limits.max_bytes)  # before reading a huge file
            return load_tensor(item.read_bytes(), self.limits, self.preprocessor)
        except ImageError as exc:
            return exc.code, exc.message
        except OSError as exc:
            return read_error(exc)

    def label_shards(self, shards: Sequence[Shard], out: Path,
                     on_images: Callable[[int], None] = lambda count: None) -> Iterable[ShardOutcome]:
        """Label ``shards`` in order as one stream (the decode pool never drains at a shard's end),
        writing each part as soon as its last row is scored; ``on_images(n)`` after every batch."""
        import torch

        items = [(number, item) for number, shard in enumerate(shards) for item in shard.items]
        rows = [[_Row(item) for item in shard.items] for shard in shards]
        height, width = self.preprocessor.image_size
        batch = torch.empty((self.batch_size, 3, height, width), dtype=torch.float32)
        waiting: list[_Row] = []  # the row of each tensor in `batch`
        loaded = [0] * len(shards)

        def score_batch() -> None:
            embeddings = self.model.encode_images(batch[: len(waiting)])
            scored = self.head.score(embeddings, top_k=self.options.top_k, open_set=self.open_set)
            vectors = embeddings.numpy() if self.options.embedding_dtype else None
            for slot, row in enumerate(waiting):
                row.predictions = scored[slot].predictions
                row.decision = scored[slot].open_set
                if vectors is not None:
                    row.embedding = vectors[slot]
            on_images(len(waiting))
            waiting.clear()

        loads = load_ahead(lambda index: self.load(items[index][1]), len(items), self.decode_threads,
                            window=2 * self.batch_size)
        for index, outcome in loads:
            number = items[index][0]
            row = rows[number][loaded[number]]
            loaded[number] += 1
            if isinstance(outcome, tuple):
                row.error = outcome
                on_images(1)
            else:
                batch[len(waiting)].copy_(outcome)
                waiting.append(row)
            # A batch never spans two shards, so a part is written as soon as its last image is
            # loaded (a kill then loses only the shard in flight), and a shard labels alike
            # whichever shards run beside it, locally or on a Ray actor.
            shard_done = loaded[number] == len(shards[number].items)
            if len(waiting) == self.batch_size or (shard_done and waiting):
                score_batch()
            if shard_done:
                table = self.table(rows[number])
                errors: dict[str, int] = {}
                for done_row in rows[number]:
                    if done_row.error is not None:
                        errors[done_row.error[0]] = errors.get(done_row.error[0], 0) + 1
                rows[number] = []  # free the shard's rows
                shard = shards[number]
                yield ShardOutcome(shard, write_part(out, shard, table), len(shard.items), errors)

    def table(self, rows: Sequence[_Row]):
        """The Parquet table of one shard's rows, in :func:`label_schema`'s columns."""
        import pyarrow as pa

        columns: dict[str, list] = {name: [] for name in self.schema.names if name != "embedding"}
        for row in rows:
            columns["path"].append(row.item.path)
            columns["archive"].append(row.item.archive)
            best = row.predictions[0] if row.predictions else None
            columns["class_id"].append(best.class_id if best else None)
            columns["label"].append(best.label if best else None)
            columns["score"].append(best.score if best else None)
            columns["similarity"].append(best.similarity if best else None)
            columns["top_k"].append(
                [{"class_id": p.class_id, "label": p.label, "score": p.score} for p in row.predictions]
                if row.predictions else None
            )
            columns["error"].append(None if row.error is None else {"code": row.error[0], "message": row.error[1]})
            if self.open_set is not None:
                columns["ood_score"].append(None if row.decision is None else float(row.decision.ood_score))
                columns["unknown"].append(None if row.decision is None else bool(row.decision.unknown))
        arrays = [pa.array(columns[name], type=self.schema.field(name).type) for name in columns]
        if self.options.embedding_dtype:
            arrays.append(self._embedding_column(rows))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _embedding_column(self, rows: Sequence[_Row]):
        import pyarrow as pa

        dtype = np.float16 if self.options.embedding_dtype == "float16" else np.float32
        width = next((len(row.embedding) for row in rows if row.embedding is not None), 0)
        present = [row.embedding is not None for row in rows]
        values = np.stack([row.embedding for row in rows if row.embedding is not None]).astype(dtype) \
            if any(present) else np.zeros((0, width), dtype=dtype)
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum([width if kept else 0 for kept in present])
        mask = pa.array([not kept for kept in present], type=pa.bool_())
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)), mask=mask,
                                        type=self.schema.field("embedding").type)
