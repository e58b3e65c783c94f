"""``vgloss label --engine ray``: the same shard function on a Ray cluster, through Ray Data.

The pending shards become a dataset (``ray.data.from_items``, one row per shard: its id and
items); ``map_batches`` sends them, one at a time, to a pool of actors, each holding a model
replica and a :class:`~gloss_gen.labelling.shard_labeller.ShardLabeller`, which writes the part
into the output folder itself and returns its row and error counts. Ray restarts an actor whose
node is lost and re-runs its shard; slow nodes get fewer shards (shards go to actors as they have room).

Resources: on a cluster with GPUs, one actor per GPU (``num_gpus=1``); on CPUs only, one actor
per node, reserving all of the node's CPUs but one, with that many torch threads. Actors never
take every CPU slot: Ray Data needs one to run its own tasks (ray-project/ray#44687).

Every node must have vgloss installed (the same version) and see the sources and the output
folder at the same paths (a shared file system).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gloss_gen.classify.adapter_records import AdapterRecord
from gloss_gen.classify.open_set import OpenSetScorer
from gloss_gen.data.classifier import Classifier
from gloss_gen.imaging import ImageLimits
from gloss_gen.labelling.label_options import LabelOptions, require_ray
from gloss_gen.labelling.shard_labeller import ShardLabeller
from gloss_gen.labelling.shards import Shard
from gloss_gen.labelling.sources import SourceItem
from gloss_gen.model.clip_models import get_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayPlacement:
    """How many model replicas and what each one reserves."""

    actors: int
    num_cpus: float
    num_gpus: float
    torch_threads: int
    decode_threads: int


def placement(resources: dict, nodes: Sequence[dict], shards: int, decode_threads: int = 0) -> RayPlacement:
    """Actors for a cluster with ``resources`` (``ray.cluster_resources()``) and alive ``nodes``
    (their ``Resources``), never more than there are ``shards``."""
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 0))
    if gpus > 0:
        per_gpu = max(1, cpus // gpus - 1)
        return RayPlacement(max(1, min(gpus, shards)), 1, 1, per_gpu, decode_threads or per_gpu)
    node_cpus = [int(node.get("CPU", 0)) for node in nodes if int(node.get("CPU", 0)) > 0] or [max(cpus, 1)]
    per_actor = max(1, min(node_cpus) - 1)
    return RayPlacement(max(1, min(len(node_cpus), shards)), per_actor, 0, per_actor, decode_threads or per_actor)


class RayShardActor:
    """One model replica: labels the shards Ray Data hands it and writes their parts."""

    def __init__(self, settings, classifier_bytes: bytes, adapter_bytes: bytes | None, options: LabelOptions,
                 out: str, batch_size: int, torch_threads: int, decode_threads: int, open_set=None) -> None:
        import torch

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        model = get_model(settings)
        classifier = Classifier.from_bytes(classifier_bytes)
        adapter = AdapterRecord.from_bytes(adapter_bytes) if adapter_bytes else None
        self.out = Path(out)
        scorer = None
        if open_set is not None:
            method, threshold, negatives = open_set
            scorer = OpenSetScorer(method, threshold, None if negatives is None else torch.from_numpy(negatives))
        self.labeller = ShardLabeller(model, classifier, ImageLimits.from_settings(settings), options, adapter,
                                      batch_size=batch_size, decode_threads=decode_threads, open_set=scorer)

    def __call__(self, batch: dict) -> dict:
        shards = [Shard(int(number), tuple(SourceItem.from_json(item) for item in json.loads(items)))
                  for number, items in zip(batch["shard"], batch["items"])]
        outcomes = list(self.labeller.label_shards(shards, self.out))
        return {
            "shard": [outcome.shard.id for outcome in outcomes],
            "rows": [outcome.rows for outcome in outcomes],
            "errors": [json.dumps(outcome.errors) for outcome in outcomes],
        }


def _one_block_per_shard(ray, items: list[dict]):
    """A dataset of ``items`` with one block each, so that every shard can go to any actor."""
    try:
        return ray.data.from_items(items, override_num_blocks=len(items))
    except TypeError:  # Ray < 2.10 names it parallelism
        return ray.data.from_items(items, parallelism=len(items))


def connect(address: str | None) -> bool:
    """Attach to the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local Ray; an
    already initialised Ray (a notebook's, a test's) is used as it is. True if this call started it."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, log_to_driver=True,
             logging_level=logging.WARNING, configure_logging=True)
    return True


def run_shards_on_ray(shards: Sequence[Shard], out: Path, *, settings, classifier: Classifier, adapter,
                      options: LabelOptions, batch_size: int, address: str | None = None,
                      open_set=None) -> Iterator[dict]:
    """Label ``shards`` on Ray; yields ``{"shard", "rows", "errors"}`` per part written, as parts finish."""
    ray = require_ray()
    started = connect(address)
    try:
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        where = placement(ray.cluster_resources(), nodes, len(shards), options.decode_threads)
        log.info("ray: %d actors, %s CPUs and %s GPUs each", where.actors, where.num_cpus, where.num_gpus)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # vgloss's own bar counts images
        items = [{"shard": shard.id, "items": json.dumps([item.to_json() for item in shard.items])}
                 for shard in shards]
        # a model replica per actor: ship the classifier as its bytes, load the model on the actor
        dataset = _one_block_per_shard(ray, items).map_batches(
            RayShardActor,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=where.actors),
            num_cpus=where.num_cpus,
            num_gpus=where.num_gpus,
            fn_constructor_kwargs={
                "settings": settings,
                "classifier_bytes": classifier.to_bytes(),
                "adapter_bytes": adapter.to_bytes() if adapter is not None else None,
                # (method, threshold, the negatives as a plain array): rebuilt on the actor
                "open_set": None if open_set is None else (
                    open_set.method, open_set.threshold,
                    None if open_set.negatives is None else open_set.negatives.cpu().numpy()),
                "options": options,
                "out": str(out),
                "batch_size": batch_size,
                "torch_threads": where.torch_threads,
                "decode_threads": where.decode_threads,
            },
        )
        for row in dataset.iter_rows():
            yield {"shard": int(row["shard"]), "rows": int(row["rows"]), "errors": json.loads(row["errors"])}
    finally:
        if started:
            ray.shutdown()

