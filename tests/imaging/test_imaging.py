"""Tests for gloss_gen.imaging: limits, decoding of untrusted bytes, RGB conversion, open_clip parity.

Real images are the ImageNet and CIFAR-10 samples in ../shared/data where they are beside the
checkout, else photographs from scikit-image's samples (and 32x32 thumbnails of them); every other
image is written here with PIL. No network; the one model built is a random-init ViT-B-32.
"""

from __future__ import annotations

import io
import pickle
import resource
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image, ImageFile, ImageOps
from sample_data import cifar_like_files, imagenet_like_files

from app.error_envelope import status_for
from gloss_gen.imaging import (
    DEFAULT_FORMATS,
    ImageError,
    ImageLimits,
    Preprocessor,
    decode_image,
    load_tensor,
    to_rgb,
)

IMAGENET = imagenet_like_files()
CIFAR = cifar_like_files()

DEFAULTS = ImageLimits()
NO_DRAFT = ImageLimits(jpeg_draft=False)
OPENAI_CFG = {
    "size": 224,
    "mean": open_clip.OPENAI_DATASET_MEAN,
    "std": open_clip.OPENAI_DATASET_STD,
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}
PARITY_TOL = 1 / 255 + 1e-6


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def reject(data: bytes, limits: ImageLimits = DEFAULTS) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, limits)
    return info.value


def png_with_header_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is rewritten to declare ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def unnormalise(t: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return t * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)


def max_diff(a: torch.Tensor, b: torch.Tensor, cfg: dict) -> float:
    return float(
        (unnormalise(a, cfg["mean"], cfg["std"]) - unnormalise(b, cfg["mean"], cfg["std"]))
        .abs()
        .max()
    )


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """The torchvision reference transforms crawl with intra-op threads on a busy 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def sample_jpeg() -> bytes:
    return IMAGENET[0].read_bytes()


@pytest.fixture(scope="module")
def preprocessor() -> Preprocessor:
    return Preprocessor.from_open_clip(OPENAI_CFG)


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    img = Image.open(IMAGENET[3]).convert("RGB").resize((3000, 2000), Image.Resampling.BICUBIC)
    return encode(img, "JPEG", quality=90)


# --- errors and limits -------------------------------------------------------------------------


def test_image_error_carries_code_status_and_message() -> None:
    err = ImageError("invalid_image", "The file could not be decoded as an image.")
    assert isinstance(err, Exception)
    assert (err.code, status_for(err), err.message) == (
        "invalid_image",
        400,
        "The file could not be decoded as an image.",
    )
    assert str(err) == err.message
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.code, status_for(copy), copy.message) == (err.code, status_for(err), err.message)


def test_byte_limit_is_checked_before_any_decoding(
    sample_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open called for an over-limit upload")

    monkeypatch.setattr(Image, "open", must_not_open)
    err = reject(sample_jpeg, ImageLimits(max_bytes=len(sample_jpeg) - 1))
    assert (err.code, status_for(err)) == ("image_too_large", 413)
    assert str(len(sample_jpeg)) in err.message


def test_at_byte_limit_is_accepted(sample_jpeg: bytes) -> None:
    assert decode_image(sample_jpeg, ImageLimits(max_bytes=len(sample_jpeg))).mode == "RGB"


@pytest.mark.parametrize("data", [b"", bytearray(), memoryview(b"")])
def test_zero_bytes_is_empty_image(data: bytes) -> None:
    err = reject(data)
    assert (err.code, status_for(err)) == ("empty_image", 400)


@pytest.mark.parametrize(
    "data",
    [
        b"this is not an image, just some text\n",
        b'{"images": ["not base64"]}',
        np.random.default_rng(0).bytes(4096),
        b"\xff\xd8\xff\xe0" + b"\x00" * 64,
        b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
    ],
    ids=["text", "json", "random", "jpeg-magic-then-zeros", "png-magic-then-garbage"],
)
def test_garbage_is_invalid_image(data: bytes) -> None:
    err = reject(data)
    assert (err.code, status_for(err)) == ("invalid_image", 400)
    assert "\n" not in err.message and "/" not in err.message


@pytest.mark.parametrize("path", IMAGENET[:5], ids=lambda p: p.name)
def test_truncated_jpeg_is_invalid_image(path: Path) -> None:
    data = path.read_bytes()
    err = reject(data[: len(data) // 2])
    assert (err.code, status_for(err)) == ("invalid_image", 400)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_invalid_image() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    err = reject(data[: len(data) * 2 // 3])
    assert (err.code, status_for(err)) == ("invalid_image", 400)


def test_global_pil_state_is_untouched(sample_jpeg: bytes) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    decode_image(sample_jpeg, ImageLimits(max_pixels=10**9))
    reject(sample_jpeg[:1000])
    reject(png_with_header_size(30000, 30000))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before
    assert before[1] is False


@pytest.mark.parametrize("side", [30000, 8000], ids=["30000x30000", "8000x8000"])
def test_pixel_limit_refused_from_header_before_decoding(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30000^2 trips PIL's own bomb check inside Image.open; 8000^2 (64 Mpx) passes it and is
    refused by the 40 Mpx limit. Either way no pixel is decoded and memory stays flat."""
    data = png_with_header_size(side, side)
    assert struct.unpack(">II", data[16:24]) == (side, side)

    def must_not_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels decoded for an over-limit image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_load)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    err = reject(data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before

    assert (err.code, status_for(err)) == ("image_too_many_pixels", 413)
    assert elapsed < 1.0
    assert peak < 2 * 1024 * 1024
    assert rss_growth_kib < 100 * 1024


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (20, 10)), "PNG")
    assert decode_image(data, ImageLimits(max_pixels=200)).size == (20, 10)
    err = reject(data, ImageLimits(max_pixels=199))
    assert (err.code, status_for(err)) == ("image_too_many_pixels", 413)
    assert "200 pixels" in err.message and "199" in err.message


