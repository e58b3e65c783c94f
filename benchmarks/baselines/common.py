"""What the comparison servers share: the ImageNet-1k class names, a free-standing uvicorn entry
point, and the app itself (``/healthz``, and ``/classify`` answering top-5 labels with scores per
image); each server brings only its way of ranking one image."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RANDOM_SEED = 0
TOP_K = 5


def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names, in class-index order (the same set vgloss serves)."""
    from gloss_gen.data.classsets import builtin_class_set

    return builtin_class_set("imagenet1k").names


def server_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser


def serve(app, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def classify_app(rank: Callable[[Image.Image], list[dict]]) -> FastAPI:
    """``/classify`` runs ``rank(image)`` (the top labels with scores) for each uploaded image, one
    request at a time per thread: a plain ``def`` endpoint on FastAPI's thread pool."""
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/classify")
    def classify(images: Annotated[list[UploadFile], File()]) -> dict:
        results = []
        for upload in images:
            image = Image.open(io.BytesIO(upload.file.read())).convert("RGB")
            with torch.no_grad():
                results.append(rank(image))
        return {"results": results}

    return app
