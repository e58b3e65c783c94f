"""RGB PIL images -> model-ready tensors, exactly as open_clip's validation transform makes them.

:class:`Preprocessor` reproduces open_clip's validation transform (resize, centre crop or pad,
to-tensor, normalise): the same PIL resize and crop calls (bit-identical pixels) and one fused
uint8 -> normalised float32 numpy step instead of ``ToTensor`` + ``Normalize``.
:func:`load_tensor` is the whole path from untrusted bytes: :func:`~.decode.decode_image` with
limits (and a JPEG draft sized for the resize), then the preprocessor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from gloss_gen.imaging.decode import ImageLimits, decode_image, to_rgb

DRAFT_MARGIN = 2.0
"""JPEG draft keeps both sides >= this x the resize target: libjpeg's DCT downscaling then only
does the coarse part and PIL's bicubic (antialiased) resize still shrinks by >= 2x. Measured on
3000x2000 JPEGs at 224 px: margin 2 -> 4.2x faster than no draft, mean |diff| 0.0024 (max 0.024);
margin 1 -> 5.5x faster, mean 0.011 (max 0.16), in un-normalised [0, 1] units."""

ResizeKind = Literal["shortest", "keep_ratio", "exact"]


@dataclass(frozen=True)
class _Resize:
    kind: ResizeKind
    size: tuple[int, int]
    resample: Image.Resampling
    longest: float = 0.0


@dataclass(frozen=True)
class _Crop:
    size: tuple[int, int]
    fill: int = 0


class Preprocessor:
    """RGB PIL image -> normalised float32 CHW tensor, identical to open_clip's validation transform.

    Build it with :meth:`from_open_clip` (from a model, its ``preprocess_cfg``, a
    ``PreprocessCfg`` or open_clip's transform). The transform open_clip would build is parsed
    into resize / crop / normalise steps, run with the same PIL calls and a numpy normalisation;
    a transform that cannot be parsed is wrapped and run as is (still correct, but with no JPEG
    draft, and ``mean`` / ``std`` are None).

    ``image_size`` is the output (height, width); ``draft_size`` is what :func:`load_tensor`
    passes to :func:`decode_image`.
    """

    def __init__(
        self,
        *,
        image_size: tuple[int, int],
        mean: tuple[float, float, float] | None,
        std: tuple[float, float, float] | None,
        resize: _Resize | None,
        crop: _Crop | None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        draft_margin: float = DRAFT_MARGIN,
    ) -> None:
        if draft_margin < 1.0:
            raise ValueError("draft_margin must be at least 1")
        self.image_size = image_size
        self.draft_margin = draft_margin
        self.mean = mean
        self.std = std
        self._resize = resize
        self._crop = crop
        self._transform = transform
        std64 = np.asarray(std or (1.0, 1.0, 1.0), dtype=np.float64).reshape(3, 1, 1)
        mean64 = np.asarray(mean or (0.0, 0.0, 0.0), dtype=np.float64).reshape(3, 1, 1)
        self._scale = (1.0 / (255.0 * std64)).astype(np.float32)
        self._bias = (-mean64 / std64).astype(np.float32)

    @classmethod
    def from_open_clip(
        cls, source: Any, *, draft_margin: float = DRAFT_MARGIN, **overrides: Any
    ) -> Preprocessor:
        """Build from an open_clip model, a preprocess-cfg dict, a ``PreprocessCfg`` or a transform.

        ``overrides`` (``size``, ``mean``, ``std``, ``interpolation``, ``resize_mode``,
        ``fill_color``) are merged over a config, as ``open_clip.create_model_and_transforms``
        does with its ``image_*`` arguments. Config sources go through open_clip's own
        ``image_transform_v2``, so the result follows open_clip's rules exactly.
        """
        from open_clip.transform import (
            PreprocessCfg,
            image_transform_v2,
            merge_preprocess_dict,
        )

        if isinstance(source, torch.nn.Module):
            import open_clip

            source = open_clip.get_model_preprocess_cfg(source)
        if isinstance(source, PreprocessCfg) or is_dataclass(source):
            source = asdict(source)
        if isinstance(source, Mapping):
            cfg = PreprocessCfg(**merge_preprocess_dict(dict(source), overrides))
            transform = image_transform_v2(cfg, is_train=False)
            return cls.from_transform(transform, draft_margin=draft_margin)
        if overrides:
            raise TypeError("overrides apply to a preprocess config, not to a transform")
        if callable(source):
            return cls.from_transform(source, draft_margin=draft_margin)
        raise TypeError(f"cannot build a Preprocessor from {type(source).__name__}")

    @classmethod
    def from_transform(
        cls,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        draft_margin: float = DRAFT_MARGIN,
    ) -> Preprocessor:
        """Parse an open_clip / torchvision validation ``Compose``; wrap it if it cannot be parsed."""
        parsed = _parse_transform(transform)
        if parsed is None:
            size = _probe_output_size(transform)
            return cls(
                image_size=size,
                mean=None,
                std=None,
                resize=None,
                crop=None,
                transform=transform,
            )
        return cls(**parsed, draft_margin=draft_margin)

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """Smallest (width, height) a JPEG may be draft-decoded to: ``draft_margin`` x the resize target.

        Square, so that it holds whatever the EXIF orientation does to the image afterwards.
        """
        if self._transform is not None or self._resize is None:
            return None
        side = math.ceil(max(self._resize.size) * self.draft_margin)
        return side, side

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = to_rgb(image)
        if self._transform is not None:
            return self._transform(image)
        return self.to_tensor(self.geometry(image))

    def geometry(self, image: Image.Image) -> Image.Image:
        """Resize and centre crop / pad an RGB image exactly as the open_clip transform does.

        The same PIL calls as torchvision's PIL path, so the pixels are bit-identical. (Resizing
        only the cropped region with ``resize(box=...)`` is faster but not bit-exact: PIL's box
        is single precision and Pillow >= 13 may run the two passes in another order; measured
        up to 2/255 off, so it is not used.)
        """
        width, height = image.size
        new_w, new_h = self._resized_size(width, height)
        if (new_w, new_h) != (width, height):
            assert self._resize is not None
            image = image.resize((new_w, new_h), self._resize.resample)
        if self._crop is None:
            return image
        crop_h, crop_w = self._crop.size
        if new_w >= crop_w and new_h >= crop_h:
            left = round((new_w - crop_w) / 2.0)
            top = round((new_h - crop_h) / 2.0)
            if (left, top, crop_w, crop_h) == (0, 0, new_w, new_h):
                return image
            return image.crop((left, top, left + crop_w, top + crop_h))
        canvas = Image.new("RGB", (crop_w, crop_h), (self._crop.fill,) * 3)
        off_x = (crop_w - new_w) // 2 if crop_w > new_w else -round((new_w - crop_w) / 2.0)
        off_y = (crop_h - new_h) // 2 if crop_h > new_h else -round((new_h - crop_h) / 2.0)
        canvas.paste(image, (off_x, off_y))
        return canvas

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """Uint8 RGB image -> normalised float32 (3, H, W) tensor: ``(x / 255 - mean) / std``.

        Done in numpy on purpose: torch would split these small element-wise ops across its
        intra-op threads, which on a busy CPU (the model running beside the decoder threads)
        measured over 50x slower than single-threaded numpy.
        """
        pixels = np.asarray(image).transpose(2, 0, 1)
        out = np.empty(pixels.shape, dtype=np.float32)
        np.multiply(pixels, self._scale, out=out)
        np.add(out, self._bias, out=out)
        return torch.from_numpy(out)

    def _resized_size(self, width: int, height: int) -> tuple[int, int]:
        step = self._resize
        if step is None:
            return width, height
        if step.kind == "shortest":
            requested = step.size[0]
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = requested, int(requested * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        elif step.kind == "keep_ratio":
            target_h, target_w = step.size
            ratio_h, ratio_w = height / target_h, width / target_w
            ratio = max(ratio_h, ratio_w) * step.longest + min(ratio_h, ratio_w) * (1.0 - step.longest)
            new_h, new_w = round(height / ratio), round(width / ratio)
        else:
            new_h, new_w = step.size
        return max(1, new_w), max(1, new_h)

    def __repr__(self) -> str:
        if self._transform is not None:
            return f"Preprocessor(wrapped={self._transform!r})"
        return (
            f"Preprocessor(image_size={self.image_size}, resize={self._resize}, crop={self._crop}, "
            f"mean={self.mean}, std={self.std})"
        )


def _as_hw(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _parse_transform(transform: Any) -> dict[str, Any] | None:
    """Map a validation ``Compose`` onto resize / crop / normalise steps, or None if it is anything else."""
    from open_clip.transform import (
        CenterCropOrPad,
        MaybeConvertMode,
        MaybeToTensor,
        ResizeKeepRatio,
    )
    from torchvision import transforms as T
    from torchvision.transforms.functional import InterpolationMode, pil_modes_mapping

    steps = getattr(transform, "transforms", None)
    if not isinstance(steps, list):
        return None

    def resample(mode: Any) -> Image.Resampling | None:
        if isinstance(mode, InterpolationMode) and mode in pil_modes_mapping:
            return Image.Resampling(pil_modes_mapping[mode])
        return None

    resize: _Resize | None = None
    crop: _Crop | None = None
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    stage = 0
    for step in steps:
        if isinstance(step, T.Resize) and stage == 0:
            filt = resample(step.interpolation)
            if filt is None or step.max_size is not None:
                return None
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            if len(size) == 1:
                resize = _Resize("shortest", (size[0], size[0]), filt)
            elif len(size) == 2:
                resize = _Resize("exact", (size[0], size[1]), filt)
            else:
                return None
            stage = 1
        elif isinstance(step, ResizeKeepRatio) and stage == 0:
            filt = resample(step.interpolation)
            if filt is None or step.random_scale_prob > 0 or step.random_aspect_prob > 0:
                return None
            resize = _Resize("keep_ratio", _as_hw(step.size), filt, float(step.longest))
            stage = 1
        elif isinstance(step, CenterCropOrPad) and stage <= 1:
            crop = _Crop(_as_hw(step.size), int(step.fill))
            stage = 2
        elif isinstance(step, T.CenterCrop) and stage <= 1:
            crop = _Crop(_as_hw(step.size), 0)
            stage = 2
        elif isinstance(step, MaybeConvertMode) and stage <= 2:
            if step.mode != "RGB":
                return None
        elif getattr(step, "__name__", None) == "_convert_to_rgb" and stage <= 2:
            continue
        elif isinstance(step, (MaybeToTensor, T.ToTensor)) and stage <= 2:
            stage = 3
        elif isinstance(step, T.Normalize) and stage == 3:
            if len(step.mean) != 3 or len(step.std) != 3 or step.inplace:
                return None
            mean = tuple(float(m) for m in step.mean)
            std = tuple(float(s) for s in step.std)
            stage = 4
        else:
            return None
    if stage < 3 or (resize is None and crop is None):
        return None
    if crop is not None:
        image_size = crop.size
    else:
        assert resize is not None
        if resize.kind != "exact":
            return None
        image_size = resize.size
    return {"image_size": image_size, "mean": mean, "std": std, "resize": resize, "crop": crop}


def _probe_output_size(transform: Callable[[Image.Image], torch.Tensor]) -> tuple[int, int]:
    out = transform(Image.new("RGB", (257, 193)))
    return int(out.shape[-2]), int(out.shape[-1])


def load_tensor(
    data: bytes | bytearray | memoryview,
    limits: ImageLimits,
    preprocessor: Preprocessor,
) -> torch.Tensor:
    """Decode and preprocess one upload: bytes -> (3, H, W) float32 tensor, or :class:`ImageError`.

    With ``limits.jpeg_draft`` on, a large JPEG is decoded at 1/2, 1/4 or 1/8 scale, never below
    ``preprocessor.draft_size``, so the resize still only ever shrinks. Thread-safe; meant to run
    in the server's worker threads (PIL releases the GIL while decoding and resizing).
    """
    image = decode_image(data, limits, draft_size=preprocessor.draft_size)
    return preprocessor(image)