def test_known_but_disallowed_format_is_unsupported(sample_jpeg: bytes) -> None:
    ppm = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PPM")
    err = reject(ppm)
    assert (err.code, status_for(err)) == ("unsupported_image", 415)
    assert "PPM" in err.message

    err = reject(sample_jpeg, ImageLimits(formats=frozenset({"PNG"})))
    assert (err.code, status_for(err)) == ("unsupported_image", 415)
    assert "PPM" not in DEFAULT_FORMATS


@pytest.mark.parametrize("fmt", sorted(DEFAULT_FORMATS))
def test_every_default_format_decodes(fmt: str) -> None:
    img = Image.new("RGB", (16, 12), (200, 30, 60))
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    out = decode_image(encode(img, fmt, **params))
    assert (out.mode, out.size) == ("RGB", (16, 12))
    assert np.abs(np.asarray(out, dtype=int) - (200, 30, 60)).max() <= 6


# --- orientation, frames, modes ----------------------------------------------------------------


def half_red_half_blue(width: int = 40, height: int = 20) -> Image.Image:
    img = Image.new("RGB", (width, height), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, width // 2, height))
    return img


def jpeg_with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[2] < 60


@pytest.mark.parametrize(
    ("orientation", "size", "red_at"),
    [
        (1, (40, 20), (5, 10)),
        (3, (40, 20), (35, 10)),
        (6, (20, 40), (10, 5)),
        (8, (20, 40), (10, 35)),
    ],
)
def test_exif_orientation_is_applied(
    orientation: int, size: tuple[int, int], red_at: tuple[int, int]
) -> None:
    """The red half is on the left as stored; 6 turns it clockwise (red on top), 8 counter-clockwise
    (red at the bottom), 3 by 180 degrees (red on the right)."""
    out = decode_image(jpeg_with_orientation(half_red_half_blue(), orientation))
    assert out.size == size
    assert is_red(out.getpixel(red_at))
    mirror = (size[0] - 1 - red_at[0], size[1] - 1 - red_at[1])
    assert not is_red(out.getpixel(mirror))


def test_exif_orientation_with_draft_keeps_enough_pixels(preprocessor: Preprocessor) -> None:
    big = half_red_half_blue(3000, 1000)
    data = jpeg_with_orientation(big, 6)
    draft = preprocessor.draft_size
    assert draft is not None
    out = decode_image(data, ImageLimits(), draft_size=draft)
    assert out.width < out.height
    assert min(out.size) >= draft[0]
    assert min(out.size) < 1000
    assert is_red(out.getpixel((out.width // 2, 5)))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_image_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (24, 24), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    source = Image.open(io.BytesIO(data))
    assert getattr(source, "n_frames", 1) == 2
    out = decode_image(data)
    assert out.mode == "RGB"
    assert is_red(out.getpixel((12, 12)))


def decoded_pixels(img: Image.Image, fmt: str, mode: str) -> np.ndarray:
    data = encode(img, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode, "the file does not exercise this mode"
    out = decode_image(data)
    assert out.mode == "RGB"
    return np.asarray(out, dtype=int)


def test_rgba_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 255), (0, 200, 0, 0), (255, 0, 0, 128)])
    px = decoded_pixels(img, "PNG", "RGBA")[0]
    assert px[0].tolist() == [255, 0, 0]
    assert px[1].tolist() == [255, 255, 255]
    assert np.abs(px[2] - (255, 127, 127)).max() <= 1


def test_la_alpha_is_composited_on_white() -> None:
    img = Image.new("LA", (2, 1))
    img.putdata([(100, 255), (0, 0)])
    px = decoded_pixels(img, "PNG", "LA")[0]
    assert px.tolist() == [[100, 100, 100], [255, 255, 255]]


def palette_image(transparent: bool) -> Image.Image:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
    img.putdata([0, 1, 2])
    if transparent:
        img.info["transparency"] = 1
    return img


def test_palette_without_transparency() -> None:
    px = decoded_pixels(palette_image(False), "PNG", "P")[0]
    assert px.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_white_where_transparent(fmt: str) -> None:
    img = palette_image(True)
    data = encode(img, fmt, transparency=1)
    source = Image.open(io.BytesIO(data))
    assert source.mode == "P" and "transparency" in source.info
    px = np.asarray(decode_image(data), dtype=int)[0]
    assert px.tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk(fmt: str) -> None:
    img = Image.new("CMYK", (2, 1))
    img.putdata([(255, 0, 0, 0), (0, 0, 0, 255)])
    data = encode(img, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    px = np.asarray(decode_image(data), dtype=int)[0]
    assert np.abs(px[0] - (0, 255, 255)).max() <= 3
    assert np.abs(px[1] - (0, 0, 0)).max() <= 3


def test_16bit_grey_is_scaled_not_clipped() -> None:
    img = Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype=np.uint16))
    assert img.mode == "I;16"
    px = decoded_pixels(img, "PNG", "I;16")[0]
    assert px[:, 0].tolist() == [0, 1, 128, 255]
    assert (px[:, 0] == px[:, 1]).all() and (px[:, 0] == px[:, 2]).all()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 100, 255], [0, 100, 255]),
        ([0, 32768, 65535], [0, 128, 255]),
        ([-1000, 0, 1000], [0, 128, 255]),
    ],
    ids=["8bit-range", "16bit-range", "stretched"],
)
def test_32bit_int_grey(values: list[int], expected: list[int]) -> None:
    img = Image.fromarray(np.array([values], dtype=np.int32))
    assert img.mode == "I"
    assert decoded_pixels(img, "TIFF", "I")[0][:, 0].tolist() == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),
        ([0.0, 64.0, 255.0], [0, 64, 255]),
        ([-1.0, 0.0, 1.0], [0, 128, 255]),
    ],
    ids=["unit-range", "8bit-range", "stretched"],
)
def test_float_grey(values: list[float], expected: list[int]) -> None:
    img = Image.fromarray(np.array([values], dtype=np.float32))
    assert img.mode == "F"
    assert decoded_pixels(img, "TIFF", "F")[0][:, 0].tolist() == expected


