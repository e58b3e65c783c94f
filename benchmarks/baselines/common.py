"""What the comparison servers share: the ImageNet-1k class names, a free-standing uvicorn entry
point, and the response shape (top-5 labels with scores per image)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RANDOM_SEED = 0
TOP_K = 5


def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names, in class-index order (the same set vgloss serves)."""
    from gloss_gen.classsets import builtin_class_set

    return builtin_class_set("imagenet1k").names


def server_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser


def serve(app, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
