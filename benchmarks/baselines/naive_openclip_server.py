"""Baseline (b): the endpoint one writes first — open_clip called per request, the class names'
text re-encoded on every call.

    python benchmarks/baselines/naive_openclip_server.py --port 8101 [--cached-text]

Same architecture and weights as the vgloss server under benchmark (ViT-B-32, deterministic random
init). Each request: decode with PIL, open_clip's transform, ``encode_image`` for that one image,
then ``encode_text`` of the 1000 ImageNet class names with ONE template ("a photo of a {}.") —
with open_clip's 80 templates a request would take minutes on a CPU. A plain ``def`` endpoint, so
FastAPI runs concurrent requests on its thread pool, each calling the model on its own.

``--classifier-from DATA_DIR`` instead scores against the imagenet1k classifier vgloss stored under
DATA_DIR (no text work per request at all): the same model and classifier as the vgloss server,
minus its batching and its decoding pool - a stronger baseline that separates what batching buys
from what caching text buys.
"""

from __future__ import annotations

import torch
from common import TOP_K, classify_app, imagenet_names, serve, server_arguments
from fastapi import FastAPI

from gloss_gen.model.clip_models import load_clip

TEMPLATE = "a photo of a {}."


def stored_prototypes(data_dir: str, model_id: str) -> torch.Tensor:
    from gloss_gen.core.config import Settings
    from gloss_gen.data.store import open_store

    classifier = open_store(Settings(_env_file=None, data_dir=data_dir, redis_url=None)).get_active_classifier(
        model_id, "imagenet1k"
    )
    if classifier is None:
        raise SystemExit(f"no imagenet1k classifier for {model_id} under {data_dir}")
    return torch.from_numpy(classifier.prototypes)


def build_app(classifier_from: str | None) -> FastAPI:
    clip = load_clip("ViT-B-32", "none", device="cpu", precision="fp32")
    names = imagenet_names()
    prompts = [TEMPLATE.format(name) for name in names]

    def text_features() -> torch.Tensor:
        with torch.no_grad():
            return clip.model.encode_text(clip.tokenizer(prompts), normalize=True)

    cached = stored_prototypes(classifier_from, clip.id) if classifier_from else None

    def rank(image) -> list[dict]:
        image_features = clip.model.encode_image(clip.preprocess(image).unsqueeze(0), normalize=True)
        text = cached if cached is not None else text_features()
        probs = (clip.logit_scale * image_features @ text.T).softmax(dim=-1)[0]
        top = probs.topk(TOP_K)
        return [{"label": names[i], "score": float(p)} for p, i in zip(top.values.tolist(), top.indices.tolist())]

    return classify_app(rank)


if __name__ == "__main__":
    parser = server_arguments(__doc__.splitlines()[0])
    parser.add_argument("--classifier-from", metavar="DATA_DIR", help="score against vgloss's stored classifier")
    args = parser.parse_args()
    serve(build_app(args.classifier_from), args.host, args.port)
