"""Count the scans of a JPEG without decoding it, so hostile progressive files are refused cheaply.

libjpeg decodes every scan of a progressive JPEG over the whole image, so decode time grows with
the scan count: a 1.5 MB file of 100,000 tiny refinement scans takes over 20 s (red-team issue #9,
item 6). libjpeg-turbo's advice for untrusted input is a scan limit (its ``TJPARAM_SCANLIMIT``,
``djpeg -maxscans``; its fuzzers use 500). Ordinary encoders write 1 scan (baseline) or about 10
(progressive).
"""

from __future__ import annotations

import re

_SOI = b"\xff\xd8"
_SOS = 0xDA
_EOI = 0xD9
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # TEM, SOI, RST0-7: no length field
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""The first marker after entropy-coded data: not a stuffed 0xFF00, not RSTn, not a fill byte."""


def count_jpeg_scans(data: bytes | bytearray | memoryview, stop_after: int | None = None) -> int:
    """The number of SOS segments before the first EOI, in one linear pass over ``data``.

    Counting stops early once it passes ``stop_after``. Bytes that are not a JPEG count 0 scans;
    a truncated file counts the scans seen so far (the decoder reports the damage itself).
    """
    data = bytes(data) if isinstance(data, memoryview) else data
    size = len(data)
    if data[:2] != _SOI:
        return 0
    scans = 0
    i = 2
    while i < size:
        if data[i] != 0xFF:  # junk between segments: libjpeg skips to the next marker, so do we
            i = data.find(b"\xff", i)
            if i < 0:
                break
        while i < size and data[i] == 0xFF:  # a marker may be preceded by fill bytes
            i += 1
        if i >= size:
            break
        marker = data[i]
        i += 1
        if marker == _EOI:
            break
        if marker in _STANDALONE or marker == 0x00:
            continue
        if i + 2 > size:
            break
        length = (data[i] << 8) | data[i + 1]
        if length < 2:
            break
        i += length
        if marker == _SOS:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
            found = _MARKER_AFTER_SCAN.search(data, i)
            i = found.start() if found else size
    return scans
