"""Baseline (a): the Hugging Face ``zero-shot-image-classification`` pipeline behind FastAPI.

    python benchmarks/baselines/hf_pipeline_server.py --port 8102

No hub download is possible here, so everything is built locally: a ``CLIPModel`` from a
``CLIPConfig`` that mirrors ViT-B/32 (vision: 12 layers, width 768, patch 32, 224 px; text: 12
layers, width 512, 77 tokens; projection 512) with random weights; a ``CLIPTokenizer`` from
vocab/merges files written from open_clip's own BPE vocabulary (same token ids); and a
``CLIPImageProcessor`` with its defaults (CLIP's resize 224, centre crop, OpenAI mean/std).

Each request calls the pipeline with the 1000 ImageNet class names as ``candidate_labels``, as
the pipeline's API requires: it tokenizes and encodes all 1000 label prompts (its default
template, "This is a photo of {}.") for every image.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import torch
from common import RANDOM_SEED, TOP_K, classify_app, imagenet_names, serve, server_arguments
from fastapi import FastAPI


def vit_b_32_config():
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={
            "hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
            "max_position_embeddings": 77, "vocab_size": 49408,
        },
        vision_config={
            "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
            "image_size": 224, "patch_size": 32,
        },
        projection_dim=512,
    )


def local_tokenizer(directory: Path):
    """A CLIPTokenizer over open_clip's BPE vocabulary (HF names its special tokens differently)."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe
    from transformers import CLIPTokenizer

    vocab = dict(SimpleTokenizer().encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    with gzip.open(default_bpe()) as bpe:
        merges = bpe.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))


def build_app() -> FastAPI:
    from transformers import CLIPImageProcessor, CLIPModel, pipeline

    torch.manual_seed(RANDOM_SEED)
    model = CLIPModel(vit_b_32_config()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = local_tokenizer(Path(tmp))
    classifier = pipeline(
        "zero-shot-image-classification",
        model=model,
        tokenizer=tokenizer,
        image_processor=CLIPImageProcessor(),
        device=-1,
    )
    names = imagenet_names()

    def rank(image) -> list[dict]:
        ranked = classifier(image, candidate_labels=names)
        return [{"label": r["label"], "score": float(r["score"])} for r in ranked[:TOP_K]]

    return classify_app(rank)


if __name__ == "__main__":
    args = server_arguments(__doc__.splitlines()[0]).parse_args()
    serve(build_app(), args.host, args.port)
