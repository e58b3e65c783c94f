"""What a file is by its first bytes: enough to refuse a README given as an image before any
model loads (the decoder still decides what it can read)."""

from __future__ import annotations

from pathlib import Path

#: The file suffixes a folder of images is read by (eval, examples, vgloss label).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def image_format(head: bytes) -> str | None:
    """The image format the bytes start with (``jpeg``, ``png``, ``webp``...), or ``None``."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((name for signature, name in IMAGE_SIGNATURES if head.startswith(signature)), None)


def looks_like_image(path: Path) -> bool:
    with open(path, "rb") as handle:
        return image_format(handle.read(16)) is not None
