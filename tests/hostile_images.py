"""Hostile images built byte by byte for the red-team regression tests (issue #9)."""

from __future__ import annotations

import io
import math
import struct

from PIL import Image

_EOB_RUN_SYMBOLS = [r << 4 for r in range(15)]  # EOBr: a run of 2**r + (r extra bits) empty blocks


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _eob_run_scan_data(blocks: int) -> bytes:
    """Entropy-coded data saying 'every block of this AC scan is empty', a few bytes per 32k blocks.
    Symbol k of the table below has the 4-bit code k."""
    bits = ""
    while blocks:
        r = min(14, int(math.log2(blocks)))
        run = min(blocks, (1 << (r + 1)) - 1)
        bits += format(r, "04b") + (format(run - (1 << r), f"0{r}b") if r else "")
        blocks -= run
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return data.replace(b"\xff", b"\xff\x00")


def many_scan_jpeg(scans: int, size: int = 64) -> bytes:
    """A ``size`` x ``size`` grayscale progressive JPEG with ``scans`` scans, as the red team's file.

    PIL's own progressive file, then ``scans`` minus its own scans copies of one AC scan whose
    data is a single run of empty blocks (12 bytes). libjpeg warns about the odd progression and
    decodes every copy over every block of the image, so decode time grows with scans x pixels.
    """
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((size, size)).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    own = data.count(b"\xff\xda")  # inside entropy-coded data 0xFF is followed by 0x00 or RSTn only
    component = data[data.index(b"\xff\xc2") + 10]  # SOF2: length, precision, height, width, Nf, C1
    table = _segment(0xC4, bytes([0x11]) + bytes([0, 0, 0, len(_EOB_RUN_SYMBOLS)] + [0] * 12)
                     + bytes(_EOB_RUN_SYMBOLS))  # AC table 1: 15 codes of 4 bits
    scan = _segment(0xDA, bytes([1, component, 0x01, 1, 63, 0x00]))  # Y, AC 1..63, first pass
    scan += _eob_run_scan_data(math.ceil(size / 8) ** 2)
    end = data.rindex(b"\xff\xd9")
    return data[:end] + table + scan * (scans - own) + data[end:]
