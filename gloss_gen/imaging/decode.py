"""Untrusted image bytes -> RGB PIL images, within limits.

Pure decoding code: no HTTP here. Failures raise :class:`ImageError`, an
:class:`~gloss_gen.core.errors.InputError` whose ``code`` names the reason (``app/error_envelope.py`` maps codes
to HTTP statuses) and whose ``message`` is safe to show a client.

Decoding pipeline (:func:`decode_image`):

1. byte limits (:func:`check_image_bytes`: empty -> ``empty_image``, over ``max_bytes`` ->
   ``image_too_large``), checked before PIL sees the data;
2. lazy ``Image.open`` restricted to ``limits.formats``: only the header is parsed; a format PIL
   knows but the limits do not allow is ``unsupported_image``, anything else ``invalid_image``;
3. pixel limit from the header size (``image_too_many_pixels``) and aspect ratio
   (``image_aspect_ratio_too_large``) before any pixel is decoded; for JPEG, the scan count
   (``image_too_many_scans``) from a linear pass over the markers;
4. optional JPEG draft (DCT-domain downscaling), never below the size the resize step needs;
5. full decode of the first frame only; truncated or corrupt data is ``invalid_image``
   (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left off and no global PIL state is changed);
6. EXIF orientation applied;
7. conversion to RGB (:func:`to_rgb`): transparency is composited on white, 16-bit, 32-bit and
   float greyscale are scaled to 8 bits rather than clipped. Embedded ICC profiles are ignored,
   as in open_clip's own ``convert("RGB")``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gloss_gen.core.errors import InputError
from gloss_gen.imaging.jpeg_scans import count_jpeg_scans

DEFAULT_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})
"""PIL format names accepted by default (JPEG includes MPO, PNG includes APNG)."""

_WHITE = (255, 255, 255)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WIDE_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})


class ImageError(InputError):
    """A rejected image, with a ``code`` per reason and a client-safe ``message``.

    Codes: ``empty_image``, ``invalid_image``, ``invalid_base64``, ``image_too_large``,
    ``image_too_many_pixels``, ``image_aspect_ratio_too_large``, ``image_too_many_scans`` (a JPEG
    with more scans than ``max_jpeg_scans``), ``unsupported_image`` (a format PIL recognises but the
    limits do not allow, or a colour mode that cannot be converted to RGB).
    """

    code = "invalid_image"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


MAX_ASPECT_RATIO = 32
"""Longest side over shortest side; beyond it the resize (shortest side to the model's input)
would allocate far more than the output tensor (red-team issue #9, item 5)."""


DEFAULT_MAX_JPEG_SCANS = 100
"""Scans per JPEG (see :mod:`.jpeg_scans`): progressive encoders write about 10; decode time grows
with the count (100,000 scans: over 20 s)."""


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits. ``max_pixels`` is width x height as declared in the file header."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    jpeg_draft: bool = True
    formats: frozenset[str] = field(default=DEFAULT_FORMATS)
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS

    @classmethod
    def from_settings(cls, settings: Any) -> ImageLimits:
        """The limits configured by ``VGLOSS_MAX_IMAGE_BYTES``, ``VGLOSS_MAX_IMAGE_PIXELS``,
        ``VGLOSS_JPEG_DRAFT`` and ``VGLOSS_MAX_JPEG_SCANS``.

        ``settings`` is a :class:`gloss_gen.core.config.Settings`, or anything with its
        ``max_image_bytes``, ``max_image_pixels`` and ``jpeg_draft`` attributes (an eval config;
        without ``max_jpeg_scans`` it gets the default scan limit).
        """
        return cls(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            jpeg_draft=settings.jpeg_draft,
            max_jpeg_scans=getattr(settings, "max_jpeg_scans", DEFAULT_MAX_JPEG_SCANS),
        )


def check_image_bytes(size: int, max_bytes: int, *, estimated: bool = False) -> None:
    """Raise ``image_too_large`` if an image of ``size`` bytes is over ``max_bytes``.

    The one byte-limit check: :func:`decode_image` runs it on the bytes, the server on a
    multipart part's declared size and on the decoded size of base64 text (``estimated``) before
    reading or decoding the data.
    """
    if size > max_bytes:
        about = "about " if estimated else ""
        raise ImageError("image_too_large", f"The image is {about}{size} bytes, over the limit of {max_bytes} bytes.")


def _empty() -> ImageError:
    return ImageError("empty_image", "The image is empty.")


def _invalid() -> ImageError:
    return ImageError("invalid_image", "The file could not be decoded as an image.")


def _too_many_pixels(pixels: int | None, limit: int) -> ImageError:
    what = f"has {pixels} pixels" if pixels is not None else "has too many pixels"
    return ImageError("image_too_many_pixels", f"The image {what}, over the limit of {limit} pixels.")


def _unsupported_format(fmt: str) -> ImageError:
    return ImageError("unsupported_image", f"{fmt} images are not supported.")


def _unsupported_mode(mode: str) -> ImageError:
    return ImageError("unsupported_image", f"Images in colour mode {mode} are not supported.")


def _known_format(prefix: bytes) -> str | None:
    """Name of a PIL format whose magic bytes match ``prefix``; only the cheap ``accept`` checks run."""
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        with contextlib.suppress(Exception):
            if accept is not None and accept(prefix):
                return name
    return None


def _open_lazy(data: bytes | bytearray | memoryview, limits: ImageLimits) -> Image.Image:
    size = memoryview(data).nbytes
    if size == 0:
        raise _empty()
    check_image_bytes(size, limits.max_bytes)
    try:
        img = Image.open(io.BytesIO(data), formats=sorted(limits.formats))
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(None, limits.max_pixels) from exc
    except UnidentifiedImageError as exc:
        fmt = _known_format(bytes(memoryview(data)[:16]))
        if fmt is not None and fmt not in limits.formats:
            raise _unsupported_format(fmt) from exc
        raise _invalid() from exc
    except Exception as exc:
        raise _invalid() from exc
    width, height = img.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(width * height, limits.max_pixels)
    if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
        # a resize to the short side would make it enormous (1x65500 -> 224x14,672,000)
        raise ImageError(
            "image_aspect_ratio_too_large",
            f"The image is {width}x{height}; the longer side may be at most {MAX_ASPECT_RATIO} times the shorter.",
        )
    if img.format in _JPEG_FORMATS:
        scans = count_jpeg_scans(data, stop_after=limits.max_jpeg_scans)
        if scans > limits.max_jpeg_scans:
            raise ImageError(
                "image_too_many_scans",
                f"The JPEG has over {limits.max_jpeg_scans} scans, the limit (each scan is decoded over the whole image).",
            )
    return img


def decode_image(
    data: bytes | bytearray | memoryview,
    limits: ImageLimits = ImageLimits(),
    *,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Untrusted bytes -> RGB PIL image (first frame, EXIF orientation applied), or :class:`ImageError`.

    ``draft_size`` (width, height), used only for JPEG when ``limits.jpeg_draft`` is on, lets
    libjpeg decode at 1/2, 1/4 or 1/8 scale as long as both sides stay at least that large.
    """
    img = _open_lazy(data, limits)
    try:
        if draft_size is not None and limits.jpeg_draft and img.format in _JPEG_FORMATS:
            img.draft("RGB", draft_size)
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(None, limits.max_pixels) from exc
    except Exception as exc:
        raise _invalid() from exc
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(img, in_place=True)
    try:
        return to_rgb(img)
    except (ValueError, OSError) as exc:
        raise _unsupported_mode(img.mode) from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    * Alpha (RGBA, LA, PA, premultiplied modes) and palette or colour-key transparency are
      composited on white: a transparent pixel becomes white, an opaque one keeps its colour.
    * 16-bit greyscale (``I;16*``) is scaled, 65535 -> 255 (rounded), not clipped.
    * ``I`` (32-bit int): used as is when within 0..255, scaled as 16-bit when within 0..65535,
      otherwise stretched linearly from its min..max to 0..255 (a constant image: 0 if <= 0,
      else 255).
    * ``F`` (float): scaled by 255 when within 0..1, used as is when within 0..255, otherwise
      stretched from min..max; NaN becomes 0.
    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: PIL's own conversion
      (CMYK naively, without ICC profiles, as open_clip's ``convert("RGB")`` does).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _WIDE_GREY_MODES:
        return Image.fromarray(_wide_grey_to_uint8(np.asarray(img), mode)).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _wide_grey_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    if mode.startswith("I;16"):
        return _scale_16bit(arr)
    if mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(arr * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.rint(arr).astype(np.uint8)
        return _stretch(arr, lo, hi)
    arr = arr.astype(np.int64)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return _scale_16bit(arr)
    return _stretch(arr.astype(np.float64), float(lo), float(hi))


def _scale_16bit(arr: np.ndarray) -> np.ndarray:
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _stretch(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.full(arr.shape, 255 if lo > 0 else 0, dtype=np.uint8)
    return np.rint((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


