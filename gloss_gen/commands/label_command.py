from __future__ import annotations

import argparse
import json

from gloss_gen.commands.verb_support import (
    UserError,
    add_model_arguments,
    add_open_set_arguments,
    check_class_set_args,
    check_model_setup,
    check_open_set_args,
    classifier_from_args,
    load_model,
    open_checked_store,
    open_set_scorer_from_args,
    settings_from_args,
)

HELP = "label a folder, tar shards or a list of paths into Parquet (resumable, local or on Ray)"
DESCRIPTION = """\
Label every image a SOURCE names with the model and the classifier `vgloss classify` would use
(same decoding, preprocessing, scoring and adapter), into DIR/part-NNNNN.parquet, one part per
shard of --shard-size images, plus DIR/_manifest.json. A SOURCE is a folder (searched recursively
for image files), tar shards (shards.tar, shards-{000..009}.tar, WebDataset layout) or a
.txt/.csv/.parquet list of paths (a `path` column; relative to the list's folder).

Columns: path, archive (the tar of a member), class_id, label, score, similarity, top_k (list of
{class_id, label, score}), error (null, or {code, message} for a file that could not be read
or decoded), embedding with --embeddings, and ood_score / unknown with --open-set (see
docs/open-set.md). Read DIR with pyarrow.dataset or pandas, or
DIR/part-*.parquet with polars, DuckDB or datasets.

Running the same command again skips the parts already written (a kill loses only the shards in
flight); a run with another class set, model, top-k, embeddings or open-set setting into the
same DIR is refused.
--engine ray runs the shards on a Ray cluster (--ray-address or RAY_ADDRESS, else a local Ray):
pip install 'vgloss[ray]'; every node needs vgloss and the same paths to SOURCE and DIR.

Examples:
  vgloss label photos/ --class-set imagenet1k --out labels/
  vgloss label 'shards-{000..099}.tar' --labels cat dog bird --out labels/ --embeddings
  vgloss label paths.csv --class-set cifar10 --out labels/ --engine ray --ray-address auto
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", metavar="SOURCE", nargs="+",
                        help="a folder, .tar shards (globs and {000..009} patterns) or a .txt/.csv/.parquet list of paths")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; re-runs resume in it)")
    parser.add_argument("--class-set", help="class set name or file (default: VGLOSS_DEFAULT_CLASS_SET)")
    parser.add_argument("--labels", nargs="+", help="ad-hoc labels instead of a class set")
    parser.add_argument("--top-k", type=int, default=5, help="predictions kept per image (1-100, default 5)")
    parser.add_argument("--embeddings", action="store_true", help="store each image's embedding too")
    parser.add_argument("--embedding-dtype", choices=["float16", "float32"], default="float16",
                        help="type of the stored embedding (default float16)")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per part file (default 1000)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: VGLOSS_MAX_BATCH)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="where to run (default local)")
    parser.add_argument("--ray-address", help="Ray cluster to attach to (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    add_open_set_arguments(parser)
    add_model_arguments(parser)


def options_from_args(args: argparse.Namespace):
    from gloss_gen.labelling.label_options import LabelOptions

    return LabelOptions(
        top_k=args.top_k,
        embedding_dtype=args.embedding_dtype if args.embeddings else None,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )


def check_inputs(args: argparse.Namespace, settings, store) -> None:
    """Everything that can be wrong with the command line, found before the model loads."""
    from pathlib import Path

    from gloss_gen.labelling.label_options import require_ray
    from gloss_gen.labelling.sources import expand_source

    options_from_args(args).check()
    check_open_set_args(args, settings)
    if args.ray_address and args.engine != "ray":
        raise UserError("--ray-address needs --engine ray")
    for pattern in args.sources:
        for named in expand_source(pattern):
            if not Path(named).expanduser().exists():
                raise UserError(f"{named}: no such file or folder")
    if args.engine == "ray":
        require_ray()
    check_class_set_args(args, settings, store)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    store = open_checked_store(settings)
    check_inputs(args, settings, store)  # everything above imports no torch: mistakes are found at once
    check_model_setup(settings)

    from gloss_gen.labelling.label_job import run_label_job

    model = load_model(settings)
    classifier, adapter = classifier_from_args(args, settings, store, model)
    from gloss_gen.classify.scoring import ScoringHead

    scorer = open_set_scorer_from_args(args, settings, store, model, ScoringHead(classifier, model.device, adapter))
    summary = run_label_job(args.sources, args.out, model=model, classifier=classifier, settings=settings,
                            options=options_from_args(args), adapter=adapter, engine=args.engine,
                            ray_address=args.ray_address, open_set=scorer)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.line())
    return 0