def test_bilevel_and_grey() -> None:
    bilevel = Image.new("1", (2, 1))
    bilevel.putdata([0, 1])
    assert decoded_pixels(bilevel, "PNG", "1")[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    grey = Image.new("L", (1, 1), 77)
    assert decoded_pixels(grey, "PNG", "L")[0].tolist() == [[77, 77, 77]]


@pytest.mark.parametrize(
    "mode",
    ["1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA",
     "La", "PA", "I;16", "I;16B", "I;16L", "I;16N"],
)
def test_to_rgb_handles_every_mode(mode: str) -> None:
    out = to_rgb(Image.new(mode, (5, 4)))
    assert (out.mode, out.size) == ("RGB", (5, 4))


def test_to_rgb_of_rgb_is_a_no_op() -> None:
    img = Image.new("RGB", (3, 3), (1, 2, 3))
    assert to_rgb(img) is img


# --- parity with open_clip ---------------------------------------------------------------------


def synthetic_shapes() -> list[Image.Image]:
    base = Image.open(IMAGENET[1]).convert("RGB")
    sizes = [(1000, 200), (200, 1000), (37, 300), (224, 224), (225, 224), (223, 500), (1, 1),
             (3, 2000), (640, 480)]
    return [base.resize(size, Image.Resampling.BILINEAR) for size in sizes]


def parity_images() -> list[Image.Image]:
    images = [Image.open(p).convert("RGB") for p in IMAGENET]
    images += [Image.open(p).convert("RGB") for p in CIFAR[::50]]
    return images + synthetic_shapes()


@pytest.fixture(scope="module")
def all_parity_images() -> list[Image.Image]:
    return parity_images()


def test_parity_with_open_clip_default_transform(all_parity_images: list[Image.Image]) -> None:
    """Every ImageNet-sized sample, CIFAR-sized 32x32 ones, and odd shapes: bit-identical pixels."""
    reference = open_clip.image_transform(224, is_train=False)
    pre = Preprocessor.from_open_clip(OPENAI_CFG)
    assert pre.image_size == (224, 224)
    worst = 0.0
    for img in all_parity_images:
        expected, got = reference(img), pre(img)
        assert got.dtype == torch.float32 and got.shape == expected.shape == (3, 224, 224)
        worst = max(worst, max_diff(expected, got, OPENAI_CFG))
    assert worst <= PARITY_TOL


@pytest.mark.parametrize(
    "overrides",
    [
        {"size": 336},
        {"size": (224, 288)},
        {"resize_mode": "squash"},
        {"resize_mode": "squash", "size": (192, 256)},
        {"resize_mode": "longest", "fill_color": 127},
        {"resize_mode": "longest", "size": (200, 240)},
        {"interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "size": 256},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()).replace(" ", ""),
)
def test_parity_with_other_preprocess_configs(
    overrides: dict, all_parity_images: list[Image.Image]
) -> None:
    """Where open_clip itself fails ('longest' rounds a 3x2000 image to width 0), ours still
    returns a tensor of the right shape."""
    cfg = {**OPENAI_CFG, **overrides}
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    pre = Preprocessor.from_open_clip(cfg)
    images = all_parity_images[:25] + all_parity_images[-14:]
    compared = 0
    for img in images:
        got = pre(img)
        assert tuple(got.shape) == (3, *pre.image_size)
        try:
            expected = reference(img)
        except ValueError:
            assert cfg["resize_mode"] == "longest" and min(img.size) <= 3
            continue
        assert max_diff(expected, got, cfg) <= PARITY_TOL
        compared += 1
    assert compared >= len(images) - 1


def test_overrides_apply_over_a_config() -> None:
    pre = Preprocessor.from_open_clip(OPENAI_CFG, size=336, resize_mode="squash")
    assert pre.image_size == (336, 336)
    assert pre(Image.new("RGB", (100, 50))).shape == (3, 336, 336)


@pytest.mark.slow
def test_parity_with_real_vit_b_32_model_transform(all_parity_images: list[Image.Image]) -> None:
    model, _, val_transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    cfg = open_clip.get_model_preprocess_cfg(model)
    from_model = Preprocessor.from_open_clip(model)
    from_cfg = Preprocessor.from_open_clip(model.visual.preprocess_cfg)
    from_transform = Preprocessor.from_open_clip(val_transform)
    for pre in (from_model, from_cfg, from_transform):
        assert pre.image_size == (224, 224)
        assert pre.draft_size == (448, 448)
    for img in all_parity_images[:40] + all_parity_images[-14:]:
        expected = val_transform(img)
        for pre in (from_model, from_cfg, from_transform):
            assert max_diff(expected, pre(img), cfg) <= PARITY_TOL


def test_unparseable_transform_is_wrapped_and_still_correct() -> None:
    from torchvision import transforms as T

    custom = T.Compose(
        [T.Lambda(lambda im: im.rotate(90, expand=True)), T.Resize(64), T.CenterCrop(64),
         T.ToTensor()]
    )
    pre = Preprocessor.from_open_clip(custom)
    assert pre.draft_size is None
    assert pre.mean is None and pre.std is None
    assert pre.image_size == (64, 64)
    img = Image.open(IMAGENET[2]).convert("RGB")
    assert torch.equal(pre(img), custom(img))


def test_non_rgb_input_is_converted_first(preprocessor: Preprocessor) -> None:
    rgba = Image.new("RGBA", (300, 300), (255, 0, 0, 0))
    out = unnormalise(preprocessor(rgba), OPENAI_CFG["mean"], OPENAI_CFG["std"])
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)


def test_load_tensor_matches_decode_then_open_clip(preprocessor: Preprocessor) -> None:
    """Draft off: load_tensor equals open_clip's transform on the same decoded RGB image."""
    reference = open_clip.image_transform(224, is_train=False)
    for path in IMAGENET[:30]:
        data = path.read_bytes()
        expected = reference(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        got = load_tensor(data, NO_DRAFT, preprocessor)
        assert got.dtype == torch.float32 and got.shape == (3, 224, 224)
        assert max_diff(expected, got, OPENAI_CFG) <= PARITY_TOL


def test_load_tensor_raises_image_error(preprocessor: Preprocessor) -> None:
    with pytest.raises(ImageError) as info:
        load_tensor(b"nope", ImageLimits(), preprocessor)
    assert info.value.code == "invalid_image"


def test_load_tensor_is_thread_safe(preprocessor: Preprocessor) -> None:
    blobs = [p.read_bytes() for p in IMAGENET[:24]]
    serial = [load_tensor(b, ImageLimits(), preprocessor) for b in blobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda b: load_tensor(b, ImageLimits(), preprocessor), blobs))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded, strict=True))


