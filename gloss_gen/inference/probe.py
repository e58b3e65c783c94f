"""The start-up probe: time candidate runners side by side, and cache what it found.

Timings are interleaved (one call of each path in turn, repeated) so that background load on a
shared machine hits every path alike; the figure per path is the median seconds per call. The
result, with the fidelity gate's figures, is cached under ``<data_dir>/inference/probe/`` keyed by
the model, its weights, the CPU's flags, the thread count and the library versions, so the next
start on the same machine reads it instead of measuring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PROBE_FORMAT = 1
SLOW_CUTOFF = 3.0  # at the large batch, skip paths this many times slower than the best at batch 1


def cpu_signature() -> str:
    """The CPU model and its feature flags (what decides which kernels a library can use)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features") and key not in fields:
            fields[key] = " ".join(sorted(value.split())) if key != "model name" else value.strip()
    return json.dumps(fields, sort_keys=True)


def probe_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


class ProbeCache:
    """One JSON file per probe key under ``<data_dir>/inference/probe/``."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / "inference" / "probe"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict | None:
        try:
            record = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("format") == PROBE_FORMAT else None

    def save(self, key: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"format": PROBE_FORMAT, **record}, indent=1, sort_keys=True))
        os.replace(tmp, self.path(key))


def time_runners(runners: dict, inputs: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per call of each runner on ``inputs``, calls interleaved across runners."""
    for runner in runners.values():
        runner(inputs)  # warm-up: first calls allocate and pick kernels
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner(inputs)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def probe_tower(runners: dict, make_inputs, batch_sizes: list[int], repeats: int = 3,
                keep: tuple[str, ...] = ()) -> dict[str, dict[int, float]]:
    """``{path: {batch size: seconds per call}}``; at sizes after the first, paths more than
    ``SLOW_CUTOFF`` times slower than the best at the first size are not timed again (those named
    in ``keep``, such as the fp32 reference the others are compared with, always are)."""
    timings: dict[str, dict[int, float]] = {name: {} for name in runners}
    first = None
    for batch in batch_sizes:
        active = runners
        if first is not None:
            best = min(first.values())
            active = {n: r for n, r in runners.items() if n in keep or first[n] <= SLOW_CUTOFF * best}
        measured = time_runners(active, make_inputs(batch), repeats if batch <= 8 else max(2, repeats - 1))
        for name, seconds in measured.items():
            timings[name][batch] = seconds
        first = first or measured
    return timings
