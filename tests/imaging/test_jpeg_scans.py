"""JPEG scan counting and the scan limit (issue #9, item 6): hostile progressive files are refused
before libjpeg decodes them; ordinary baseline and progressive files are untouched."""

from __future__ import annotations

import io
import time

import pytest
from hostile_images import many_scan_jpeg
from PIL import Image

from app.error_envelope import status_for
from gloss_gen.core.config import Settings
from gloss_gen.imaging import ImageError, ImageLimits, decode_image
from gloss_gen.imaging.decode import DEFAULT_MAX_JPEG_SCANS
from gloss_gen.imaging.jpeg_scans import count_jpeg_scans


def _jpeg(mode: str = "RGB", **params) -> bytes:
    image = Image.effect_noise((96, 80), 60).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "params", "scans"),
    [
        ("RGB", {}, 1),
        ("L", {}, 1),
        ("RGB", {"progressive": True}, 10),  # libjpeg's standard progression
        ("L", {"progressive": True}, 6),
        ("RGB", {"progressive": True, "restart_marker_blocks": 1}, 10),  # RSTn inside every scan
        ("RGB", {"restart_marker_rows": 1}, 1),
    ],
)
def test_scans_are_counted_as_libjpeg_reads_them(mode, params, scans):
    data = _jpeg(mode, **params)
    assert count_jpeg_scans(data) == scans
    decode_image(data)  # well under the limit: decoded as before


def test_the_count_skips_stuffed_bytes_and_stops_at_the_end_of_the_image():
    data = _jpeg(progressive=True)
    assert b"\xff\x00" in data  # entropy-coded 0xFF bytes are stuffed, and never taken for markers
    assert count_jpeg_scans(data + data) == 10  # what follows EOI is not decoded, so not counted
    assert count_jpeg_scans(data[: len(data) // 2]) < 10  # truncated: the scans so far
    assert count_jpeg_scans(b"") == count_jpeg_scans(b"not a jpeg") == 0
    assert count_jpeg_scans(memoryview(data)) == 10


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding():
    hostile = many_scan_jpeg(100_000, size=1024)  # 1.3 MB, as the red team's; PIL decodes it in 12 s
    assert count_jpeg_scans(hostile) == 100_000
    started = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        decode_image(hostile)
    elapsed = time.perf_counter() - started
    assert caught.value.code == "image_too_many_scans"
    assert str(DEFAULT_MAX_JPEG_SCANS) in caught.value.message
    assert status_for(caught.value) == 413
    assert elapsed < 0.5, elapsed


def test_the_scan_limit_is_a_setting_and_the_boundary_decodes():
    at_limit = many_scan_jpeg(40)
    assert decode_image(at_limit, ImageLimits(max_jpeg_scans=40)).size == (64, 64)
    with pytest.raises(ImageError, match="over 39 scans"):
        decode_image(at_limit, ImageLimits(max_jpeg_scans=39))
    limits = ImageLimits.from_settings(Settings(_env_file=None, max_jpeg_scans=39))
    assert limits.max_jpeg_scans == 39
    with pytest.raises(ImageError):
        decode_image(at_limit, limits)
