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
import platform
import statistics
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PROBE_FORMAT = 2  # 2: the gate records batch drift; the decision lives in the store
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


class ProbeCancelled(Exception):
    """The probe was told to stop (the process is shutting down)."""


class ProbeRecords:
    """Probe decisions in the store (Redis when configured), one per probe key, so every replica
    and worker on the same CPU, model and library versions reuses one measurement.

    A record read back is checked before it is trusted: anything malformed is treated as absent,
    so the paths are measured again rather than a planted or damaged record deciding what serves.
    """

    def __init__(self, store) -> None:
        self.store = store

    def load(self, key: str) -> dict | None:
        try:
            record = self.store.get_probe_record(key)
        except Exception as exc:  # a store outage: measure (or serve the reference) instead
            log.warning("cannot read the probe decision from the store (%s); not using it", exc)
            return None
        if record is None or record.get("format") != PROBE_FORMAT or not _valid(record):
            return None
        return record

    def save(self, key: str, record: dict) -> None:
        try:
            self.store.put_probe_record(key, {**record, "format": PROBE_FORMAT})
        except Exception as exc:
            log.warning("cannot write the probe decision to the store (%s)", exc)


def _valid(record: dict) -> bool:
    """Timings are {tower: {path: {batch: seconds}}} of positive numbers; gate figures are numbers."""
    timings, gate = record.get("timings"), record.get("gate", {})
    if not isinstance(timings, dict) or not isinstance(gate, dict):
        return False
    for tower, per_path in timings.items():
        if tower == "broken":
            if not isinstance(per_path, dict):
                return False
            continue
        if tower not in ("image", "text") or not isinstance(per_path, dict):
            return False
        for per_batch in per_path.values():
            if not isinstance(per_batch, dict) or not all(
                isinstance(t, (int, float)) and t > 0 and str(b).isdigit() for b, t in per_batch.items()
            ):
                return False
    figures = ("cosine_min", "cosine_mean", "top1_agreement", "samples", "batch_drift")
    for tower, per_path in gate.items():
        if tower not in ("image", "text") or not isinstance(per_path, dict):
            return False
        for result in per_path.values():
            if not isinstance(result, dict) or set(result) - set(figures) or not all(
                isinstance(result.get(f), (int, float)) for f in figures[:4]
            ):
                return False
    return True


def time_runners(runners: dict, inputs: torch.Tensor, repeats: int, check=None) -> dict[str, float]:
    """Median seconds per call of each runner on ``inputs``, calls interleaved across runners.
    ``check()`` runs before every call; it raises to stop (a budget spent, a shutdown)."""
    check = check or (lambda: None)
    for runner in runners.values():
        check()
        runner(inputs)  # warm-up: first calls allocate and pick kernels
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            check()
            started = time.perf_counter()
            runner(inputs)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def probe_tower(runners: dict, make_inputs, batch_sizes: list[int], repeats: int = 3,
                keep: tuple[str, ...] = (), reference: str | None = None, check=None) -> dict[str, dict[int, float]]:
    """``{path: {batch size: seconds per call}}``, the smallest batch first. At later sizes a path
    is timed again only if it was faster than ``reference`` at the first size (or, with no
    reference, within ``SLOW_CUTOFF`` of the best); those named in ``keep`` always are."""
    timings: dict[str, dict[int, float]] = {name: {} for name in runners}
    first = None
    for batch in sorted(batch_sizes):
        active = runners
        if first is not None:
            bar = first[reference] if reference in first else SLOW_CUTOFF * min(first.values())
            active = {n: r for n, r in runners.items() if n in keep or n == reference or first[n] <= bar}
        measured = time_runners(active, make_inputs(batch), repeats if batch <= 8 else max(2, repeats - 1), check)
        for name, seconds in measured.items():
            timings[name][batch] = seconds
        first = first or measured
    return timings