# --- JPEG draft --------------------------------------------------------------------------------


def best_time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def test_draft_decodes_large_jpeg_faster_and_close(
    large_jpeg: bytes, preprocessor: Preprocessor
) -> None:
    with_draft = ImageLimits(jpeg_draft=True)
    draft_img = decode_image(large_jpeg, with_draft, draft_size=preprocessor.draft_size)
    assert draft_img.size == (750, 500)
    assert decode_image(large_jpeg, NO_DRAFT, draft_size=preprocessor.draft_size).size == (
        3000,
        2000,
    )

    on = load_tensor(large_jpeg, with_draft, preprocessor)
    off = load_tensor(large_jpeg, NO_DRAFT, preprocessor)
    diff = (
        unnormalise(on, OPENAI_CFG["mean"], OPENAI_CFG["std"])
        - unnormalise(off, OPENAI_CFG["mean"], OPENAI_CFG["std"])
    ).abs()
    assert float(diff.mean()) < 0.01
    assert float(diff.max()) < 0.1

    t_on = best_time(lambda: load_tensor(large_jpeg, with_draft, preprocessor))
    t_off = best_time(lambda: load_tensor(large_jpeg, NO_DRAFT, preprocessor))
    assert t_on * 2 < t_off


def test_draft_never_goes_below_the_resize_target() -> None:
    pre = Preprocessor.from_open_clip(OPENAI_CFG, draft_margin=1.0)
    assert pre.draft_size == (224, 224)
    img = Image.open(IMAGENET[5]).convert("RGB")
    cases = {
        (1800, 1800): (225, 225),
        (1791, 1792): (448, 448),
        (900, 3000): (225, 750),
        (500, 400): (500, 400),
    }
    for size, expected in cases.items():
        data = encode(img.resize(size), "JPEG", quality=90)
        out = decode_image(data, ImageLimits(), draft_size=pre.draft_size)
        assert out.size == expected
        assert min(out.size) >= 224
        assert load_tensor(data, ImageLimits(), pre).shape == (3, 224, 224)


def test_draft_ignored_for_non_jpeg(preprocessor: Preprocessor) -> None:
    data = encode(Image.new("RGB", (2000, 1000), (10, 20, 30)), "PNG")
    assert decode_image(data, ImageLimits(), draft_size=preprocessor.draft_size).size == (2000, 1000)
