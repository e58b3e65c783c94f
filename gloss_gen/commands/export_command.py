from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export descriptions as a silver dataset (flat JSONL, or a Hugging Face dataset folder)"
DESCRIPTION = """\
Turn a `vgloss describe` file into a silver dataset: one row per (class, description) with
the class id, label, WordNet synset and definition, the method and its provenance.

  --format jsonl   one JSON object per row (default output: <input>.silver.jsonl)
  --format hf      a folder loadable with `datasets.load_dataset(FOLDER)`: data/train.jsonl plus a
                   README.md dataset card declaring the features (default output: <input>-hf/)

Examples:
  vgloss export cifar10.vgloss.jsonl --format jsonl
  vgloss export imagenet1k.vgloss.jsonl --format hf --out imagenet1k-vgloss
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("descriptions", metavar="DESCRIPTIONS", type=Path, help="JSONL from `vgloss describe`")
    parser.add_argument("--format", choices=["jsonl", "hf"], required=True, help="output format")
    parser.add_argument("--out", type=Path, help="output file (jsonl) or folder (hf)")
    parser.add_argument("--include-failed", action="store_true",
                        help="keep a row for each class that has no descriptions (text null)")


def run(args: argparse.Namespace) -> int:
    from gloss_gen.data.silver_dataset import export_hf, export_jsonl

    if args.format == "jsonl":
        out = args.out or args.descriptions.with_suffix(".silver.jsonl")
        rows = export_jsonl(args.descriptions, out, include_failed=args.include_failed)
    else:
        out = args.out or args.descriptions.with_name(args.descriptions.stem + "-hf")
        rows = export_hf(args.descriptions, out, include_failed=args.include_failed)
    print(f"wrote {rows} rows to {out}")
    return 0
